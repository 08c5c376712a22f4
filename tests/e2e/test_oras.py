"""oras-py (the ``oras`` SDK on PyPI) pushes files as OCI artifacts, an artifact with an
``artifactType`` and a ``subject`` (an SBOM of another artifact), finds it through the
referrers API, reads it back, and pulls anonymously from a public project.

oras-py's default "token" auth backend keeps the first bearer token it gets (scoped to
``pull`` by a blob ``HEAD``) and asks for another only after a 403, so a push that the
token spec answers with 401 ``insufficient_scope`` fails (against CNCF distribution's
token auth too). With credentials the tests use its "basic" backend, which sends them on
every request; regd accepts Basic on ``/v2`` like Harbor. Anonymous pulls use the default
backend (an anonymous token).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import oras.client as oras_client
import oras.defaults
import oras.oci
import pytest

from .accounts import ADMIN_PASSWORD, DEVELOPER, PASSWORD, Api, start_secured
from .daemons import RegistryServer, ServerFactory, Target

pytestmark = pytest.mark.e2e

SBOM = "application/spdx+json"
EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """oras-py pushes only files below the working directory, and reads (and on login
    writes) ~/.docker/config.json: both go to this test's directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield tmp_path


@pytest.fixture(scope="module")
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    return start_secured(regd_server, target)


@pytest.fixture(scope="module")
def api(secured: RegistryServer) -> Api:
    api = Api(secured)
    api.project("arts")
    api.project("artpub", public=True)
    api.user("oradev")
    api.member("arts", "oradev", DEVELOPER)
    return api


def logged_in(server: RegistryServer, workdir: Path, user: str, password: str) -> Any:
    client = oras_client.OrasClient(hostname=server.host, insecure=True, auth_backend="basic")
    answer = client.login(user, password, hostname=server.host, config_path=str(workdir / "auth.json"))
    assert answer == {"Status": "Login Succeeded"}, answer
    return client


def push_files(client: Any, target: str, workdir: Path, **files: bytes) -> str:
    """``client.push`` of text files (name -> bytes); returns the manifest digest."""
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    response = client.push(target, files=[f"{name}:text/plain" for name in files], quiet=True)
    return str(response.headers["Docker-Content-Digest"])


def push_referrer(client: Any, target: str, workdir: Path, subject: dict[str, Any], sbom: bytes) -> str:
    """An SBOM artifact (``artifactType``, empty config, one layer) whose ``subject`` is
    ``subject``, pushed through the SDK's blob and manifest calls (``push`` has no
    artifactType); returns its digest."""
    container = client.get_container(target)
    (workdir / "sbom.json").write_bytes(sbom)
    (workdir / "empty.json").write_bytes(b"{}")
    layer = oras.oci.NewLayer(str(workdir / "sbom.json"), media_type=SBOM)
    layer["annotations"] = {oras.defaults.annotation_title: "sbom.json"}
    config, _ = oras.oci.ManifestConfig(str(workdir / "empty.json"), EMPTY)
    for path, descriptor in (("sbom.json", layer), ("empty.json", config)):
        client._check_200_response(client.upload_blob(str(workdir / path), container, descriptor))
    manifest = oras.oci.NewManifest()
    manifest.update(artifactType=SBOM, config=config, layers=[layer], subject=subject)
    response = client.upload_manifest(manifest, container)
    client._check_200_response(response)
    return str(response.headers["Docker-Content-Digest"])


def descriptor_of(client: Any, server: RegistryServer, repository: str, digest: str) -> dict[str, Any]:
    response = client.do_request(
        f"http://{server.host}/v2/{repository}/manifests/{digest}", "HEAD", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status_code == 200, response.text
    return {
        "mediaType": response.headers["Content-Type"],
        "digest": digest,
        "size": int(response.headers["Content-Length"]),
    }


def referrers(client: Any, server: RegistryServer, repository: str, digest: str, query: str = "") -> Any:
    response = client.do_request(f"http://{server.host}/v2/{repository}/referrers/{digest}{query}", "GET")
    assert response.status_code == 200, response.text
    return response.json()


def test_oras_pushes_an_sbom_for_an_artifact_and_finds_it_through_referrers(
    secured: RegistryServer, api: Api, workdir: Path
) -> None:
    client = logged_in(secured, workdir, "oradev", PASSWORD)
    target = f"{secured.host}/arts/app"
    subject_digest = push_files(client, f"{target}:v1", workdir, **{"readme.txt": b"the subject\n"})
    subject = descriptor_of(client, secured, "arts/app", subject_digest)
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": "app"}).encode()
    sbom_digest = push_referrer(client, f"{target}:sbom", workdir, subject, sbom)

    listed = referrers(client, secured, "arts/app", subject_digest)
    filtered = referrers(client, secured, "arts/app", subject_digest, "?" + urlencode({"artifactType": SBOM}))
    other = referrers(client, secured, "arts/app", subject_digest, "?artifactType=application/x-none")
    pulled = client.pull(f"{target}@{sbom_digest}", outdir=str(workdir / "out"))
    referrer = client.get_manifest(f"{target}@{sbom_digest}")

    (entry,) = listed["manifests"]
    assert entry["digest"] == sbom_digest
    assert entry["artifactType"] == SBOM
    assert [m["digest"] for m in filtered["manifests"]] == [sbom_digest]
    assert other["manifests"] == []
    assert referrer["subject"]["digest"] == subject_digest
    assert [Path(p).read_bytes() for p in pulled] == [sbom]
    assert hashlib.sha256(Path(pulled[0]).read_bytes()).hexdigest() == referrer["layers"][0]["digest"][7:]


def test_oras_pulls_from_a_public_project_anonymously_and_not_from_a_private_one(
    secured: RegistryServer, api: Api, workdir: Path
) -> None:
    admin = logged_in(secured, workdir, "admin", ADMIN_PASSWORD)
    public = f"{secured.host}/artpub/notes:v1"
    private = f"{secured.host}/arts/notes:v1"
    push_files(admin, public, workdir, **{"notes.txt": b"public notes\n"})
    push_files(admin, private, workdir, **{"notes.txt": b"private notes\n"})
    (workdir / "auth.json").unlink()

    anonymous = oras_client.OrasClient(hostname=secured.host, insecure=True)
    pulled = anonymous.pull(public, outdir=str(workdir / "public"))
    with pytest.raises(ValueError) as refused:
        anonymous.pull(private, outdir=str(workdir / "private"))

    assert [Path(p).read_bytes() for p in pulled] == [b"public notes\n"]
    assert not (workdir / "private" / "notes.txt").exists()
    assert "Unauthorized" in str(refused.value)


def test_oras_pushes_and_pulls_without_access_control(registry: RegistryServer, workdir: Path) -> None:
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    target = f"{registry.host}/library/oras:v1"
    digest = push_files(client, target, workdir, **{"a.txt": b"alpha\n", "b.txt": b"beta\n"})

    pulled = client.pull(f"{registry.host}/library/oras@{digest}", outdir=str(workdir / "out"))

    assert sorted(Path(p).read_bytes() for p in pulled) == [b"alpha\n", b"beta\n"]
