"""Queries on ``blobs``. ``last_seen`` is when a blob was last uploaded, mounted or
confirmed by a ``HEAD``: the collector keeps an unreferenced blob at least
``[gc] grace_period`` past it."""

from __future__ import annotations

import time

import aiosqlite

from regd.metadata.db import Database


async def upsert(conn: aiosqlite.Connection, digest: str, size: int, xxh3: str | None = None) -> None:
    """Record a blob whose file was just placed; a quarantined one is repaired by it
    (the push brought its bytes back, checked against its digest)."""
    now = time.time()
    await conn.execute(
        "INSERT INTO blobs (digest, size, created_at, last_seen, xxh3) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (digest) DO UPDATE SET last_seen = excluded.last_seen, "
        "xxh3 = COALESCE(excluded.xxh3, blobs.xxh3), quarantined_at = NULL, quarantine_reason = NULL",
        (digest, size, now, now, xxh3),
    )


async def size(db: Database, digest: str) -> int | None:
    value = await db.fetchval("SELECT size FROM blobs WHERE digest = ?", (digest,))
    return None if value is None else int(value)


async def last_seen(db: Database, digest: str) -> float | None:
    value = await db.fetchval("SELECT last_seen FROM blobs WHERE digest = ?", (digest,))
    return None if value is None else float(value)


async def mark_seen(conn: aiosqlite.Connection, digest: str) -> None:
    await conn.execute("UPDATE blobs SET last_seen = ? WHERE digest = ?", (time.time(), digest))


async def exists(conn: aiosqlite.Connection, digest: str) -> bool:
    """Whether a blob row exists, inside a write transaction."""
    async with conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)) as cur:
        return await cur.fetchone() is not None
