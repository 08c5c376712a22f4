"""Verification of cosign and notation signatures (regd/trust), without a registry:
signatures built as the specifications define them, and the ways they must fail."""

from __future__ import annotations

import base64
import datetime as dt
import time

import cbor2
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from regd.signing import Anchor, AnchorKind
from regd.trust import bundle, cosign, notation
from regd.trust.anchors import AnchorError, AnchorSet, check
from regd.trust.verdict import Verdict
from tests.trust_support import (
    DAY,
    NOW,
    Artifact,
    ca,
    cose_envelope,
    cosign_layer,
    ec_key,
    image,
    issue,
    jws_envelope,
    notation_payload,
    pem,
    public_pem,
    rsa_key,
    sigstore_bundle,
    simple_signing_payload,
)

IMAGE = image(1)
OTHER = image(2)


def keys_anchor(*keys: object) -> AnchorSet:
    return AnchorSet.of([Anchor(f"k{i}", AnchorKind.COSIGN_KEY, public_pem(k)) for i, k in enumerate(keys)])


def ca_anchor(*certs: object) -> AnchorSet:
    return AnchorSet.of(
        [Anchor(f"c{i}", AnchorKind.X509_CA, pem(c.certificate)) for i, c in enumerate(certs)]
    )


def verify_cosign(
    layer: tuple[dict[str, object], bytes], anchors: AnchorSet, subject: str = IMAGE.digest
) -> Verdict:
    descriptor, payload = layer
    annotations = descriptor["annotations"]
    assert isinstance(annotations, dict)
    return cosign.verify([cosign.SignatureLayer(annotations, payload)], subject, anchors, time.time())


@pytest.mark.parametrize(
    "make_key",
    [ec_key, lambda: ec_key(ec.SECP384R1()), rsa_key, ed25519.Ed25519PrivateKey.generate],
    ids=["ecdsa-p256", "ecdsa-p384", "rsa", "ed25519"],
)
def test_cosign_key_mode_verifies_with_the_projects_key(make_key: object) -> None:
    key = make_key()
    verdict = verify_cosign(cosign_layer(key, IMAGE.digest), keys_anchor(ec_key(), key))
    assert verdict.verified, verdict.reason


def test_cosign_signature_by_another_key_does_not_verify() -> None:
    verdict = verify_cosign(cosign_layer(ec_key(), IMAGE.digest), keys_anchor(ec_key()))
    assert not verdict.verified
    assert "none of the project's cosign keys" in verdict.reason


def test_cosign_payload_for_another_image_does_not_verify() -> None:
    key = ec_key()
    verdict = verify_cosign(cosign_layer(key, OTHER.digest), keys_anchor(key))
    assert not verdict.verified
    assert f"signs {OTHER.digest}, not {IMAGE.digest}" in verdict.reason


def test_cosign_tampered_payload_does_not_verify() -> None:
    key = ec_key()
    descriptor, payload = cosign_layer(key, IMAGE.digest)
    tampered = payload.replace(b"registry.test", b"evil.test")
    assert not verify_cosign((descriptor, tampered), keys_anchor(key)).verified


def test_cosign_without_anchors_says_so() -> None:
    verdict = verify_cosign(cosign_layer(ec_key(), IMAGE.digest), AnchorSet.of([]))
    assert verdict.reason == "the project has no cosign-key trust anchor"


def test_cosign_certificate_mode_chains_to_the_ca_anchor() -> None:
    root = ca()
    intermediate = issue("Intermediate", ec_key(), root, ca=True)
    leaf = issue("signer@example.com", ec_key(), intermediate)
    layer = cosign_layer(
        leaf.key, IMAGE.digest, certificate=leaf, chain=[intermediate.certificate, root.certificate]
    )
    assert verify_cosign(layer, ca_anchor(root)).verified
    other = verify_cosign(layer, ca_anchor(ca("Other Root")))
    assert not other.verified and "leads to no trust anchor" in other.reason


def test_cosign_certificate_expired_when_used_does_not_verify() -> None:
    root = ca()
    leaf = issue("short-lived", ec_key(), root, not_before=NOW - 3 * DAY, not_after=NOW - 2 * DAY)
    verdict = verify_cosign(
        cosign_layer(leaf.key, IMAGE.digest, certificate=leaf, chain=[root.certificate]), ca_anchor(root)
    )
    assert not verdict.verified and "was not valid at the signing time" in verdict.reason


def test_cosign_any_one_of_several_layers_counts() -> None:
    key = ec_key()
    bad = cosign_layer(ec_key(), IMAGE.digest)
    good = cosign_layer(key, IMAGE.digest)
    layers = [cosign.SignatureLayer(d["annotations"], p) for d, p in (bad, good)]
    assert cosign.verify(layers, IMAGE.digest, keys_anchor(key), time.time()).verified


# -- notation ------------------------------------------------------------------------------------


def target(artifact: Artifact) -> notation.Target:
    return notation.Target(artifact.media_type, artifact.digest, len(artifact.manifest))


ENVELOPES = {
    "jws": (jws_envelope, "application/jose+json"),
    "cose": (cose_envelope, "application/cose"),
}


@pytest.fixture(params=sorted(ENVELOPES))
def envelope_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(kind: str, signer: object, chain: list[object], payload: bytes, **options: object) -> Verdict:
    make, media_type = ENVELOPES[kind]
    return make(signer, chain, payload, **options), media_type


def verify_notation(
    kind: str,
    anchors: AnchorSet,
    signer: object,
    chain: list[object],
    payload: bytes | None = None,
    subject: Artifact = IMAGE,
    **options: object,
) -> Verdict:
    envelope, media_type = build(kind, signer, chain, payload or notation_payload(IMAGE), **options)
    return notation.verify(media_type, envelope, target(subject), anchors, time.time())


@pytest.mark.parametrize(
    "make_key",
    [rsa_key, lambda: rsa_key(3072), ec_key, lambda: ec_key(ec.SECP384R1()), lambda: ec_key(ec.SECP521R1())],
    ids=["PS256", "PS384", "ES256", "ES384", "ES512"],
)
def test_notation_envelope_verifies(envelope_kind: str, make_key: object) -> None:
    root = ca()
    leaf = issue("notation signer", make_key(), root)
    verdict = verify_notation(envelope_kind, ca_anchor(root), leaf, [root.certificate])
    assert verdict.verified, verdict.reason


def test_notation_self_signed_signing_certificate_as_anchor(envelope_kind: str) -> None:
    leaf = issue("self-signed signer", ec_key())
    assert verify_notation(envelope_kind, ca_anchor(leaf), leaf, []).verified


def test_notation_for_another_images_digest_fails(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    verdict = verify_notation(
        envelope_kind, ca_anchor(root), leaf, [root.certificate], notation_payload(IMAGE, OTHER.digest)
    )
    assert (
        not verdict.verified
        and f"names application/vnd.oci.image.manifest.v1+json {OTHER.digest}" in verdict.reason
    )


def test_notation_tampered_payload_fails(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    verdict = verify_notation(envelope_kind, ca_anchor(root), leaf, [root.certificate], tamper=True)
    assert not verdict.verified and "does not verify" in verdict.reason


def test_notation_expired_certificate_fails(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root, not_before=NOW - 10 * DAY, not_after=NOW - 5 * DAY)
    verdict = verify_notation(envelope_kind, ca_anchor(root), leaf, [root.certificate])
    assert not verdict.verified and "was not valid at the signing time" in verdict.reason


def test_notation_signed_while_certificate_valid_still_verifies(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root, not_before=NOW - 10 * DAY, not_after=NOW - 5 * DAY)
    verdict = verify_notation(
        envelope_kind, ca_anchor(root), leaf, [root.certificate], signing_time=NOW - 7 * DAY
    )
    assert verdict.verified, verdict.reason


def test_notation_unknown_root_fails(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    verdict = verify_notation(envelope_kind, ca_anchor(ca("Somebody Else")), leaf, [root.certificate])
    assert not verdict.verified and "leads to no trust anchor" in verdict.reason


def test_notation_unknown_critical_header_fails(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    verdict = verify_notation(
        envelope_kind,
        ca_anchor(root),
        leaf,
        [root.certificate],
        crit=["io.cncf.notary.signingScheme", "io.example.unknown"],
        extra_protected={"io.example.unknown": "x"},
    )
    assert not verdict.verified and "unknown critical header 'io.example.unknown'" in verdict.reason


def test_notation_expiry_is_a_critical_header_that_counts(envelope_kind: str) -> None:
    root = ca()
    leaf = issue("signer", ec_key(), root)
    past = NOW - dt.timedelta(hours=1)
    expiry = (
        past.strftime("%Y-%m-%dT%H:%M:%SZ")
        if envelope_kind == "jws"
        else cbor2.CBORTag(1, int(past.timestamp()))
    )
    verdict = verify_notation(
        envelope_kind,
        ca_anchor(root),
        leaf,
        [root.certificate],
        crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
        extra_protected={"io.cncf.notary.expiry": expiry},
    )
    assert not verdict.verified and verdict.reason == "the signature has expired"


def test_notation_garbage_envelopes_fail_with_a_reason() -> None:
    anchors = ca_anchor(ca())
    for media_type, data in [
        ("application/jose+json", b"{"),
        ("application/cose", b"\xff\x00"),
        ("application/cose", b"\x80"),
    ]:
        verdict = notation.verify(media_type, data, target(IMAGE), anchors, time.time())
        assert not verdict.verified and verdict.reason


def test_anchor_kinds_are_checked() -> None:
    check(AnchorKind.COSIGN_KEY, public_pem(ec_key()))
    check(AnchorKind.X509_CA, pem(ca().certificate))
    with pytest.raises(AnchorError):
        check(AnchorKind.COSIGN_KEY, pem(ca().certificate))
    with pytest.raises(AnchorError):
        check(AnchorKind.X509_CA, public_pem(ec_key()))
    with pytest.raises(AnchorError):
        check(AnchorKind.COSIGN_KEY, public_pem(ec_key(ec.SECP521R1())))
    assert simple_signing_payload(IMAGE.digest)


# -- sigstore bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize("dsse", [True, False], ids=["dsse", "message"])
def test_sigstore_bundle_key_mode(dsse: bool) -> None:
    key = ec_key()
    data = sigstore_bundle(key, IMAGE, dsse=dsse)
    assert bundle.verify(data, IMAGE.digest, IMAGE.manifest, keys_anchor(key), time.time()).verified
    other = bundle.verify(data, IMAGE.digest, IMAGE.manifest, keys_anchor(ec_key()), time.time())
    assert not other.verified and other.reason == "the bundle's signature does not verify with its key"


def test_sigstore_bundle_certificate_mode() -> None:
    root = ca()
    leaf = issue("keyless signer", ec_key(), root)
    data = sigstore_bundle(leaf.key, IMAGE, certificate=leaf)
    assert bundle.verify(data, IMAGE.digest, IMAGE.manifest, ca_anchor(root), time.time()).verified
    verdict = bundle.verify(data, IMAGE.digest, IMAGE.manifest, ca_anchor(ca("Other")), time.time())
    assert not verdict.verified and "leads to no trust anchor" in verdict.reason


def test_sigstore_bundle_about_another_image_fails() -> None:
    key = ec_key()
    dsse = sigstore_bundle(key, IMAGE, about=OTHER.digest)
    verdict = bundle.verify(dsse, IMAGE.digest, IMAGE.manifest, keys_anchor(key), time.time())
    assert not verdict.verified and f"not about {IMAGE.digest}" in verdict.reason
    message = sigstore_bundle(key, OTHER, dsse=False)
    verdict = bundle.verify(message, IMAGE.digest, IMAGE.manifest, keys_anchor(key), time.time())
    assert not verdict.verified and f"not about {IMAGE.digest}" in verdict.reason


def test_sigstore_bundle_tampered_statement_fails() -> None:
    key = ec_key()
    data = orjson.loads(sigstore_bundle(key, IMAGE))
    statement = orjson.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"evil": True}
    data["dsseEnvelope"]["payload"] = base64.b64encode(orjson.dumps(statement)).decode()
    verdict = bundle.verify(orjson.dumps(data), IMAGE.digest, IMAGE.manifest, keys_anchor(key), time.time())
    assert not verdict.verified and "does not verify" in verdict.reason
