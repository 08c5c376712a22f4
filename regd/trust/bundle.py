"""Sigstore bundles (``application/vnd.dev.sigstore.bundle.v0.3+json``), as cosign 3
attaches image signatures: an OCI referrer of the image whose one layer is the bundle's
JSON (sigstore/cosign ``specs/BUNDLE_SPEC.md``; the message is sigstore/protobuf-specs'
``Bundle``). Pure: no I/O.

A bundle verifies when its signature verifies with its key, and it is about the image:

- ``dsseEnvelope``: the signature covers DSSE's pre-authentication encoding
  ``"DSSEv1" SP len(type) SP type SP len(body) SP body`` of the payload, an in-toto
  statement one of whose ``subject`` digests is the image's;
- ``messageSignature``: ``messageDigest`` is the SHA-256 of the image manifest, and the
  signature covers the manifest.

The key: ``verificationMaterial.publicKey`` (key mode) means one of the project's
``cosign-key`` anchors; ``certificate`` (v0.3) or ``x509CertificateChain`` means that
certificate, chained to an ``x509-ca`` anchor and valid when the signature reached regd.
Transparency-log entries and timestamps in the bundle are not checked (regd holds no log
or timestamp authority key), as for cosign's other signatures.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from regd.trust.anchors import AnchorSet, PublicKey
from regd.trust.cosign import key_verifies
from regd.trust.verdict import VERIFIED, Verdict, VerificationError
from regd.trust.x509chain import verify_chain


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"the bundle has no {what}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"the bundle's {what} is not base64") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise VerificationError(f"the bundle has no {what}")
    return value


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _signed(bundle: dict[str, Any], subject: str, manifest: bytes) -> tuple[bytes, bytes]:
    """(signature, the bytes it covers), once the content is checked to be about ``subject``."""
    algorithm, _, hex_digest = subject.partition(":")
    if "dsseEnvelope" in bundle:
        envelope = _object(bundle["dsseEnvelope"], "DSSE envelope")
        payload = _b64(envelope.get("payload"), "DSSE payload")
        payload_type = envelope.get("payloadType")
        signatures = envelope.get("signatures")
        if not isinstance(payload_type, str) or not isinstance(signatures, list) or len(signatures) != 1:
            raise VerificationError("the DSSE envelope needs a payloadType and exactly one signature")
        try:
            statement = orjson.loads(payload)
            digests = [s["digest"] for s in statement["subject"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise VerificationError("the DSSE payload is not an in-toto statement") from None
        if not any(isinstance(d, dict) and d.get(algorithm) == hex_digest for d in digests):
            raise VerificationError(f"the in-toto statement is not about {subject}")
        return _b64(_object(signatures[0], "DSSE signature").get("sig"), "DSSE signature"), pae(
            payload_type, payload
        )
    message = _object(bundle.get("messageSignature"), "messageSignature or dsseEnvelope")
    digest = _object(message.get("messageDigest"), "message digest")
    if digest.get("algorithm") != "SHA2_256" or _b64(digest.get("digest"), "message digest") != (
        hashlib.sha256(manifest).digest()
    ):
        raise VerificationError(f"the message signature is not about {subject}")
    return _b64(message.get("signature"), "message signature"), manifest


def _keys(material: dict[str, Any], anchors: AnchorSet, received_at: float) -> tuple[PublicKey, ...]:
    if "publicKey" in material:
        if not anchors.keys:
            raise VerificationError("the project has no cosign-key trust anchor")
        return anchors.keys
    raw: list[Any]
    if "certificate" in material:
        raw = [_object(material["certificate"], "certificate")]
    else:
        raw = _object(material.get("x509CertificateChain"), "key or certificate").get("certificates") or []
    try:
        chain = [x509.load_der_x509_certificate(_b64(c.get("rawBytes"), "certificate")) for c in raw]
    except (ValueError, AttributeError):
        raise VerificationError("the bundle holds a malformed certificate") from None
    verify_chain(chain, anchors.certificates, dt.datetime.fromtimestamp(received_at, dt.UTC))
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise VerificationError("the certificate's key is not ECDSA, RSA or Ed25519")
    return (key,)


def verify(data: bytes, subject: str, manifest: bytes, anchors: AnchorSet, received_at: float) -> Verdict:
    """Verdict on a bundle for the image ``subject`` whose manifest bytes are ``manifest``."""
    try:
        try:
            bundle = _object(orjson.loads(data), "JSON object")
        except orjson.JSONDecodeError:
            raise VerificationError("the bundle is not JSON") from None
        signature, signed = _signed(bundle, subject, manifest)
        keys = _keys(
            _object(bundle.get("verificationMaterial"), "verificationMaterial"), anchors, received_at
        )
        if not any(key_verifies(key, signature, signed) for key in keys):
            raise VerificationError("the bundle's signature does not verify with its key")
    except VerificationError as e:
        return Verdict(False, str(e))
    return VERIFIED
