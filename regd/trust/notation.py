"""Notary Project signatures (notaryproject/specifications: ``signature-specification.md``,
``signature-envelope-jws.md``, ``signature-envelope-cose.md``). Pure: no I/O.

One envelope, JWS JSON serialization (``application/jose+json``) or COSE_Sign1_Tagged
(``application/cose``), verifies when:

- every ``crit`` header is one this verifier understands and is present, and
  ``io.cncf.notary.signingScheme`` is among them;
- the content type is ``application/vnd.cncf.notary.payload.v1+json``;
- ``alg`` is PS256/384/512 or ES256/384/512 and matches the leaf certificate's key
  (RSA 2048/3072/4096, P-256/384/521), and the signature verifies with that key;
- the ``x5c`` (COSE: ``x5chain``, label 33) chain leads to an ``x509-ca`` anchor, every
  certificate valid at the signing time (``io.cncf.notary.signingTime``, or
  ``authenticSigningTime`` under ``notary.x509.signingAuthority``);
- the payload's ``targetArtifact`` has the image's media type, digest and size;
- ``io.cncf.notary.expiry``, when present, is still ahead (the verdict carries it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from regd.trust.anchors import AnchorSet
from regd.trust.verdict import Verdict, VerificationError
from regd.trust.x509chain import verify_chain

PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
UNDERSTOOD_CRITICAL = frozenset({SCHEME, AUTHENTIC_SIGNING_TIME, EXPIRY})
SCHEMES = {"notary.x509": SIGNING_TIME, "notary.x509.signingAuthority": AUTHENTIC_SIGNING_TIME}

# alg -> (hash, RSA key size or EC curve name); the COSE labels (RFC 9053, RFC 8230).
_ALGORITHMS: dict[str, tuple[type[hashes.HashAlgorithm], int | str]] = {
    "PS256": (hashes.SHA256, 2048),
    "PS384": (hashes.SHA384, 3072),
    "PS512": (hashes.SHA512, 4096),
    "ES256": (hashes.SHA256, "secp256r1"),
    "ES384": (hashes.SHA384, "secp384r1"),
    "ES512": (hashes.SHA512, "secp521r1"),
}
COSE_ALGORITHMS = {-37: "PS256", -38: "PS384", -39: "PS512", -7: "ES256", -35: "ES384", -36: "ES512"}
_COSE_ALG, _COSE_CRIT, _COSE_CTY, _COSE_X5CHAIN = 1, 2, 3, 33


@dataclass(frozen=True)
class Target:
    """The image a signature must name: its manifest's media type, digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class _Envelope:
    algorithm: str
    critical: Any
    protected: dict[Any, Any]
    content_type: Any
    chain: list[x509.Certificate]
    signed: bytes  # the bytes the signature covers
    signature: bytes
    payload: bytes


def verify(media_type: str, envelope: bytes, target: Target, anchors: AnchorSet, now: float) -> Verdict:
    try:
        parsed = _jws(envelope) if media_type == "application/jose+json" else _cose(envelope)
        return _verify(parsed, target, anchors, now)
    except VerificationError as e:
        return Verdict(False, str(e))


def _verify(env: _Envelope, target: Target, anchors: AnchorSet, now: float) -> Verdict:
    if not isinstance(env.critical, list) or SCHEME not in env.critical:
        raise VerificationError(f"the crit header must list {SCHEME}")
    for name in env.critical:
        if not isinstance(name, str) or name not in UNDERSTOOD_CRITICAL:
            raise VerificationError(f"unknown critical header {str(name)[:100]!r}")
        if name not in env.protected:
            raise VerificationError(f"critical header {name} is missing")
    if env.content_type != PAYLOAD_TYPE:
        raise VerificationError(f"content type {str(env.content_type)[:100]!r} is not {PAYLOAD_TYPE}")
    time_header = SCHEMES.get(str(env.protected.get(SCHEME)))
    if time_header is None:
        raise VerificationError(f"unknown signing scheme {str(env.protected.get(SCHEME))[:100]!r}")
    signing_time = _time(env.protected.get(time_header), time_header)
    if not env.chain:
        raise VerificationError("the envelope carries no certificate chain")
    _check_signature(env)
    verify_chain(env.chain, anchors.certificates, signing_time)
    _check_target(env.payload, target)
    expiry = env.protected.get(EXPIRY)
    expires_at = None if expiry is None else _time(expiry, EXPIRY).timestamp()
    if expires_at is not None and now >= expires_at:
        raise VerificationError("the signature has expired")
    return Verdict(True, expires_at=expires_at)


def _check_signature(env: _Envelope) -> None:
    found = _ALGORITHMS.get(env.algorithm)
    if found is None:
        raise VerificationError(f"signature algorithm {env.algorithm[:50]!r} is not supported")
    hash_type, key_spec = found
    key = env.chain[0].public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and key.key_size == key_spec:
            pss = padding.PSS(padding.MGF1(hash_type()), padding.PSS.DIGEST_LENGTH)
            key.verify(env.signature, env.signed, pss, hash_type())
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == key_spec:
            half = len(env.signature) // 2
            if len(env.signature) != 2 * ((key.curve.key_size + 7) // 8):
                raise InvalidSignature
            der = encode_dss_signature(
                int.from_bytes(env.signature[:half], "big"), int.from_bytes(env.signature[half:], "big")
            )
            key.verify(der, env.signed, ec.ECDSA(hash_type()))
        else:
            raise VerificationError(f"algorithm {env.algorithm} does not match the signing certificate's key")
    except InvalidSignature:
        raise VerificationError("the signature does not verify with the signing certificate") from None


def _check_target(payload: bytes, target: Target) -> None:
    try:
        artifact = orjson.loads(payload)["targetArtifact"]
        named = Target(artifact["mediaType"], artifact["digest"], artifact["size"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise VerificationError("the payload has no targetArtifact descriptor") from None
    if named != target:
        raise VerificationError(
            f"the payload names {named.media_type[:100]} {named.digest[:100]} ({named.size} bytes), "
            f"not {target.media_type} {target.digest} ({target.size} bytes)"
        )


def _time(value: Any, name: str) -> dt.datetime:
    """RFC 3339 text (JWS) or an RFC 8949 epoch date/time (COSE; cbor2 decodes tag 1)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, cbor2.CBORTag) and value.tag == 1 and isinstance(value.value, int | float):
        return dt.datetime.fromtimestamp(value.value, dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise VerificationError(f"{name} is not an RFC 3339 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise VerificationError(f"{name} is missing or not a time")


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _certificates(ders: Any) -> list[x509.Certificate]:
    if isinstance(ders, bytes):
        ders = [ders]
    if not isinstance(ders, list) or not all(isinstance(d, bytes) for d in ders):
        raise VerificationError("the certificate chain is not a list of DER certificates")
    try:
        return [x509.load_der_x509_certificate(d) for d in ders]
    except ValueError:
        raise VerificationError("the certificate chain holds a malformed certificate") from None


# -- JWS (RFC 7515, JSON serialization, flattened) ----------------------------------------


def _b64url(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise VerificationError(f"the JWS {what} is missing")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"the JWS {what} is not base64url") from None


def _jws(data: bytes) -> _Envelope:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise VerificationError("the JWS envelope is not JSON") from None
    if not isinstance(body, dict):
        raise VerificationError("the JWS envelope is not a JSON object")
    try:
        protected = orjson.loads(_b64url(body.get("protected"), "protected header"))
    except orjson.JSONDecodeError:
        raise VerificationError("the JWS protected header is not JSON") from None
    header = body.get("header") or {}
    if not isinstance(protected, dict) or not isinstance(header, dict):
        raise VerificationError("the JWS headers are not JSON objects")
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c):
        raise VerificationError("the JWS header has no x5c certificate chain")
    try:
        ders = [base64.b64decode(c, validate=True) for c in x5c]
    except (binascii.Error, ValueError):
        raise VerificationError("the JWS x5c holds a certificate that is not base64") from None
    payload = _b64url(body.get("payload"), "payload")
    return _Envelope(
        algorithm=str(protected.get("alg")),
        critical=protected.get("crit"),
        protected=protected,
        content_type=protected.get("cty"),
        chain=_certificates(ders),
        signed=f"{body['protected']}.{body['payload']}".encode(),
        signature=_b64url(body.get("signature"), "signature"),
        payload=payload,
    )


# -- COSE_Sign1 (RFC 9052 §4.2, §4.4) ------------------------------------------------------


def _cose(data: bytes) -> _Envelope:
    try:
        tagged = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise VerificationError("the COSE envelope is not CBOR") from None
    if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != 18:
        raise VerificationError("the COSE envelope is not a COSE_Sign1_Tagged object")
    parts = tagged.value  # cbor2 decodes a tag's content immutable: tuples, frozendicts
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise VerificationError("COSE_Sign1 must be an array of four")
    protected_bytes, unprotected, payload, signature = parts
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, Mapping):
        raise VerificationError("the COSE headers are malformed")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise VerificationError("the COSE payload must be attached and the signature a byte string")
    try:
        protected = cbor2.loads(protected_bytes) if protected_bytes else {}
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise VerificationError("the COSE protected header is not CBOR") from None
    if not isinstance(protected, Mapping):
        raise VerificationError("the COSE protected header is not a map")
    protected = dict(protected)
    alg = protected.get(_COSE_ALG)
    chain = protected.get(_COSE_X5CHAIN, unprotected.get(_COSE_X5CHAIN))
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    return _Envelope(
        algorithm=COSE_ALGORITHMS.get(alg, str(alg)) if isinstance(alg, int) else str(alg),
        critical=_listed(protected.get(_COSE_CRIT)),
        protected=protected,
        content_type=protected.get(_COSE_CTY),
        chain=_certificates(_listed(chain)),
        signed=to_be_signed,
        signature=signature,
        payload=payload,
    )
