"""Queries for the scrub (``regd.scrub``): the blobs to check, quarantine, the history."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database, fetchone


@dataclass(frozen=True)
class BlobToCheck:
    digest: str
    size: int
    xxh3: str | None


@dataclass(frozen=True)
class Quarantined:
    digest: str
    reason: str
    since: float


@dataclass(frozen=True)
class Affected:
    """An image (manifest) that references a quarantined blob, or is one."""

    repository: str
    digest: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str
    status: str
    checked: int
    bytes_read: int
    damaged: int
    missing: int
    unknown_files: int
    checksums_recorded: int
    started_at: float
    finished_at: float | None


async def blobs_after(db: Database, after: str, limit: int) -> list[BlobToCheck]:
    """The next ``limit`` blobs not quarantined, in digest order after ``after``."""
    rows = await db.fetchall(
        "SELECT digest, size, xxh3 FROM blobs WHERE digest > ? AND quarantined_at IS NULL "
        "ORDER BY digest LIMIT ?",
        (after, limit),
    )
    return [BlobToCheck(str(r[0]), int(r[1]), r[2]) for r in rows]


async def live_row(conn: aiosqlite.Connection, digest: str) -> bool:
    """Inside a write transaction: the blob still has a row and is not quarantined."""
    row = await fetchone(
        conn, "SELECT 1 FROM blobs WHERE digest = ? AND quarantined_at IS NULL", (digest,)
    )
    return row is not None


async def quarantine(conn: aiosqlite.Connection, digest: str, reason: str) -> None:
    await conn.execute(
        "UPDATE blobs SET quarantined_at = ?, quarantine_reason = ? WHERE digest = ?",
        (time.time(), reason, digest),
    )


async def record_xxh3(conn: aiosqlite.Connection, digest: str, xxh3: str) -> None:
    await conn.execute("UPDATE blobs SET xxh3 = ? WHERE digest = ?", (xxh3, digest))


async def quarantined(db: Database) -> list[Quarantined]:
    rows = await db.fetchall(
        "SELECT digest, quarantine_reason, quarantined_at FROM blobs "
        "WHERE quarantined_at IS NOT NULL ORDER BY quarantined_at, digest"
    )
    return [Quarantined(str(r[0]), str(r[1] or ""), float(r[2])) for r in rows]


async def quarantined_count(db: Database) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM blobs WHERE quarantined_at IS NOT NULL") or 0)


async def affected(db: Database, digest: str) -> list[Affected]:
    """The manifests that reference blob ``digest`` (as config, layer or child) or are it."""
    rows = await db.fetchall(
        "SELECT r.name, m.digest, GROUP_CONCAT(t.name, ',') FROM manifests m "
        "JOIN repositories r ON r.id = m.repository_id LEFT JOIN tags t ON t.manifest_id = m.id "
        "WHERE m.digest = ? OR m.id IN (SELECT manifest_id FROM manifest_blobs WHERE digest = ?) "
        "OR m.id IN (SELECT parent_id FROM manifest_children WHERE child_digest = ?) "
        "GROUP BY m.id ORDER BY r.name, m.digest",
        (digest, digest, digest),
    )
    return [Affected(str(r[0]), str(r[1]), tuple(sorted(str(r[2]).split(","))) if r[2] else ()) for r in rows]


async def known_digests(db: Database) -> set[str]:
    return {str(r[0]) for r in await db.fetchall("SELECT digest FROM blobs")}


async def begin_run(conn: aiosqlite.Connection, kind: str) -> int:
    cur = await conn.execute(
        "INSERT INTO scrub_runs (kind, status, started_at) VALUES (?, 'Running', ?)", (kind, time.time())
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


async def end_run(
    conn: aiosqlite.Connection, run_id: int, status: str, counts: dict[str, int]
) -> None:
    columns = ("checked", "bytes_read", "damaged", "missing", "unknown_files", "checksums_recorded")
    await conn.execute(
        f"UPDATE scrub_runs SET status = ?, finished_at = ?, {', '.join(f'{c} = ?' for c in columns)} "
        "WHERE id = ?",
        (status, time.time(), *(counts[c] for c in columns), run_id),
    )


async def last_run(db: Database) -> RunRow | None:
    row = await db.fetchone("SELECT * FROM scrub_runs ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    return RunRow(
        int(row["id"]), str(row["kind"]), str(row["status"]), int(row["checked"]), int(row["bytes_read"]),
        int(row["damaged"]), int(row["missing"]), int(row["unknown_files"]), int(row["checksums_recorded"]),
        float(row["started_at"]), None if row["finished_at"] is None else float(row["finished_at"]),
    )
