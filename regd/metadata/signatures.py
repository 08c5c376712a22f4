"""Queries that find signatures (``regd/trust/signing.py`` says what counts) among the
rows of ``manifests``, ``manifest_blobs`` and ``tags``: no table of their own, so a
signature pushed before its image counts the moment the image arrives, and deleting
either side needs no bookkeeping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from regd import signing
from regd.metadata.db import Database, fetchall
from regd.signing import Kind


@dataclass(frozen=True)
class SignatureRow:
    id: int
    digest: str
    subject: str  # the image it signs
    kind: Kind
    media_type: str
    size: int
    pushed_at: float


def _in(values: Sequence[object]) -> str:
    return f"({','.join('?' * len(values))})"


_SEP = "\x1f"

# A manifest is a signature: a referrer of a signature type (notation also needs its
# envelope layer), or (cosign's tag scheme) a manifest with a simple-signing layer.
IS_SIGNATURE = (
    "((m.subject IS NOT NULL AND (m.artifact_type IN "
    f"('{signing.COSIGN_ARTIFACT}', '{signing.SIGSTORE_BUNDLE}') "
    f"OR (m.artifact_type = '{signing.NOTARY_SIGNATURE}' AND EXISTS (SELECT 1 FROM manifest_blobs sb "
    f"WHERE sb.manifest_id = m.id AND sb.media_type IN ('{signing.JWS}', '{signing.COSE}'))))) "
    f"OR EXISTS (SELECT 1 FROM manifest_blobs sb WHERE sb.manifest_id = m.id "
    f"AND sb.media_type = '{signing.SIMPLESIGNING}'))"
)

_REFERRERS = (
    "SELECT m.id, m.digest, m.subject, m.artifact_type, m.media_type, m.size, m.pushed_at, "
    f"(SELECT group_concat(b.media_type, char(31)) FROM manifest_blobs b WHERE b.manifest_id = m.id) "
    "FROM manifests m WHERE m.repository_id = ? AND m.subject IN {digests} "
    f"AND m.artifact_type IN ('{signing.COSIGN_ARTIFACT}', '{signing.SIGSTORE_BUNDLE}', "
    f"'{signing.NOTARY_SIGNATURE}')"
)
_TAGGED = (
    "SELECT m.id, m.digest, t.name, m.media_type, m.size, m.pushed_at FROM tags t "
    "JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = ? AND t.name IN {tags} "
    f"AND EXISTS (SELECT 1 FROM manifest_blobs b WHERE b.manifest_id = m.id "
    f"AND b.media_type = '{signing.SIMPLESIGNING}')"
)


async def of_subjects(db: Database, repository_id: int, digests: Sequence[str]) -> list[SignatureRow]:
    """The signatures in the repository of each of ``digests``, oldest push first."""
    if not digests:
        return []
    found: list[SignatureRow] = []
    for r in await db.fetchall(_REFERRERS.format(digests=_in(digests)), [repository_id, *digests]):
        kind = signing.referrer_kind(r[3], (r[7] or "").split(_SEP))
        if kind is not None:
            found.append(SignatureRow(int(r[0]), r[1], r[2], kind, r[4], int(r[5]), float(r[6])))
    tags = [t for t in (signing.signature_tag(d) for d in digests) if t]
    if tags:
        for r in await db.fetchall(_TAGGED.format(tags=_in(tags)), [repository_id, *tags]):
            subject = signing.tag_subject(r[2])
            assert subject is not None
            found.append(SignatureRow(int(r[0]), r[1], subject, Kind.COSIGN, r[3], int(r[4]), float(r[5])))
    found.sort(key=lambda s: (s.pushed_at, s.id))
    return found


async def is_signature(db: Database, manifest_id: int) -> bool:
    row = await db.fetchone(f"SELECT 1 FROM manifests m WHERE m.id = ? AND {IS_SIGNATURE}", (manifest_id,))
    return row is not None


async def parents(db: Database, repository_id: int, digest: str) -> list[str]:
    """Digests of the indexes in the repository that list ``digest``."""
    rows = await db.fetchall(
        "SELECT p.digest FROM manifest_children c JOIN manifests p ON p.id = c.parent_id "
        "WHERE p.repository_id = ? AND c.child_digest = ?",
        (repository_id, digest),
    )
    return [r[0] for r in rows]


async def tag_scheme_ids(
    conn: aiosqlite.Connection, repository_id: int, digest: str
) -> list[tuple[int, str]]:
    """(id, digest) of the manifests tagged ``sha256-<hex>.sig`` for ``digest``: cosign's
    tag-scheme signatures, which go when their image goes."""
    tag = signing.signature_tag(digest)
    if tag is None:
        return []
    rows = await fetchall(
        conn,
        "SELECT m.id, m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id "
        "WHERE t.repository_id = ? AND t.name = ?",
        (repository_id, tag),
    )
    return [(int(r[0]), r[1]) for r in rows]


async def untag_signatures_of(conn: aiosqlite.Connection, manifest_ids: Sequence[int]) -> None:
    """Drop the ``sha256-<hex>.sig`` tags of the manifests ``manifest_ids`` (about to be
    deleted), so that their tag-scheme signatures become collectable."""
    rows = await fetchall(
        conn,
        f"SELECT repository_id, digest FROM manifests WHERE id IN {_in(manifest_ids)}",
        manifest_ids,
    )
    pairs = [(int(r[0]), tag) for r in rows if (tag := signing.signature_tag(r[1])) is not None]
    await conn.executemany("DELETE FROM tags WHERE repository_id = ? AND name = ?", pairs)
