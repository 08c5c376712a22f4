"""What counts as a signature (Harbor's rules), by media types, and what a trust anchor
is (its name, kind and PEM). Pure: no I/O. The content-trust service (``regd/trust``)
verifies with these, and the metadata queries (``metadata/signatures.py``,
``metadata/trust_anchors.py``) find and store them, so they live below both.

- cosign, tag scheme: a manifest tagged ``sha256-<hex>.sig`` in the image's repository
  with a layer of type ``SIMPLESIGNING``;
- cosign, referrers: a manifest whose ``subject`` is the image, with artifact type
  ``COSIGN_ARTIFACT`` or ``SIGSTORE_BUNDLE``;
- notation: a manifest whose ``subject`` is the image, with artifact type (older
  clients: config media type) ``NOTARY_SIGNATURE`` and a layer ``JWS`` or ``COSE``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
COSE = "application/cose"

COSIGN_REFERRER_TYPES = (COSIGN_ARTIFACT, SIGSTORE_BUNDLE)
NOTATION_ENVELOPES = (JWS, COSE)

# Annotations of a cosign signature layer (cosign's signature specification).
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"
COSIGN_CHAIN = "dev.sigstore.cosign/chain"

_SIG_TAG = re.compile(r"^sha256-([0-9a-f]{64})\.sig$")


class Kind(enum.Enum):
    """A signature's kind, named as Harbor's accessory types."""

    COSIGN = "signature.cosign"
    NOTATION = "signature.notation"

    @property
    def signer(self) -> str:
        return "cosign" if self is Kind.COSIGN else "notation"


def signature_tag(digest: str) -> str | None:
    """The tag cosign's tag scheme gives the signatures of ``digest`` (sha256 only)."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"sha256-{hex_digest}.sig" if algorithm == "sha256" else None


def tag_subject(tag: str) -> str | None:
    """The digest a ``sha256-<hex>.sig`` tag names, or None for any other tag."""
    found = _SIG_TAG.match(tag)
    return f"sha256:{found.group(1)}" if found else None


def referrer_kind(artifact_type: str | None, layer_types: list[str]) -> Kind | None:
    """The kind of a manifest that has a ``subject``, from its artifact type and layers."""
    if artifact_type in COSIGN_REFERRER_TYPES:
        return Kind.COSIGN
    if artifact_type == NOTARY_SIGNATURE and any(t in NOTATION_ENVELOPES for t in layer_types):
        return Kind.NOTATION
    return None


class AnchorKind(enum.Enum):
    """The kinds of trust anchor (``regd/trust/anchors.py`` says what each must hold)."""

    COSIGN_KEY = "cosign-key"
    X509_CA = "x509-ca"


@dataclass(frozen=True)
class Anchor:
    name: str
    kind: AnchorKind
    pem: str
