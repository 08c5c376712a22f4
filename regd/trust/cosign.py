"""cosign signatures (sigstore/cosign ``specs/SIGNATURE_SPEC.md``). Pure: no I/O.

Each signature is one layer of type ``application/vnd.dev.cosign.simplesigning.v1+json``:
the layer's blob is the simple-signing payload
``{"critical": {"identity": {...}, "image": {"docker-manifest-digest": D}, "type":
"cosign container image signature"}, "optional": ...}`` and its annotation
``dev.cosignproject.cosign/signature`` is the base64 signature over that blob.

- key mode: the signature verifies with one of the project's ``cosign-key`` anchors
  (ECDSA with SHA-256, or SHA-384 for P-384 keys; RSA PKCS#1 v1.5 with SHA-256;
  Ed25519 over the payload itself);
- certificate mode: the annotation ``dev.sigstore.cosign/certificate`` (PEM), with
  ``dev.sigstore.cosign/chain`` (PEM, intermediates then root), chains to an
  ``x509-ca`` anchor and was valid when the signature reached regd (the signing time
  regd can vouch for: a transparency-log time would need the log's key), and the
  signature verifies with the certificate's key.

A manifest holds one or more such layers (cosign appends); any one verifying counts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from regd import signing
from regd.trust.anchors import AnchorSet, PublicKey
from regd.trust.verdict import VERIFIED, Verdict, VerificationError
from regd.trust.x509chain import verify_chain

SIGNATURE_TYPE = "cosign container image signature"


@dataclass(frozen=True)
class SignatureLayer:
    annotations: dict[str, str]
    payload: bytes


def key_verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """Does ``signature`` over ``payload`` verify with ``key``, as cosign signs?"""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            for algorithm in _ec_hashes(key):
                try:
                    key.verify(signature, payload, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _ec_hashes(key: ec.EllipticCurvePublicKey) -> list[hashes.HashAlgorithm]:
    if key.curve.name == "secp384r1":
        return [hashes.SHA384(), hashes.SHA256()]
    if key.curve.name == "secp521r1":
        return [hashes.SHA512(), hashes.SHA256()]
    return [hashes.SHA256()]


def _check_payload(payload: bytes, subject: str) -> None:
    try:
        body = orjson.loads(payload)
        critical = body["critical"]
        signed = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise VerificationError("the cosign payload is not a simple-signing document") from None
    if kind != SIGNATURE_TYPE:
        raise VerificationError(f"the cosign payload's type is {str(kind)[:100]!r}, not {SIGNATURE_TYPE!r}")
    if signed != subject:
        raise VerificationError(f"the cosign payload signs {str(signed)[:100]}, not {subject}")


def _certificates(annotations: dict[str, str]) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(annotations[signing.COSIGN_CERTIFICATE].encode())[:1]
        if annotations.get(signing.COSIGN_CHAIN):
            chain += x509.load_pem_x509_certificates(annotations[signing.COSIGN_CHAIN].encode())
    except ValueError:
        raise VerificationError("the cosign certificate annotation is not PEM") from None
    return chain


def _verify_layer(layer: SignatureLayer, subject: str, anchors: AnchorSet, received_at: float) -> None:
    encoded = layer.annotations.get(signing.COSIGN_SIGNATURE)
    if not encoded:
        raise VerificationError("the cosign layer has no signature annotation")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("the cosign signature annotation is not base64") from None
    _check_payload(layer.payload, subject)
    if signing.COSIGN_CERTIFICATE in layer.annotations:
        chain = _certificates(layer.annotations)
        verify_chain(chain, anchors.certificates, dt.datetime.fromtimestamp(received_at, dt.UTC))
        key = chain[0].public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise VerificationError("the certificate's key is not ECDSA, RSA or Ed25519")
        if not key_verifies(key, signature, layer.payload):
            raise VerificationError("the cosign signature does not verify with its certificate")
        return
    if not anchors.keys:
        raise VerificationError("the project has no cosign-key trust anchor")
    if not any(key_verifies(key, signature, layer.payload) for key in anchors.keys):
        raise VerificationError("the cosign signature verifies with none of the project's cosign keys")


def verify(layers: Sequence[SignatureLayer], subject: str, anchors: AnchorSet, received_at: float) -> Verdict:
    """Verdict on a cosign signature manifest's layers for the image ``subject``."""
    if not layers:
        return Verdict(False, "the cosign signature manifest has no simple-signing layer")
    reasons = []
    for layer in layers:
        try:
            _verify_layer(layer, subject, anchors, received_at)
            return VERIFIED
        except VerificationError as e:
            reasons.append(str(e))
    return Verdict(False, "; ".join(dict.fromkeys(reasons)))
