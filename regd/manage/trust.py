"""Content trust management: trust anchors, the policy's project metadata keys, and
signatures shown as Harbor's artifact accessories (with regd's verdict on each).

Shared by the management API (``api/harbor/trust.py``), the CLI (``regd trust``) and
anything else that manages projects; the pull check itself is ``trust/service.py``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from regd.errors import ErrorCode, RegistryError
from regd.metadata import artifacts, signatures, trust_anchors
from regd.metadata.db import Database
from regd.metadata.manifests import ManifestRow
from regd.metadata.projects import Project
from regd.metadata.trust_anchors import AnchorRow
from regd.trust import anchors as anchor_rules
from regd.trust.anchors import Anchor, AnchorError, AnchorKind
from regd.trust.service import POLICY_KEYS, ContentTrust

ANCHOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_PEM = 64 * 1024
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def check_policy_value(key: str, value: object) -> str:
    """The content-trust keys are the strings "true" or "false", as Harbor's."""
    if key in POLICY_KEYS and (not isinstance(value, str) or value.lower() not in ("true", "false")):
        raise RegistryError(ErrorCode.BAD_REQUEST, f'metadata.{key} must be "true" or "false"')
    return value.lower() if isinstance(value, str) and key in POLICY_KEYS else str(value)


def parse_anchor(body: dict[str, Any]) -> Anchor:
    name, kind, pem = body.get("name"), body.get("kind"), body.get("pem")
    if not isinstance(name, str) or not ANCHOR_NAME.match(name):
        raise RegistryError(ErrorCode.BAD_REQUEST, "name must be 1-128 letters, digits, '.', '_' or '-'")
    try:
        anchor_kind = AnchorKind(kind)
    except ValueError:
        raise RegistryError(ErrorCode.BAD_REQUEST, 'kind must be "cosign-key" or "x509-ca"') from None
    if not isinstance(pem, str) or not pem.strip() or len(pem) > MAX_PEM:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"pem must be a PEM text of at most {MAX_PEM} bytes")
    try:
        anchor_rules.check(anchor_kind, pem)
    except AnchorError as e:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{anchor_kind.value}: {e}") from None
    return Anchor(name, anchor_kind, pem)


async def add_anchor(db: Database, project: Project, anchor: Anchor) -> int:
    async with db.transaction() as conn:
        anchor_id = await trust_anchors.insert(conn, project.id, anchor)
    if anchor_id is None:
        raise RegistryError(
            ErrorCode.CONFLICT, f"project {project.name} already has a trust anchor named {anchor.name}"
        )
    return anchor_id


async def list_anchors(db: Database, project: Project) -> list[AnchorRow]:
    return await trust_anchors.of_project(db, project.id)


async def remove_anchor(db: Database, project: Project, name: str) -> None:
    async with db.transaction() as conn:
        if not await trust_anchors.delete(conn, project.id, name):
            raise RegistryError(ErrorCode.NOT_FOUND, f"trust anchor {name[:128]} not found in {project.name}")


def describe(anchor: Anchor) -> str:
    """One line about an anchor: the certificate's subject and expiry, or the key type."""
    if anchor.kind is AnchorKind.X509_CA:
        (certificate,) = anchor_rules.load_certificates(anchor.pem)
        return f"{certificate.subject.rfc4514_string()} (until {certificate.not_valid_after_utc:%Y-%m-%d})"
    key = anchor_rules.load_key(anchor.pem)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVES.get(key.curve.name, key.curve.name)} public key"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} public key"
    return "Ed25519 public key"


def fingerprint(anchor: Anchor) -> str:
    """SHA-256 of the DER certificate or of the DER SubjectPublicKeyInfo."""
    if anchor.kind is AnchorKind.X509_CA:
        (certificate,) = anchor_rules.load_certificates(anchor.pem)
        return certificate.fingerprint(hashes.SHA256()).hex()
    der = anchor_rules.load_key(anchor.pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


# -- accessories ------------------------------------------------------------------------


@dataclass(frozen=True)
class Accessory:
    """A signature as Harbor's accessory of its image, with regd's verdict."""

    signature: signatures.SignatureRow
    subject: ManifestRow
    size: int
    verified: bool
    reason: str


async def accessories(
    db: Database, trust: ContentTrust, project: Project, repository: str, rows: list[ManifestRow]
) -> dict[int, list[Accessory]]:
    """Per artifact id of ``rows``, its signatures (oldest first)."""
    if not rows:
        return {}
    by_digest = {row.digest: row for row in rows}
    found = await signatures.of_subjects(db, rows[0].repository_id, list(by_digest))
    sizes = await artifacts.blob_details(db, [s.id for s in found])
    result: dict[int, list[Accessory]] = {}
    now = time.time()
    for signature in found:
        subject = by_digest[signature.subject]
        verdict = await trust.verdict(project.id, repository, signature, subject)
        size = signature.size + sizes.get(signature.id, (0, None))[0]
        result.setdefault(subject.id, []).append(
            Accessory(signature, subject, size, verdict.holds(now), verdict.reason_at(now))
        )
    return result
