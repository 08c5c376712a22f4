"""Content trust: a project's trust anchors, the policy's project metadata keys, and
signatures shown as Harbor's artifact accessories (with regd's verdict on each).

The pull check itself is ``regd/trust/service.py`` (``ContentTrust``); this service
manages what it reads. Anchors: reading needs ``project:read``, adding and removing
``project:update`` (a project admin's, as the project's other settings).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor
from regd.manage.artifacts import ArtifactService
from regd.manage.paging import Listing, Page
from regd.manage.projects import METADATA_KEYS, ProjectService
from regd.metadata import artifacts, projects, signatures, trust_anchors
from regd.metadata.artifacts import RepositoryView
from regd.metadata.db import Database
from regd.metadata.manifests import ManifestRow
from regd.metadata.projects import Project
from regd.metadata.signatures import SignatureRow
from regd.metadata.trust_anchors import AnchorRow
from regd.signing import Anchor, AnchorKind
from regd.trust import anchors as anchor_rules
from regd.trust.anchors import AnchorError
from regd.trust.service import ContentTrust

ANCHOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_PEM = 64 * 1024
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def parse_anchor(name: object, kind: object, pem: object) -> Anchor:
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


@dataclass(frozen=True)
class Accessory:
    """A signature as Harbor's accessory of its image, with regd's verdict."""

    signature: SignatureRow
    subject: ManifestRow
    size: int
    verified: bool
    reason: str


class TrustService:
    def __init__(
        self, db: Database, trust: ContentTrust, projects: ProjectService, artifacts: ArtifactService
    ) -> None:
        self.db = db
        self.trust = trust
        self.projects = projects
        self.artifacts = artifacts

    # -- trust anchors ------------------------------------------------------------------

    async def anchors(self, actor: Actor, project: Project) -> list[AnchorRow]:
        actor.require(project, Permission.PROJECT_READ)
        return await trust_anchors.of_project(self.db, project.id)

    async def add_anchor(self, actor: Actor, project: Project, anchor: Anchor) -> int:
        actor.require(project, Permission.PROJECT_UPDATE)
        async with self.db.transaction() as conn:
            anchor_id = await trust_anchors.insert(conn, project.id, anchor)
        if anchor_id is None:
            raise RegistryError(
                ErrorCode.CONFLICT, f"project {project.name} already has a trust anchor named {anchor.name}"
            )
        return anchor_id

    async def remove_anchor(self, actor: Actor, project: Project, name: str) -> None:
        actor.require(project, Permission.PROJECT_UPDATE)
        async with self.db.transaction() as conn:
            if not await trust_anchors.delete(conn, project.id, name):
                raise RegistryError(
                    ErrorCode.NOT_FOUND, f"trust anchor {name[:128]} not found in {project.name}"
                )

    # -- Harbor's per-key project metadata (where the policy's switches live) -----------

    def metadata(self, actor: Actor, project: Project) -> dict[str, str]:
        actor.require(project, Permission.PROJECT_READ)
        return {**project.metadata, "public": "true" if project.public else "false"}

    async def set_metadata(self, actor: Actor, project: Project, values: Mapping[str, object]) -> None:
        """Harbor's ``POST``/``PUT .../metadatas``: only known keys, validated as on update."""
        unknown = [k for k in values if k not in METADATA_KEYS]
        if unknown:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown metadata key {unknown[0][:100]}")
        await self.projects.update(actor, project, values)

    async def delete_metadata(self, actor: Actor, project: Project, key: str) -> None:
        actor.require(project, Permission.PROJECT_UPDATE)
        metadata = dict(project.metadata)
        if key == "public" or metadata.pop(key, None) is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"metadata {key[:100]} not found")
        async with self.db.transaction() as conn:
            await projects.update(conn, project.id, project.public, metadata)

    # -- accessories -------------------------------------------------------------------

    async def accessories(
        self, actor: Actor, project: Project, view: RepositoryView, rows: list[ManifestRow]
    ) -> dict[int, list[Accessory]]:
        """Per artifact id of ``rows``, its signatures (oldest first)."""
        actor.require(project, Permission.REPOSITORY_READ)
        if not rows:
            return {}
        by_digest = {row.digest: row for row in rows}
        found = await signatures.of_subjects(self.db, view.id, list(by_digest))
        sizes = await artifacts.blob_details(self.db, [s.id for s in found])
        result: dict[int, list[Accessory]] = {}
        now = time.time()
        for signature in found:
            subject = by_digest[signature.subject]
            verdict = await self.trust.verdict(project.id, view.name, signature, subject)
            size = signature.size + sizes.get(signature.id, (0, None))[0]
            result.setdefault(subject.id, []).append(
                Accessory(signature, subject, size, verdict.holds(now), verdict.reason_at(now))
            )
        return result

    async def accessories_of(
        self, actor: Actor, project: Project, view: RepositoryView, reference: str, page: Page
    ) -> Listing[Accessory]:
        """``GET .../artifacts/{reference}/accessories``."""
        row = await self.artifacts.resolve(view, reference)
        found = (await self.accessories(actor, project, view, [row])).get(row.id, [])
        return Listing(len(found), found[page.offset : page.offset + page.size])
