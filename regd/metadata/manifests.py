"""Queries on ``manifests``, ``manifest_blobs``, ``manifest_children`` and ``tags``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from regd.manifests import Descriptor, Manifest, referrer_artifact_type
from regd.metadata.db import Database, Row, fetchall, fetchone


@dataclass(frozen=True)
class ManifestRow:
    id: int
    repository_id: int
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    subject: str | None
    annotations: dict[str, str] | None
    pushed_at: float

    @classmethod
    def of(cls, row: Row) -> ManifestRow:
        annotations = orjson.loads(row["annotations"]) if row["annotations"] else None
        return cls(
            int(row["id"]),
            int(row["repository_id"]),
            row["digest"],
            row["media_type"],
            int(row["size"]),
            row["artifact_type"],
            row["subject"],
            annotations,
            float(row["pushed_at"]),
        )


_SELECT = "SELECT m.* FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ?"


async def by_digest(db: Database, repository: str, digest: str) -> ManifestRow | None:
    row = await db.fetchone(_SELECT + " AND m.digest = ?", (repository, digest))
    return None if row is None else ManifestRow.of(row)


async def by_tag(db: Database, repository: str, tag: str) -> ManifestRow | None:
    row = await db.fetchone(
        "SELECT m.* FROM tags t JOIN manifests m ON m.id = t.manifest_id "
        "JOIN repositories r ON r.id = t.repository_id WHERE r.name = ? AND t.name = ?",
        (repository, tag),
    )
    return None if row is None else ManifestRow.of(row)


Fetch = Callable[[str, list[Any]], Awaitable[list[Row]]]
_BLOBS_OF = "SELECT digest FROM repository_blobs WHERE repository_id = {} AND digest IN"
_CHILDREN_OF = "SELECT digest FROM manifests WHERE repository_id = {} AND digest IN"


async def _absent(fetch: Fetch, sql: str, repository: int | str, digests: set[str]) -> list[str]:
    """Which of ``digests`` the query (``... repository_id = ? AND digest IN (...)``) misses."""
    if not digests:
        return []
    wanted = sorted(digests)
    rows = await fetch(f"{sql} ({','.join('?' * len(wanted))})", [repository, *wanted])
    present = {r[0] for r in rows}
    return [d for d in wanted if d not in present]


async def _missing(fetch: Fetch, repository: int | str, manifest: Manifest, by_id: str) -> list[str]:
    blobs = {str(d.digest) for d in manifest.blobs if not d.is_foreign}
    children = {str(d.digest) for d in manifest.children}
    return [
        *await _absent(fetch, _BLOBS_OF.format(by_id), repository, blobs),
        *await _absent(fetch, _CHILDREN_OF.format(by_id), repository, children),
    ]


async def missing_references(conn: aiosqlite.Connection, repository_id: int, manifest: Manifest) -> list[str]:
    """Digests ``manifest`` needs that the repository does not hold, checked inside the
    write transaction that inserts it (so a concurrent sweep cannot slip in between)."""

    async def fetch(sql: str, params: list[Any]) -> list[Row]:
        return await fetchall(conn, sql, params)

    return await _missing(fetch, repository_id, manifest, "?")


async def missing_references_now(db: Database, repository: str, manifest: Manifest) -> list[str]:
    """The same, read outside any transaction: a first check before the manifest's bytes
    are stored (one that fails stores nothing); the one inside the transaction decides."""
    return await _missing(db.fetchall, repository, manifest, "(SELECT id FROM repositories WHERE name = ?)")


async def insert(
    conn: aiosqlite.Connection,
    repository_id: int,
    manifest: Manifest,
    extra_attrs: dict[str, Any] | None = None,
) -> int:
    """Record ``manifest`` in the repository (idempotent); returns its id. ``extra_attrs``:
    what the management API shows of an image's config (None: not known yet)."""
    digest = str(manifest.digest)
    row = await fetchone(
        conn, "SELECT id FROM manifests WHERE repository_id = ? AND digest = ?", (repository_id, digest)
    )
    if row is not None:
        return int(row[0])
    cur = await conn.execute(
        "INSERT INTO manifests (repository_id, digest, media_type, size, artifact_type, subject, "
        "annotations, pushed_at, extra_attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            repository_id,
            digest,
            manifest.media_type,
            manifest.size,
            referrer_artifact_type(manifest),
            str(manifest.subject.digest) if manifest.subject else None,
            orjson.dumps(manifest.annotations).decode() if manifest.annotations else None,
            time.time(),
            None if extra_attrs is None else orjson.dumps(extra_attrs).decode(),
        ),
    )
    manifest_id = cur.lastrowid
    assert manifest_id is not None
    await conn.executemany(
        "INSERT OR IGNORE INTO manifest_blobs (manifest_id, digest, media_type, size, is_foreign) "
        "VALUES (?, ?, ?, ?, ?)",
        [(manifest_id, str(d.digest), d.media_type, d.size, int(d.is_foreign)) for d in manifest.blobs],
    )
    await conn.executemany(
        "INSERT OR IGNORE INTO manifest_children (parent_id, child_digest, descriptor) VALUES (?, ?, ?)",
        [(manifest_id, str(d.digest), child_descriptor(d)) for d in manifest.children],
    )
    return manifest_id


def child_descriptor(child: Descriptor) -> str:
    """What the management API lists of an index entry (Harbor's ``references``), as JSON."""
    return orjson.dumps(
        {"platform": child.platform, "annotations": child.annotations, "urls": list(child.urls) or None}
    ).decode()


async def set_tag(conn: aiosqlite.Connection, repository_id: int, tag: str, manifest_id: int) -> None:
    await conn.execute(
        "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (repository_id, name) DO UPDATE SET manifest_id = excluded.manifest_id, "
        "updated_at = excluded.updated_at",
        (repository_id, tag, manifest_id, time.time()),
    )


async def tags(db: Database, repository: str, last: str, n: int) -> list[str]:
    rows = await db.fetchall(
        "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id "
        "WHERE r.name = ? AND t.name > ? ORDER BY t.name LIMIT ?",
        (repository, last, n),
    )
    return [r[0] for r in rows]


async def delete_tag(conn: aiosqlite.Connection, repository_id: int, tag: str) -> bool:
    cur = await conn.execute("DELETE FROM tags WHERE repository_id = ? AND name = ?", (repository_id, tag))
    return cur.rowcount > 0


async def parents(conn: aiosqlite.Connection, repository_id: int, digest: str) -> list[str]:
    """Digests of the indexes in the repository that list ``digest`` as a child."""
    rows = await fetchall(
        conn,
        "SELECT m.digest FROM manifest_children c JOIN manifests m ON m.id = c.parent_id "
        "WHERE m.repository_id = ? AND c.child_digest = ?",
        (repository_id, digest),
    )
    return [r[0] for r in rows]


async def child_ids(conn: aiosqlite.Connection, manifest_id: int) -> list[tuple[int, str]]:
    """(id, digest) of the manifests an index lists, in the index's repository."""
    rows = await fetchall(
        conn,
        "SELECT c.id, c.digest FROM manifests p JOIN manifest_children mc ON mc.parent_id = p.id "
        "JOIN manifests c ON c.repository_id = p.repository_id AND c.digest = mc.child_digest "
        "WHERE p.id = ?",
        (manifest_id,),
    )
    return [(int(r[0]), r[1]) for r in rows]


async def is_tagged(conn: aiosqlite.Connection, manifest_id: int) -> bool:
    row = await fetchone(conn, "SELECT 1 FROM tags WHERE manifest_id = ? LIMIT 1", (manifest_id,))
    return row is not None


async def referrer_ids(conn: aiosqlite.Connection, repository_id: int, digest: str) -> list[tuple[int, str]]:
    rows = await fetchall(
        conn,
        "SELECT id, digest FROM manifests WHERE repository_id = ? AND subject = ?",
        (repository_id, digest),
    )
    return [(int(r[0]), r[1]) for r in rows]


async def delete(conn: aiosqlite.Connection, manifest_id: int) -> None:
    """Remove one manifest row; its tags and reference edges go by ON DELETE CASCADE."""
    await conn.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,))


async def referrers(
    db: Database, repository: str, subject: str, artifact_type: str | None
) -> list[ManifestRow]:
    sql = _SELECT + " AND m.subject = ?"
    params: list[object] = [repository, subject]
    if artifact_type is not None:
        sql += " AND m.artifact_type = ?"
        params.append(artifact_type)
    rows = await db.fetchall(sql + " ORDER BY m.digest", params)
    return [ManifestRow.of(r) for r in rows]
