"""docker and skopeo against regd over HTTPS with a private CA.

docker trusts the CA only through ``/etc/docker/certs.d/<host:port>/ca.crt``, so the
registry needs a name docker does not treat as insecure: docker counts every address in
``127.0.0.0/8`` as an insecure registry (and then skips certificate checks), so the test
maps ``regd.test`` to this host's first non-loopback address in ``/etc/hosts`` (restored
afterwards) and regd listens there. Without the CA, docker fails with its x509 error;
skopeo trusts it through ``--cert-dir``.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certs import PrivateCA
from tests.prerequisites import regd_only, require_root
from tests.regd_process import RegdProcess, free_port

from .daemons import Dockerd, Target
from .images import image_id, make_image, push, remove_local
from .tools import run

pytestmark = pytest.mark.e2e

NAME = "regd.test"
HOSTS = Path("/etc/hosts")
DOCKER_CERTS = Path("/etc/docker/certs.d")


def _outward_address() -> str:
    """This host's address on its default route (a UDP connect sends no packet)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: never reached
            address: str = probe.getsockname()[0]
    except OSError:
        address = ""
    if not address or address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address: docker would treat the registry as insecure")
    return address


@dataclass(frozen=True)
class HttpsRegistry:
    host: str  # regd.test:PORT
    ca: PrivateCA
    cert_dir: Path  # a directory holding only ca.crt, for skopeo --cert-dir


@pytest.fixture(scope="module")
def hosts_entry() -> Iterator[str]:
    require_root("dockerd and /etc/hosts")
    address = _outward_address()
    original = HOSTS.read_bytes()
    HOSTS.write_bytes(original + f"\n{address} {NAME}\n".encode())
    # Go programs (dockerd, skopeo) keep /etc/hosts for 5 s before they look again.
    time.sleep(6)
    try:
        yield address
    finally:
        HOSTS.write_bytes(original)


@pytest.fixture(scope="module")
def https_registry(
    hosts_entry: str, tmp_path_factory: pytest.TempPathFactory, target: Target
) -> Iterator[HttpsRegistry]:
    if target is not Target.REGD:
        regd_only("regd's TLS settings")
    root = tmp_path_factory.mktemp("https")
    ca = PrivateCA(root / "pki", "regd e2e")
    cert = ca.issue("server", [NAME, hosts_entry])
    port = free_port()
    regd = RegdProcess(
        root,
        {
            "server": {
                "listen": f"{hosts_entry}:{port}",
                "tls_cert": str(cert.chain),
                "tls_key": str(cert.key),
                "ca_cert": str(ca.ca_cert),
            }
        },
        port=port,
    )
    cert_dir = root / "skopeo-certs"
    cert_dir.mkdir()
    shutil.copy(ca.ca_cert, cert_dir / "ca.crt")
    try:
        regd.start()
        yield HttpsRegistry(f"{NAME}:{port}", ca, cert_dir)
    finally:
        regd.close()
        print(regd.log()[-3000:])


@pytest.fixture
def docker_trusts(https_registry: HttpsRegistry) -> Iterator[None]:
    """The CA in docker's certs.d for this registry, and only for the test's duration."""
    directory = DOCKER_CERTS / https_registry.host
    created = not DOCKER_CERTS.exists()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(https_registry.ca.ca_cert, directory / "ca.crt")
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if created:
            DOCKER_CERTS.rmdir()


def test_docker_without_the_ca_fails_with_its_x509_error(
    dockerd: Dockerd, https_registry: HttpsRegistry
) -> None:
    assert not (DOCKER_CERTS / https_registry.host).exists()
    reference = f"{https_registry.host}/library/untrusted:v1"
    make_image(dockerd, reference, layers=1)

    result = dockerd.docker("push", reference, check=False)

    assert result.returncode != 0
    assert "x509" in result.stderr and "certificate signed by unknown authority" in result.stderr, (
        result.stderr
    )


def test_docker_pushes_and_pulls_trusting_the_ca_through_certs_d(
    dockerd: Dockerd, https_registry: HttpsRegistry, docker_trusts: None
) -> None:
    reference = f"{https_registry.host}/library/app:v1"
    built = make_image(dockerd, reference, layers=3)

    report = push(dockerd, reference)
    assert report.count("Pushed") == 3, report
    remove_local(dockerd, built)
    dockerd.docker("pull", reference)

    assert image_id(dockerd, reference) == built


def test_skopeo_copies_with_cert_dir_and_fails_without(
    dockerd: Dockerd, https_registry: HttpsRegistry, skopeo: str, tmp_path: Path
) -> None:
    # No docker_trusts here: skopeo also reads /etc/docker/certs.d.
    assert not (DOCKER_CERTS / https_registry.host).exists()
    make_image(dockerd, "regd-e2e/https-skopeo:v1", layers=2)
    archive = tmp_path / "image.tar"
    dockerd.docker("save", "--output", str(archive), "regd-e2e/https-skopeo:v1")
    source = f"docker://{https_registry.host}/library/skopeo-src:v1"
    copy = f"docker://{https_registry.host}/library/skopeo-copy:v1"
    cert_dir = str(https_registry.cert_dir)

    refused = run([skopeo, "copy", f"docker-archive:{archive}", source], check=False)
    assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr

    run([skopeo, "copy", "--dest-cert-dir", cert_dir, f"docker-archive:{archive}", source])
    run([skopeo, "copy", "--src-cert-dir", cert_dir, "--dest-cert-dir", cert_dir, source, copy])
    original = run([skopeo, "inspect", "--cert-dir", cert_dir, "--format", "{{.Digest}}", source]).stdout
    copied = run([skopeo, "inspect", "--cert-dir", cert_dir, "--format", "{{.Digest}}", copy]).stdout
    assert copied.strip() == original.strip() != ""
