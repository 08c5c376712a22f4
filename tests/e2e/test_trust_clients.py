"""Content trust with real clients against a running regd.

No cosign or notation CLI is packaged here and Debian's skopeo is built with sigstore
signing disabled, but skopeo still copies sigstore attachments (``use-sigstore-
attachments: true`` in a registries.d file): a signed image in a ``dir:`` layout (the
signature as skopeo stores it, ``signature-1``: a zero byte, ``sigstore-json``, a
newline, then the JSON with ``mimeType``, ``payload`` and ``annotations``) goes into regd
as cosign's ``sha256-<hex>.sig`` manifest, regd verifies it, and skopeo copies it back
out. docker prints Harbor's 412 message for an unsigned image and pulls it once signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from pathlib import Path

import pytest

from tests.prerequisites import regd_only
from tests.trust_support import Artifact, cosign_layer, cosign_tag_signature, ec_key, image, public_pem

from .accounts import Api
from .daemons import Dockerd, RegistryServer, ServerFactory, Target
from .images import make_image, push, remove_local
from .tools import run

pytestmark = pytest.mark.e2e

REFUSED = "The image is not signed by cosign."


@pytest.fixture(scope="module")
def server(regd_server: ServerFactory, target: Target) -> RegistryServer:
    if target is not Target.REGD:
        regd_only("content trust is regd's (and Harbor's), not distribution's")
    return regd_server()


@pytest.fixture(scope="module")
def registries_d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("registries.d")
    (directory / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    return directory


def trusted_project(server: RegistryServer, name: str, **metadata: str) -> Api:
    api = Api(server)  # access control is off here: every caller administers
    api.ok("POST", "/projects", {"project_name": name, "metadata": {"public": "true", **metadata}})
    return api


def write_dir_layout(
    directory: Path, artifact: Artifact, signatures: list[tuple[dict[str, object], bytes]]
) -> None:
    """containers/image's ``dir:`` transport: blobs by hex digest, ``manifest.json``,
    ``version``, and one ``signature-N`` per sigstore signature."""
    directory.mkdir()
    (directory / "version").write_text("Directory Transport Version: 1.1\n")
    (directory / "manifest.json").write_bytes(artifact.manifest)
    for blob in artifact.blobs:
        (directory / _hex(blob)).write_bytes(blob)
    for number, (descriptor, payload) in enumerate(signatures, 1):
        body = {
            "mimeType": descriptor["mediaType"],
            "payload": base64.b64encode(payload).decode(),
            "annotations": descriptor["annotations"],
        }
        (directory / f"signature-{number}").write_bytes(b"\x00sigstore-json\n" + json.dumps(body).encode())


def _hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def read_signature(path: Path) -> dict[str, object]:
    raw = path.read_bytes()
    prefix = b"\x00sigstore-json\n"
    assert raw.startswith(prefix), raw[:40]
    body: dict[str, object] = json.loads(raw[len(prefix) :])
    return body


def skopeo_copy(skopeo: str, registries_d: Path, source: str, dest: str) -> None:
    run(
        [
            skopeo,
            "--registries.d",
            str(registries_d),
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            source,
            dest,
        ]
    )


def test_skopeo_copies_a_signed_image_in_and_its_signature_back_out(
    skopeo: str, server: RegistryServer, registries_d: Path, tmp_path: Path
) -> None:
    key = ec_key()
    api = trusted_project(
        server, "skopeo-signed", enable_content_trust_cosign="true", content_trust_verify="true"
    )
    api.ok(
        "POST",
        "/projects/skopeo-signed/trust-anchors",
        {"name": "release", "kind": "cosign-key", "pem": public_pem(key)},
    )
    signed, unsigned = image(101), image(102)
    layer = cosign_layer(key, signed.digest, payload=None)
    write_dir_layout(tmp_path / "signed", signed, [layer])
    write_dir_layout(tmp_path / "unsigned", unsigned, [])
    remote = f"docker://{server.host}/skopeo-signed/app"

    skopeo_copy(skopeo, registries_d, f"dir:{tmp_path / 'signed'}", f"{remote}:v1")
    skopeo_copy(skopeo, registries_d, f"dir:{tmp_path / 'unsigned'}", f"{remote}:v2")

    # regd stored cosign's tag-scheme signature and verified it: the signed image pulls.
    tags = json.loads(urllib.request.urlopen(f"{server.url}/v2/skopeo-signed/app/tags/list").read())["tags"]
    assert "sha256-" + signed.digest.removeprefix("sha256:") + ".sig" in tags
    inspected = run([skopeo, "inspect", "--raw", "--tls-verify=false", f"{remote}:v1"]).stdout
    assert inspected.encode() == signed.manifest
    refused = run([skopeo, "inspect", "--raw", "--tls-verify=false", f"{remote}:v2"], check=False)
    assert refused.returncode != 0 and REFUSED in refused.stderr

    out = tmp_path / "out"
    skopeo_copy(skopeo, registries_d, f"{remote}:v1", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == signed.manifest
    copied = read_signature(out / "signature-1")
    assert copied["mimeType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert base64.b64decode(str(copied["payload"])) == layer[1]
    assert copied["annotations"] == layer[0]["annotations"]
    assert not (out / "signature-2").exists()


def test_docker_pull_prints_the_412_message_then_pulls_once_signed(
    dockerd: Dockerd, server: RegistryServer
) -> None:
    trusted_project(server, "docker-signed", enable_content_trust_cosign="true")
    reference = f"{server.host}/docker-signed/app:v1"
    make_image(dockerd, reference, layers=2)
    digest = push(dockerd, reference).digest
    remove_local(dockerd, reference)

    refused = dockerd.docker("pull", reference, check=False, timeout=90)
    assert refused.returncode != 0
    assert REFUSED in refused.stderr + refused.stdout, refused

    signature = cosign_tag_signature([cosign_layer(ec_key(), digest)])
    _push_artifact(
        server, "docker-signed/app", signature, "sha256-" + digest.removeprefix("sha256:") + ".sig"
    )
    dockerd.docker("pull", reference, timeout=90)
    remove_local(dockerd, reference)


def _push_artifact(server: RegistryServer, name: str, artifact: Artifact, reference: str) -> None:
    for blob in artifact.blobs:
        request = urllib.request.Request(
            f"{server.url}/v2/{name}/blobs/uploads/?digest=sha256:{_hex(blob)}", data=blob, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
    request = urllib.request.Request(
        f"{server.url}/v2/{name}/manifests/{reference}",
        data=artifact.manifest,
        method="PUT",
        headers={"Content-Type": artifact.media_type},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
