"""Real clients pull through a proxy-cache project, then keep pulling by tag from the
cache once the upstream is stopped: docker, ctr (the Kubernetes path), skopeo, podman. A
push into the proxy project is refused with Harbor's message, which docker prints."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.regd_process import toml

from .accounts import Api
from .containers import Containers
from .daemons import Dockerd, RegistryServer, ServerFactory, Target
from .images import image_id, make_image, push, remove_local
from .tools import run

pytestmark = pytest.mark.e2e

Ctr = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class Mirror:
    upstream: RegistryServer
    regd: RegistryServer

    def ref(self, name: str) -> str:
        return f"{self.regd.host}/mirror/library/{name}"


@pytest.fixture
def mirror(regd_server: ServerFactory, tmp_path: Path) -> Iterator[Mirror]:
    upstream = regd_server()  # regd, or distribution with REGD_E2E_TARGET=distribution
    config = tmp_path / "proxy.toml"
    config.write_text(toml({"proxy": {"connect_timeout": 1.0, "probe_interval": 1.0}}))
    data = tmp_path / "data"
    data.mkdir()
    server = RegistryServer(Target.REGD, data, tmp_path / "proxy.log", config, {"REGD_AUTH_ENABLED": "false"})
    server.start()
    try:
        api = Api(server)
        api.ok("POST", "/registries", {"name": "up", "type": "docker-registry", "url": upstream.url})
        registry_id = api.ok("GET", "/registries")[0]["id"]
        api.ok(
            "POST",
            "/projects",
            {"project_name": "mirror", "registry_id": registry_id, "metadata": {"public": "true"}},
        )
        yield Mirror(upstream, server)
    finally:
        server.stop()
        upstream.stop()


@pytest.fixture
def ctr_namespace(ctr: str, dockerd: Dockerd) -> Ctr:
    namespace = f"regd-proxy-{uuid.uuid4().hex[:8]}"

    def in_namespace(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(
            [ctr, "--address", str(dockerd.containerd_socket), "--namespace", namespace, *args],
            timeout=180,
            check=check,
        )

    return in_namespace


def _upload(dockerd: Dockerd, mirror: Mirror, name: str) -> str:
    source = f"{mirror.upstream.host}/library/{name}:v1"
    make_image(dockerd, source, layers=2)
    pushed = push(dockerd, source)
    remove_local(dockerd, source)
    return pushed.digest


def test_docker_ctr_and_skopeo_pull_through_and_then_from_the_cache_with_the_upstream_down(
    dockerd: Dockerd, mirror: Mirror, ctr_namespace: Ctr, skopeo: str, tmp_path: Path
) -> None:
    docker_digest = _upload(dockerd, mirror, "for-docker")
    ctr_digest = _upload(dockerd, mirror, "for-ctr")
    skopeo_digest = _upload(dockerd, mirror, "for-skopeo")

    # Cold pulls through the proxy project.
    dockerd.docker("pull", mirror.ref("for-docker:v1"))
    pulled_id = image_id(dockerd, mirror.ref("for-docker:v1"))
    ctr_ref = mirror.ref("for-ctr:v1")
    ctr_namespace("images", "pull", "--plain-http", "--snapshotter", "native", ctr_ref)
    skopeo_ref = f"docker://{mirror.ref('for-skopeo:v1')}"
    run([skopeo, "copy", "--src-tls-verify=false", skopeo_ref, f"dir:{tmp_path / 'first'}"])

    mirror.upstream.stop()

    # By tag, from the cache alone.
    remove_local(dockerd, mirror.ref("for-docker:v1"))
    output = dockerd.docker("pull", mirror.ref("for-docker:v1")).stdout
    assert docker_digest in output, output
    assert image_id(dockerd, mirror.ref("for-docker:v1")) == pulled_id
    ctr_namespace("images", "rm", ctr_ref)
    ctr_namespace("content", "prune", "references", check=False)
    ctr_namespace("images", "pull", "--plain-http", "--snapshotter", "native", ctr_ref)
    listing = ctr_namespace("images", "ls").stdout
    assert ctr_digest in listing, listing
    assert "complete" in ctr_namespace("images", "check").stdout
    raw = run([skopeo, "inspect", "--raw", "--tls-verify=false", skopeo_ref]).stdout
    assert raw
    run([skopeo, "copy", "--src-tls-verify=false", skopeo_ref, f"dir:{tmp_path / 'second'}"])
    assert (tmp_path / "second" / "manifest.json").read_bytes() == (
        tmp_path / "first" / "manifest.json"
    ).read_bytes()
    digest_line = run([skopeo, "inspect", "--tls-verify=false", "--format", "{{.Digest}}", skopeo_ref]).stdout
    assert digest_line.strip() == skopeo_digest


def test_podman_pulls_through_and_then_from_the_cache_with_the_upstream_down(
    dockerd: Dockerd, mirror: Mirror, podman: str, containers: Containers
) -> None:
    digest = _upload(dockerd, mirror, "for-podman")
    reference = mirror.ref("for-podman:v1")
    containers.run(podman, "pull", "--tls-verify=false", reference)
    mirror.upstream.stop()
    containers.run(podman, "rmi", reference)
    containers.run(podman, "pull", "--tls-verify=false", reference)
    found = containers.run(podman, "image", "inspect", "--format", "{{.Digest}}", reference).stdout
    assert found.strip() == digest


def test_docker_push_into_a_proxy_project_prints_the_refusal(dockerd: Dockerd, mirror: Mirror) -> None:
    reference = mirror.ref("pushed:v1")
    make_image(dockerd, reference, layers=1)
    result = dockerd.docker("push", reference, check=False)
    assert result.returncode != 0
    assert "can not push artifact to a proxy project: mirror" in result.stdout + result.stderr
