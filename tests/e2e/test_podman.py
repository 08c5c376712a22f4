"""podman 4.3 (Debian): builds ``FROM scratch``, pushes in docker (v2s2) and OCI formats,
pulls back, logs in and out, and pulls anonymously from a public project.

Every test has its own image store (``tests/e2e/containers.py``); the registry is plain
HTTP on 127.0.0.1, hence ``--tls-verify=false``. After a pull, the digest podman records
must be the digest it pushed: podman checks every layer's digest as it pulls.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .accounts import ADMIN_PASSWORD, DEVELOPER, PASSWORD, Api, assert_refused, start_secured
from .containers import Containers
from .daemons import RegistryServer, ServerFactory, Target
from .registry_http import manifest_served

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FORMATS = [("v2s2", DOCKER_MANIFEST), ("oci", OCI_MANIFEST)]
NO_TLS = "--tls-verify=false"

Podman = Callable[..., str]


@pytest.fixture
def pod(podman: str, containers: Containers) -> Podman:
    """Run podman on this test's store; returns its stdout."""

    def call(*args: str) -> str:
        return containers.run(podman, *args).stdout

    return call


def build(pod: Podman, containers: Containers, reference: str) -> str:
    """Build ``reference`` FROM scratch with a Containerfile; returns the image ID."""
    context = containers.context(reference.rsplit("/", 1)[-1].replace(":", "-"))
    iid = containers.root / f"{context.name}.iid"
    pod("build", "--quiet", "--iidfile", str(iid), "--tag", reference, str(context))
    return iid.read_text().strip()


def push(pod: Podman, containers: Containers, source: str, destination: str, fmt: str) -> str:
    """``podman push --format fmt``; returns the digest podman says it pushed."""
    digest_file = containers.root / f"digest-{time.monotonic_ns()}"
    pod("push", NO_TLS, "--format", fmt, "--digestfile", str(digest_file), source, destination)
    return digest_file.read_text().strip()


def push_both_formats(pod: Podman, containers: Containers, repository: str) -> dict[str, str]:
    """``<repository>:built`` pushed as ``:v2s2`` and ``:oci``; digests by format."""
    source = f"{repository}:built"
    return {fmt: push(pod, containers, source, f"{repository}:{fmt}", fmt) for fmt, _ in FORMATS}


def repo_digests(pod: Podman, reference: str) -> set[str]:
    """The ``name@digest`` references podman records for a local image (one image ID
    pulled in both formats holds both digests)."""
    output = pod("image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", reference)
    return {line.strip() for line in output.splitlines() if line.strip()}


def test_podman_pushes_docker_and_oci_formats_and_pulls_them_back(
    registry: RegistryServer, pod: Podman, containers: Containers
) -> None:
    repository = f"{registry.host}/library/podman"
    image_id = build(pod, containers, f"{repository}:built")
    pushed = {
        fmt: push(pod, containers, f"{repository}:built", f"{repository}:{fmt}", fmt) for fmt, _ in FORMATS
    }
    served = {fmt: manifest_served(registry, "library/podman", fmt) for fmt, _ in FORMATS}
    pod("rmi", "--force", image_id)
    for fmt, _ in FORMATS:
        pod("pull", NO_TLS, f"{repository}:{fmt}")

    for fmt, media_type in FORMATS:
        assert served[fmt] == (media_type, pushed[fmt])
        assert f"{repository}@{pushed[fmt]}" in repo_digests(pod, f"{repository}:{fmt}")


# -- with access control ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    # Pull counts written every 0.2 s, so the test can read them back soon.
    return start_secured(regd_server, target, env={"REGD_SERVER_PULL_FLUSH_INTERVAL": "0.2"})


@pytest.fixture(scope="module")
def api(secured: RegistryServer) -> Api:
    api = Api(secured)
    api.project("pods")
    api.project("podpub", public=True)
    api.user("poddev")
    api.member("pods", "poddev", DEVELOPER)
    api.member("podpub", "poddev", DEVELOPER)
    return api


def test_podman_logs_in_pushes_both_formats_pulls_and_logs_out(
    secured: RegistryServer, api: Api, podman: str, pod: Podman, containers: Containers
) -> None:
    repository = f"{secured.host}/pods/app"
    login = pod("login", NO_TLS, "--username", "poddev", "--password", PASSWORD, secured.host)
    image_id = build(pod, containers, f"{repository}:built")
    pushed = {
        fmt: push(pod, containers, f"{repository}:built", f"{repository}:{fmt}", fmt) for fmt, _ in FORMATS
    }
    pod("rmi", "--force", image_id)
    for fmt, _ in FORMATS:
        pod("pull", NO_TLS, f"{repository}:{fmt}")
    pulled = set.union(*(repo_digests(pod, f"{repository}:{fmt}") for fmt, _ in FORMATS))
    artifacts = {a["digest"]: a for a in api.ok("GET", "/projects/pods/repositories/app/artifacts")}
    logout = pod("logout", secured.host)
    pod("rmi", "--force", image_id)
    refused = containers.run(podman, "pull", NO_TLS, f"{repository}:oci", check=False)

    assert "Login Succeeded" in login
    assert pulled == {f"{repository}@{digest}" for digest in pushed.values()}
    for fmt, media_type in FORMATS:
        artifact = artifacts[pushed[fmt]]
        assert artifact["manifest_media_type"] == media_type
        assert artifact["extra_attrs"]["os"] == "linux"  # from the config podman wrote
        assert artifact["extra_attrs"]["architecture"]
    assert api.wait_for_pull_count("pods", "app", 2) >= 2
    assert "Removed login credentials" in logout
    assert_refused(refused)


def test_podman_pulls_from_a_public_project_anonymously(
    secured: RegistryServer, api: Api, podman: str, pod: Podman, containers: Containers
) -> None:
    repository = f"{secured.host}/podpub/app"
    pod("login", NO_TLS, "--username", "admin", "--password", ADMIN_PASSWORD, secured.host)
    image_id = build(pod, containers, f"{repository}:v1")
    pushed = push(pod, containers, f"{repository}:v1", f"{repository}:v1", "oci")
    pod("logout", secured.host)
    pod("rmi", "--force", image_id)
    pod("pull", NO_TLS, f"{repository}:v1")
    anonymous_push = containers.run(
        podman, "push", NO_TLS, f"{repository}:v1", f"{repository}:v2", check=False
    )

    assert repo_digests(pod, f"{repository}:v1") == {f"{repository}@{pushed}"}
    assert_refused(anonymous_push)
