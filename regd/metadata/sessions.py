"""Queries on ``web_sessions``: browser sessions, keyed by the SHA-256 of their cookie."""

from __future__ import annotations

from dataclasses import dataclass

from regd.metadata.db import Database


@dataclass(frozen=True)
class SessionRow:
    user_id: int
    username: str
    csrf: str
    created_at: float
    last_seen: float


async def insert(db: Database, key: str, user_id: int, csrf: str, now: float, expired_before: float) -> None:
    """A new session; sessions that ended (``last_seen`` before ``expired_before``) go."""
    async with db.transaction(bump=False) as conn:
        await conn.execute("DELETE FROM web_sessions WHERE last_seen < ?", (expired_before,))
        await conn.execute(
            "INSERT INTO web_sessions (id, user_id, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
            (key, user_id, csrf, now, now),
        )


async def get(db: Database, key: str) -> SessionRow | None:
    row = await db.fetchone(
        "SELECT s.user_id, u.username, s.csrf, s.created_at, s.last_seen FROM web_sessions s "
        "JOIN users u ON u.id = s.user_id WHERE s.id = ?",
        (key,),
    )
    if row is None:
        return None
    return SessionRow(int(row[0]), row[1], row[2], float(row[3]), float(row[4]))


async def touch(db: Database, key: str, now: float) -> None:
    async with db.transaction(bump=False) as conn:
        await conn.execute("UPDATE web_sessions SET last_seen = ? WHERE id = ?", (now, key))


async def delete(db: Database, key: str) -> None:
    async with db.transaction(bump=False) as conn:
        await conn.execute("DELETE FROM web_sessions WHERE id = ?", (key,))


async def delete_of_user(db: Database, user_id: int) -> None:
    async with db.transaction(bump=False) as conn:
        await conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
