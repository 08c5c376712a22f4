"""buildah 1.28 (Debian): builds an image ``FROM scratch`` step by step (``from``,
``copy``, ``config``, ``commit``), pushes it in docker and OCI formats, pulls it back,
logs in and out, and pulls anonymously from a public project. Its own image store per
test (``tests/e2e/containers.py``); plain HTTP on 127.0.0.1, hence ``--tls-verify=false``.
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
FORMATS = [("docker", DOCKER_MANIFEST), ("oci", OCI_MANIFEST)]
NO_TLS = "--tls-verify=false"
AUTHOR = "regd e2e <e2e@example.invalid>"

Buildah = Callable[..., str]


@pytest.fixture
def bud(buildah: str, containers: Containers) -> Buildah:
    """Run buildah on this test's store; returns its stdout."""

    def call(*args: str) -> str:
        return containers.run(buildah, *args).stdout

    return call


def build(bud: Buildah, containers: Containers, reference: str) -> str:
    """An image of two layers of random bytes, FROM scratch; returns its image ID."""
    context = containers.context(f"ctx-{time.monotonic_ns()}")
    working = bud("from", "scratch").strip()
    for path in sorted(context.glob("*.bin")):
        bud("copy", working, str(path), f"/{path.name}")
    bud("config", "--author", AUTHOR, "--os", "linux", "--arch", "amd64", "--cmd", "/file0.bin", working)
    image_id = bud("commit", "--quiet", "--format", "oci", working, reference).strip()
    bud("rm", working)
    return image_id


def push(bud: Buildah, containers: Containers, source: str, destination: str, fmt: str) -> str:
    digest_file = containers.root / f"digest-{time.monotonic_ns()}"
    bud("push", NO_TLS, "--format", fmt, "--digestfile", str(digest_file), source, destination)
    return digest_file.read_text().strip()


def pull_digest(bud: Buildah, reference: str) -> str:
    """Pull ``reference`` into an empty store; the manifest digest buildah recorded."""
    bud("pull", "--quiet", NO_TLS, reference)
    digest = bud("images", "--format", "{{.Digest}}", reference).strip()
    bud("rmi", "--force", reference)
    return digest


def push_both_formats(bud: Buildah, containers: Containers, repository: str) -> tuple[str, dict[str, str]]:
    """Build ``<repository>:built``, push it as ``:docker`` and ``:oci``, remove it locally."""
    image_id = build(bud, containers, f"{repository}:built")
    source = f"{repository}:built"
    pushed = {fmt: push(bud, containers, source, f"{repository}:{fmt}", fmt) for fmt, _ in FORMATS}
    bud("rmi", "--force", image_id)
    return image_id, pushed


def test_buildah_pushes_docker_and_oci_formats_and_pulls_them_back(
    registry: RegistryServer, bud: Buildah, containers: Containers
) -> None:
    repository = f"{registry.host}/library/buildah"
    _, pushed = push_both_formats(bud, containers, repository)
    served = {fmt: manifest_served(registry, "library/buildah", fmt) for fmt, _ in FORMATS}
    pulled = {fmt: pull_digest(bud, f"{repository}:{fmt}") for fmt, _ in FORMATS}

    assert served == {fmt: (media_type, pushed[fmt]) for fmt, media_type in FORMATS}
    assert pulled == pushed


# -- with access control ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    # Pull counts written every 0.2 s, so the test can read them back soon.
    return start_secured(regd_server, target, env={"REGD_SERVER_PULL_FLUSH_INTERVAL": "0.2"})


@pytest.fixture(scope="module")
def api(secured: RegistryServer) -> Api:
    api = Api(secured)
    api.project("buds")
    api.project("budpub", public=True)
    api.user("buddev")
    api.member("buds", "buddev", DEVELOPER)
    return api


def test_buildah_logs_in_pushes_both_formats_pulls_and_logs_out(
    secured: RegistryServer, api: Api, buildah: str, bud: Buildah, containers: Containers
) -> None:
    repository = f"{secured.host}/buds/app"
    login = bud("login", NO_TLS, "--username", "buddev", "--password", PASSWORD, secured.host)
    _, pushed = push_both_formats(bud, containers, repository)
    pulled = {fmt: pull_digest(bud, f"{repository}:{fmt}") for fmt, _ in FORMATS}
    artifacts = {a["digest"]: a for a in api.ok("GET", "/projects/buds/repositories/app/artifacts")}
    logout = bud("logout", secured.host)
    refused = containers.run(buildah, "pull", NO_TLS, f"{repository}:oci", check=False)

    assert "Login Succeeded" in login
    assert pulled == pushed
    for fmt, media_type in FORMATS:
        artifact = artifacts[pushed[fmt]]
        assert artifact["manifest_media_type"] == media_type
        # Harbor's extra_attrs, from the config buildah wrote.
        assert artifact["extra_attrs"]["author"] == AUTHOR
        assert (artifact["extra_attrs"]["os"], artifact["extra_attrs"]["architecture"]) == ("linux", "amd64")
        assert artifact["extra_attrs"]["config"]["Cmd"] == ["/file0.bin"]
    assert api.wait_for_pull_count("buds", "app", 2) >= 2
    assert "Removed login credentials" in logout
    assert_refused(refused)


def test_buildah_pulls_from_a_public_project_anonymously(
    secured: RegistryServer, api: Api, buildah: str, bud: Buildah, containers: Containers
) -> None:
    repository = f"{secured.host}/budpub/app"
    image_id = build(bud, containers, f"{repository}:v1")
    digest_file = containers.root / "pushed"
    creds = f"admin:{ADMIN_PASSWORD}"
    bud("push", NO_TLS, "--creds", creds, "--digestfile", str(digest_file), f"{repository}:v1")
    anonymous_push = containers.run(
        buildah, "push", NO_TLS, f"{repository}:v1", f"{repository}:v2", check=False
    )
    bud("rmi", "--force", image_id)
    anonymous = pull_digest(bud, f"{repository}:v1")

    assert anonymous == digest_file.read_text().strip()
    assert_refused(anonymous_push)
