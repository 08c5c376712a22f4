"""Content trust on the real app over a real SQLite file: Harbor's refusal (412
PROJECTPOLICYVIOLATION on manifest GET/HEAD), what counts as a signature, the
exemptions, multi-arch, verification against trust anchors, deletion and GC."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from regd.digest import Digest
from regd.gc import Parameters
from regd.gc.service import collect_once
from regd.storage.layout import Layout
from tests.conftest import Client, assert_error, make_config
from tests.trust_support import (
    COSIGN_ARTIFACT,
    NOW,
    Artifact,
    bundle_referrer,
    ca,
    cose_envelope,
    cosign_layer,
    cosign_referrer,
    cosign_tag_signature,
    ec_key,
    image,
    index,
    issue,
    jws_envelope,
    notation_payload,
    notation_signature,
    pem,
    public_pem,
    push,
    referrer,
    rsa_key,
    sigstore_bundle,
)

API = "/api/v2.0"
SCHEME = "io.cncf.notary.signingScheme"
REPO = "signed/app"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


async def set_policy(client: Client, **metadata: str) -> None:
    resp = await client.put(f"{API}/projects/signed", json={"metadata": metadata})
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def signed(client: Client) -> Client:
    """Project ``signed`` (auth off: every caller is the administrator)."""
    resp = await client.post(
        f"{API}/projects", json={"project_name": "signed", "metadata": {"public": "true"}}
    )
    assert resp.status == 201, await resp.text()
    return client


async def pull_status(client: Client, reference: str, method: str = "GET", **headers: str) -> int:
    resp = await client.request(method, f"/v2/{REPO}/manifests/{reference}", headers=headers)
    await resp.read()
    return resp.status


async def refused(client: Client, reference: str, signer: str = "cosign") -> dict[str, Any]:
    resp = await client.get(f"/v2/{REPO}/manifests/{reference}")
    body = await assert_error(resp, 412, "PROJECTPOLICYVIOLATION")
    assert body["errors"][0]["message"] == f"The image is not signed by {signer}."
    head = await client.head(f"/v2/{REPO}/manifests/{reference}")
    assert head.status == 412
    return body["errors"][0]


async def cosign_sign(client: Client, subject: Artifact, key: Any = None, docker: bool = False) -> Artifact:
    signature = cosign_tag_signature([cosign_layer(key or ec_key(), subject.digest)], docker=docker)
    await push(client, REPO, signature, "sha256-" + subject.digest.removeprefix("sha256:") + ".sig")
    return signature


async def notation_sign(client: Client, subject: Artifact, cose: bool = False, old: bool = False) -> Artifact:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    make = cose_envelope if cose else jws_envelope
    signature = notation_signature(
        make(leaf, [root.certificate], notation_payload(subject)), subject, cose, old
    )
    await push(client, REPO, signature)
    return signature


async def test_cosign_policy_refuses_an_unsigned_image_on_manifest_get_and_head_only(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    assert await pull_status(signed, "v1") == 200
    await set_policy(signed, enable_content_trust_cosign="true")
    await refused(signed, "v1")
    await refused(signed, img.digest)
    # Blobs, the tag list, referrers and pushes are not affected.
    config_digest = orjson.loads(img.manifest)["config"]["digest"]
    assert (await signed.get(f"/v2/{REPO}/blobs/{config_digest}")).status == 200
    assert (await signed.get(f"/v2/{REPO}/tags/list")).status == 200
    assert (await signed.get(f"/v2/{REPO}/referrers/{img.digest}")).status == 200
    await push(signed, REPO, image(2), "v2")


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
async def test_cosign_tag_scheme_signature_lets_the_image_through(signed: Client, docker: bool) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust_cosign="true")
    await refused(signed, "v1")
    await cosign_sign(signed, img, docker=docker)
    assert await pull_status(signed, "v1") == 200
    assert await pull_status(signed, img.digest, "HEAD") == 200


@pytest.mark.parametrize("artifact_type", [COSIGN_ARTIFACT, SIGSTORE_BUNDLE])
async def test_cosign_referrer_signature_lets_the_image_through(signed: Client, artifact_type: str) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust_cosign="true")
    descriptor, payload = cosign_layer(ec_key(), img.digest)
    if artifact_type == SIGSTORE_BUNDLE:
        descriptor = {**descriptor, "mediaType": SIGSTORE_BUNDLE}
    await push(signed, REPO, referrer(artifact_type, [descriptor], [payload], img))
    assert await pull_status(signed, "v1") == 200


async def test_a_referrer_of_another_type_is_no_signature(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust_cosign="true", enable_content_trust="true")
    await push(signed, REPO, referrer("application/spdx+json", [], [], img))
    await refused(signed, "v1")


@pytest.mark.parametrize("cose", [False, True], ids=["jws", "cose"])
@pytest.mark.parametrize("old", [False, True], ids=["artifactType", "config-mediaType"])
async def test_notation_policy_needs_a_notation_signature(signed: Client, cose: bool, old: bool) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust="true")
    await refused(signed, "v1", "notation")
    await cosign_sign(signed, img)
    await refused(signed, "v1", "notation")
    await notation_sign(signed, img, cose, old)
    assert await pull_status(signed, "v1") == 200


async def test_both_policies_need_both_kinds(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust="true", enable_content_trust_cosign="true")
    await refused(signed, "v1", "cosign")
    await notation_sign(signed, img)
    await refused(signed, "v1", "cosign")
    await cosign_sign(signed, img)
    assert await pull_status(signed, "v1") == 200


async def test_signature_artifacts_themselves_are_exempt(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust="true", enable_content_trust_cosign="true")
    tag_signature = await cosign_sign(signed, img)
    notation = await notation_sign(signed, img)
    assert await pull_status(signed, "sha256-" + img.digest.removeprefix("sha256:") + ".sig") == 200
    assert await pull_status(signed, tag_signature.digest) == 200
    assert await pull_status(signed, notation.digest) == 200


async def test_signer_user_agent_is_exempt_when_it_may_push(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    await set_policy(signed, enable_content_trust="true", enable_content_trust_cosign="true")
    await refused(signed, "v1")
    assert await pull_status(signed, "v1", **{"User-Agent": "cosign/v2.2.4 (linux; amd64)"}) == 200
    assert await pull_status(signed, "v1", **{"User-Agent": "notation-go/1.1.0"}) == 200
    assert await pull_status(signed, "v1", **{"User-Agent": "docker/24.0"}) == 412


async def test_a_signature_pushed_before_its_image_counts_once_the_image_arrives(signed: Client) -> None:
    img = image(1)
    await set_policy(signed, enable_content_trust="true", enable_content_trust_cosign="true")
    await cosign_sign(signed, img)
    await notation_sign(signed, img)
    await push(signed, REPO, img, "v1")
    assert await pull_status(signed, "v1") == 200


async def test_a_child_pulled_by_digest_is_covered_by_its_signed_index(signed: Client) -> None:
    children = [image(1), image(2)]
    for child in children:
        await push(signed, REPO, child)
    multi = index(children)
    await push(signed, REPO, multi, "multi")
    await set_policy(signed, enable_content_trust_cosign="true")
    await refused(signed, "multi")
    await refused(signed, children[0].digest)
    await cosign_sign(signed, multi)
    assert await pull_status(signed, "multi") == 200
    for child in children:
        assert await pull_status(signed, child.digest) == 200
    # An image no signed index lists stays refused.
    await push(signed, REPO, image(3), "lonely")
    await refused(signed, "lonely")


async def test_policy_values_must_be_true_or_false(signed: Client) -> None:
    resp = await signed.put(f"{API}/projects/signed", json={"metadata": {"enable_content_trust": "yes"}})
    await assert_error(resp, 400, "BAD_REQUEST")
    resp = await signed.put(
        f"{API}/projects/signed/metadatas/content_trust_verify", json={"content_trust_verify": "1"}
    )
    await assert_error(resp, 400, "BAD_REQUEST")
    resp = await signed.put(
        f"{API}/projects/signed/metadatas/enable_content_trust_cosign",
        json={"enable_content_trust_cosign": "true"},
    )
    assert resp.status == 200
    resp = await signed.get(f"{API}/projects/signed/metadatas/enable_content_trust_cosign")
    assert await resp.json() == {"enable_content_trust_cosign": "true"}
    project = await (await signed.get(f"{API}/projects/signed")).json()
    assert project["metadata"]["enable_content_trust_cosign"] == "true"
    resp = await signed.delete(f"{API}/projects/signed/metadatas/enable_content_trust_cosign")
    assert resp.status == 200
    assert (
        "enable_content_trust_cosign"
        not in await (await signed.get(f"{API}/projects/signed/metadatas")).json()
    )


async def test_a_project_created_with_the_policy_enforces_it(client: Client) -> None:
    body = {"project_name": "strict", "metadata": {"public": "true", "enable_content_trust_cosign": "true"}}
    assert (await client.post(f"{API}/projects", json=body)).status == 201
    await push(client, "strict/app", image(1), "v1")
    resp = await client.get("/v2/strict/app/manifests/v1")
    await assert_error(resp, 412, "PROJECTPOLICYVIOLATION")


# -- verification --------------------------------------------------------------------------------


async def add_anchor(client: Client, name: str, kind: str, text: str, status: int = 201) -> None:
    resp = await client.post(
        f"{API}/projects/signed/trust-anchors", json={"name": name, "kind": kind, "pem": text}
    )
    assert resp.status == status, await resp.text()


@pytest.mark.parametrize(
    "make_key", [ec_key, rsa_key, ed25519.Ed25519PrivateKey.generate], ids=["ecdsa", "rsa", "ed25519"]
)
async def test_verify_counts_only_signatures_by_a_trusted_key(signed: Client, make_key: Any) -> None:
    img = image(1)
    key = make_key()
    await push(signed, REPO, img, "v1")
    await cosign_sign(signed, img, key)
    await set_policy(signed, enable_content_trust_cosign="true", content_trust_verify="true")
    error = await refused(signed, "v1")
    assert "no cosign-key trust anchor" in error["detail"]
    await add_anchor(signed, "other", "cosign-key", public_pem(ec_key()))
    error = await refused(signed, "v1")
    assert "none of the project's cosign keys" in error["detail"]
    await add_anchor(signed, "release", "cosign-key", public_pem(key))
    assert await pull_status(signed, "v1") == 200
    assert (await signed.delete(f"{API}/projects/signed/trust-anchors/release")).status == 200
    await refused(signed, "v1")


async def test_verify_refuses_a_signature_for_another_image(signed: Client) -> None:
    img, other = image(1), image(2)
    key = ec_key()
    await push(signed, REPO, img, "v1")
    # A signature of ``other`` copied under ``img``'s tag-scheme name.
    forged = cosign_tag_signature([cosign_layer(key, other.digest)])
    await push(signed, REPO, forged, "sha256-" + img.digest.removeprefix("sha256:") + ".sig")
    await add_anchor(signed, "release", "cosign-key", public_pem(key))
    await set_policy(signed, enable_content_trust_cosign="true")
    assert await pull_status(signed, "v1") == 200  # Harbor's rule: any signature counts
    await set_policy(signed, enable_content_trust_cosign="true", content_trust_verify="true")
    error = await refused(signed, "v1")
    assert f"signs {other.digest}, not {img.digest}" in error["detail"]


@pytest.mark.parametrize("cose", [False, True], ids=["jws", "cose"])
async def test_verify_notation_against_an_x509_anchor(signed: Client, cose: bool) -> None:
    img = image(1)
    root = ca()
    leaf = issue("signer", rsa_key(), root)
    make = cose_envelope if cose else jws_envelope
    await push(signed, REPO, img, "v1")
    await push(
        signed, REPO, notation_signature(make(leaf, [root.certificate], notation_payload(img)), img, cose)
    )
    await set_policy(signed, enable_content_trust="true", content_trust_verify="true")
    await add_anchor(signed, "someone", "x509-ca", pem(ca("Someone Else").certificate))
    error = await refused(signed, "v1", "notation")
    assert "leads to no trust anchor" in error["detail"]
    await add_anchor(signed, "root", "x509-ca", pem(root.certificate))
    assert await pull_status(signed, "v1") == 200


@pytest.mark.parametrize("dsse", [True, False], ids=["dsse", "message"])
async def test_verify_a_cosign_3_sigstore_bundle(signed: Client, dsse: bool) -> None:
    img = image(1)
    key = ec_key()
    await push(signed, REPO, img, "v1")
    await push(signed, REPO, bundle_referrer(sigstore_bundle(key, img, dsse=dsse), img))
    await set_policy(signed, enable_content_trust_cosign="true", content_trust_verify="true")
    error = await refused(signed, "v1")
    assert "no cosign-key trust anchor" in error["detail"]
    await add_anchor(signed, "release", "cosign-key", public_pem(key))
    assert await pull_status(signed, "v1") == 200


async def test_trust_anchor_api_validates_and_lists(signed: Client) -> None:
    await add_anchor(signed, "k", "cosign-key", "not a pem", 400)
    await add_anchor(signed, "k", "x509-ca", public_pem(ec_key()), 400)
    await add_anchor(signed, "k", "pgp", public_pem(ec_key()), 400)
    await add_anchor(signed, "bad name!", "cosign-key", public_pem(ec_key()), 400)
    await add_anchor(signed, "k", "cosign-key", public_pem(ec_key()))
    await add_anchor(signed, "k", "cosign-key", public_pem(ec_key()), 409)
    await add_anchor(signed, "root", "x509-ca", pem(ca("Root R1").certificate))
    listed = await (await signed.get(f"{API}/projects/signed/trust-anchors")).json()
    assert [(a["name"], a["kind"]) for a in listed] == [("k", "cosign-key"), ("root", "x509-ca")]
    assert "CN=Root R1" in listed[1]["description"] and len(listed[1]["fingerprint"]) == 64
    resp = await signed.delete(f"{API}/projects/signed/trust-anchors/nope")
    await assert_error(resp, 404, "NOT_FOUND")


# -- accessories, deletion, GC -------------------------------------------------------------------


async def test_accessories_show_signatures_on_their_image_not_as_artifacts(signed: Client) -> None:
    img = image(1)
    key = ec_key()
    await push(signed, REPO, img, "v1")
    tag_signature = await cosign_sign(signed, img, key)
    notation = await notation_sign(signed, img)
    base = f"{API}/projects/signed/repositories/app/artifacts"
    listed = await (await signed.get(base)).json()
    assert [a["digest"] for a in listed] == [img.digest]
    assert listed[0]["accessories"] is None
    listed = await (await signed.get(base, params={"with_accessory": "true"})).json()
    accessories = listed[0]["accessories"]
    assert {(a["digest"], a["type"]) for a in accessories} == {
        (tag_signature.digest, "signature.cosign"),
        (notation.digest, "signature.notation"),
    }
    for accessory in accessories:
        assert accessory["subject_artifact_digest"] == img.digest
        assert accessory["subject_artifact_repo"] == REPO
        assert accessory["subject_artifact_id"] == listed[0]["id"]
        assert accessory["size"] > 0 and accessory["creation_time"]
        assert accessory["verified"] is False and accessory["reason"]
    await add_anchor(signed, "release", "cosign-key", public_pem(key))
    one = await (await signed.get(f"{base}/v1", params={"with_accessory": "true"})).json()
    verdicts = {a["type"]: a["verified"] for a in one["accessories"]}
    assert verdicts == {"signature.cosign": True, "signature.notation": False}
    resp = await signed.get(f"{base}/{img.digest}/accessories")
    assert resp.headers["X-Total-Count"] == "2"
    assert len(await resp.json()) == 2


async def test_deleting_an_image_deletes_its_signatures(signed: Client) -> None:
    img = image(1)
    await push(signed, REPO, img, "v1")
    tag_signature = await cosign_sign(signed, img)
    notation = await notation_sign(signed, img)
    referrer_signature = cosign_referrer(cosign_layer(ec_key(), img.digest), img)
    await push(signed, REPO, referrer_signature)
    resp = await signed.delete(f"{API}/projects/signed/repositories/app/artifacts/v1")
    assert resp.status == 200
    for gone in (img, tag_signature, notation, referrer_signature):
        assert await pull_status(signed, gone.digest) == 404
    tags = await (await signed.get(f"/v2/{REPO}/tags/list")).json()
    assert not tags.get("tags")


async def test_gc_keeps_signatures_while_the_image_lives_and_frees_them_with_it(
    signed: Client, data_dir: Path
) -> None:
    img = image(1)
    await push(signed, REPO, img)  # untagged: only the grace period keeps it
    tag_signature = await cosign_sign(signed, img)
    notation = await notation_sign(signed, img)
    await push(signed, REPO, image(2), "keep")
    config = make_config(data_dir)
    layout = Layout(config.data_dir)
    payload = tag_signature.blobs[1]
    envelope = notation.blobs[1]
    from tests.conftest import sha256

    def stored(blob: bytes) -> bool:
        return layout.blob(Digest.parse(sha256(blob))).exists()

    await collect_once(config, Parameters(delete_untagged=True), grace_period=3600)
    for artifact in (img, tag_signature, notation):
        assert await pull_status(signed, artifact.digest) == 200
    assert stored(payload) and stored(envelope)
    # Past the grace period the untagged image goes, and its signatures with it.
    for _ in range(2):
        await collect_once(config, Parameters(delete_untagged=True), grace_period=0)
    for artifact in (img, tag_signature, notation):
        assert await pull_status(signed, artifact.digest) == 404
    assert not stored(payload) and not stored(envelope)
    assert await pull_status(signed, "keep") == 200


# -- with access control: the signer exemption needs push ----------------------------------------


async def test_signer_exemption_needs_a_token_that_grants_push(
    aiohttp_client: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.auth_support import (
        ADMIN,
        add_member,
        basic,
        bearer,
        create_project,
        create_user,
        starter,
        token,
    )

    client = await starter(aiohttp_client, data_dir, monkeypatch)()
    await create_project(client, "signed")
    await create_user(client, "dev")
    await add_member(client, "signed", "dev", 2)  # developer: pull and push
    await create_user(client, "guest")
    await add_member(client, "signed", "guest", 3)  # guest: pull only
    await push(client, REPO, image(1), "v1", headers=ADMIN)
    resp = await client.put(
        f"{API}/projects/signed", json={"metadata": {"enable_content_trust_cosign": "true"}}, headers=ADMIN
    )
    assert resp.status == 200
    cosign_agent = {"User-Agent": "cosign/v2.4.1 (linux; amd64) go/go1.22"}
    push_token = await token(client, [f"repository:{REPO}:pull,push"], basic("dev"))
    pull_token = await token(client, [f"repository:{REPO}:pull"], basic("dev"))
    guest_token = await token(client, [f"repository:{REPO}:pull,push"], basic("guest"))
    assert await pull_status(client, "v1", **bearer(push_token), **cosign_agent) == 200
    assert await pull_status(client, "v1", **bearer(push_token)) == 412
    assert await pull_status(client, "v1", **bearer(pull_token), **cosign_agent) == 412
    assert await pull_status(client, "v1", **bearer(guest_token), **cosign_agent) == 412
    assert await pull_status(client, "v1", **basic("dev"), **cosign_agent) == 200
    assert await pull_status(client, "v1", **basic("guest"), **cosign_agent) == 412


# -- caches stay exact across processes ----------------------------------------------------------


async def test_a_second_process_sees_policy_anchor_and_signature_changes(
    aiohttp_client: Any, data_dir: Path
) -> None:
    """Two apps on one data directory, as two worker processes: what one changes, the
    other's cached lookups and verdicts must not hide."""
    from regd.app import create_app

    first = await aiohttp_client(create_app(make_config(data_dir)))
    second = await aiohttp_client(create_app(make_config(data_dir)))
    resp = await first.post(
        f"{API}/projects", json={"project_name": "signed", "metadata": {"public": "true"}}
    )
    assert resp.status == 201
    img = image(1)
    key = ec_key()
    await push(first, REPO, img, "v1")
    assert await pull_status(second, "v1") == 200
    await set_policy(first, enable_content_trust_cosign="true", content_trust_verify="true")
    await refused(second, "v1")
    await cosign_sign(first, img, key)
    await refused(second, "v1")
    resp = await first.post(
        f"{API}/projects/signed/trust-anchors",
        json={"name": "k", "kind": "cosign-key", "pem": public_pem(key)},
    )
    assert resp.status == 201
    assert await pull_status(second, "v1") == 200
    assert (await first.delete(f"{API}/projects/signed/trust-anchors/k")).status == 200
    await refused(second, "v1")


async def test_a_pass_lasts_only_until_the_notation_signatures_expiry(
    signed: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import regd.trust.service

    img = image(1)
    root = ca()
    leaf = issue("signer", ec_key(), root)
    expiry = (NOW + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelope = jws_envelope(
        leaf,
        [root.certificate],
        notation_payload(img),
        crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
        extra_protected={"io.cncf.notary.expiry": expiry},
    )
    await push(signed, REPO, img, "v1")
    await push(signed, REPO, notation_signature(envelope, img))
    await set_policy(signed, enable_content_trust="true", content_trust_verify="true")
    await add_anchor(signed, "root", "x509-ca", pem(root.certificate))
    assert await pull_status(signed, "v1") == 200
    assert await pull_status(signed, "v1") == 200  # the pass is remembered...
    later = time.time() + 2 * 3600
    monkeypatch.setattr(regd.trust.service.time, "time", lambda: later)
    error = await refused(signed, "v1", "notation")  # ...but not past the expiry
    assert "the signature has expired" in error["detail"]


async def test_hostile_signatures_do_not_verify_and_never_fail_the_pull(signed: Client) -> None:
    """Garbage envelopes, junk certificates and odd JSON types make a signature that does
    not verify (412 with a reason), never a 500."""
    img = image(1)
    root = ca()
    leaf = issue("signer", ec_key(), root)
    await push(signed, REPO, img, "v1")
    junk_certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    descriptor, payload = cosign_layer(ec_key(), img.digest)
    descriptor["annotations"]["dev.sigstore.cosign/certificate"] = junk_certificate
    await push(signed, REPO, cosign_referrer((descriptor, payload), img))
    envelopes = [
        (b"\xd8\x12\x9f" + b"\x81" * 5000, True),  # COSE nested past any sane depth
        (b"\x00garbage", True),
        (b'{"payload": 1, "protected": [], "header": "x", "signature": null}', False),
        (jws_envelope(leaf, [root.certificate], notation_payload(img), crit=[SCHEME, ["a"]]), False),  # type: ignore[list-item]
    ]
    for envelope, cose in envelopes:
        await push(signed, REPO, notation_signature(envelope, img, cose))
    await add_anchor(signed, "root", "x509-ca", pem(root.certificate))
    await set_policy(signed, enable_content_trust="true", content_trust_verify="true")
    error = await refused(signed, "v1", "notation")
    assert error["detail"].count("sha256:") == len(envelopes)
    await set_policy(signed, enable_content_trust_cosign="true", content_trust_verify="true")
    error = await refused(signed, "v1", "cosign")
    assert "not PEM" in error["detail"] or "cannot be verified" in error["detail"]
    listed = await (
        await signed.get(f"{API}/projects/signed/repositories/app/artifacts/v1/accessories")
    ).json()
    assert len(listed) == 1 + len(envelopes) and not any(a["verified"] for a in listed)
