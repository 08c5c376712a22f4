"""Trust anchors: what a project trusts a signature to chain to. Pure: no I/O.

Two kinds, as the management API names them:

- ``cosign-key``: a PEM public key (ECDSA P-256/P-384, RSA, Ed25519) that cosign's key
  mode signatures verify against;
- ``x509-ca``: a PEM certificate that certificate chains (cosign's certificate mode,
  notation's ``x5c``) must lead to. A CA certificate or a self-signed signing
  certificate: the Notary Project's trust store allows both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from regd.signing import Anchor, AnchorKind

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class AnchorError(ValueError):
    """A PEM that is not what its kind needs."""


def load_key(pem: str) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise AnchorError("pem is not a PEM public key") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1"):
        raise AnchorError(f"ECDSA curve {key.curve.name} is not supported (P-256, P-384)")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise AnchorError("the key is not ECDSA, RSA or Ed25519")
    return key


def load_certificates(pem: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise AnchorError("pem is not a PEM certificate") from None
    return certificates


def check(kind: AnchorKind, pem: str) -> None:
    """Raise AnchorError unless ``pem`` is one anchor of ``kind``."""
    if kind is AnchorKind.COSIGN_KEY:
        load_key(pem)
    elif len(load_certificates(pem)) != 1:
        raise AnchorError("an x509-ca anchor is exactly one certificate")


@dataclass(frozen=True)
class AnchorSet:
    """A project's anchors, parsed; ``fingerprint`` names the set in verdict caches."""

    keys: tuple[PublicKey, ...] = ()
    certificates: tuple[x509.Certificate, ...] = ()
    fingerprint: str = ""
    names: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, anchors: list[Anchor]) -> AnchorSet:
        keys: list[PublicKey] = []
        certificates: list[x509.Certificate] = []
        h = hashlib.sha256()
        for anchor in sorted(anchors, key=lambda a: a.name):
            h.update(f"{anchor.kind.value}\0{anchor.pem}\0".encode())
            try:
                if anchor.kind is AnchorKind.COSIGN_KEY:
                    keys.append(load_key(anchor.pem))
                else:
                    certificates += load_certificates(anchor.pem)
            except AnchorError:
                continue  # checked when added; an unreadable one trusts nothing
        return cls(tuple(keys), tuple(certificates), h.hexdigest(), tuple(a.name for a in anchors))
