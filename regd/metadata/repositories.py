"""Queries on ``repositories`` and ``repository_blobs``."""

from __future__ import annotations

import time

import aiosqlite

from regd.metadata.db import Database, Row, fetchone
from regd.names import project_of


async def ensure(conn: aiosqlite.Connection, name: str) -> int:
    """The id of repository ``name``, created if it does not exist (in a transaction)."""
    row = await fetchone(conn, "SELECT id FROM repositories WHERE name = ?", (name,))
    if row is not None:
        return int(row[0])
    now = time.time()
    cur = await conn.execute(
        "INSERT INTO repositories (name, project, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (name, project_of(name), now, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def get_id(db: Database, name: str) -> int | None:
    value = await db.fetchval("SELECT id FROM repositories WHERE name = ?", (name,))
    return None if value is None else int(value)


async def get(db: Database, name: str) -> Row | None:
    return await db.fetchone("SELECT * FROM repositories WHERE name = ?", (name,))


async def touch(conn: aiosqlite.Connection, repository_id: int) -> None:
    await conn.execute("UPDATE repositories SET updated_at = ? WHERE id = ?", (time.time(), repository_id))


async def catalog(db: Database, last: str, n: int) -> list[str]:
    """Repositories that hold at least one manifest, in lexical order, after ``last``."""
    rows = await db.fetchall(
        "SELECT name FROM repositories r WHERE name > ? "
        "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) "
        "ORDER BY name LIMIT ?",
        (last, n),
    )
    return [row[0] for row in rows]


async def link_blob(conn: aiosqlite.Connection, repository_id: int, digest: str) -> None:
    await conn.execute(
        "INSERT OR IGNORE INTO repository_blobs (repository_id, digest) VALUES (?, ?)",
        (repository_id, digest),
    )


async def linked_blob(db: Database, name: str, digest: str) -> tuple[int, float] | None:
    """(size, last_seen) of a blob linked to repository ``name``, or None."""
    row = await db.fetchone(
        "SELECT b.size, b.last_seen FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
        "JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ? AND b.digest = ? "
        "AND b.quarantined_at IS NULL",  # a quarantined blob is unknown until re-pushed
        (name, digest),
    )
    return None if row is None else (int(row[0]), float(row[1]))


async def unlink_blob(conn: aiosqlite.Connection, name: str, digest: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM repository_blobs WHERE digest = ? "
        "AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        (digest, name),
    )
    return cur.rowcount > 0


async def delete(conn: aiosqlite.Connection, name: str) -> bool:
    """Remove a repository with its manifests, tags and blob links (ON DELETE CASCADE)."""
    cur = await conn.execute("DELETE FROM repositories WHERE name = ?", (name,))
    return cur.rowcount > 0
