"""Queries on ``users``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database, Row


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    realname: str
    comment: str
    password_hash: str
    sysadmin: bool
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> User:
        return cls(
            int(row["id"]),
            row["username"],
            row["email"],
            row["realname"],
            row["comment"],
            row["password_hash"],
            bool(row["sysadmin"]),
            float(row["created_at"]),
            float(row["updated_at"]),
        )


async def count(db: Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM users"))


async def by_name(db: Database, username: str) -> User | None:
    row = await db.fetchone("SELECT * FROM users WHERE username = ?", (username,))
    return None if row is None else User.of(row)


async def by_id(db: Database, user_id: int) -> User | None:
    row = await db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
    return None if row is None else User.of(row)


async def page(db: Database, username: str, offset: int, limit: int) -> tuple[int, list[User]]:
    """Users whose name contains ``username``, by id: (total, this page)."""
    pattern = f"%{escape_like(username)}%"
    total = await db.fetchval("SELECT count(*) FROM users WHERE username LIKE ? ESCAPE '\\'", (pattern,))
    rows = await db.fetchall(
        "SELECT * FROM users WHERE username LIKE ? ESCAPE '\\' ORDER BY id LIMIT ? OFFSET ?",
        (pattern, limit, offset),
    )
    return int(total), [User.of(r) for r in rows]


async def insert(
    conn: aiosqlite.Connection,
    username: str,
    password_hash: str,
    sysadmin: bool = False,
    email: str = "",
    realname: str = "",
    comment: str = "",
) -> int:
    now = time.time()
    cur = await conn.execute(
        "INSERT INTO users (username, email, realname, comment, password_hash, sysadmin, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (username, email, realname, comment, password_hash, int(sysadmin), now, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def set_password(conn: aiosqlite.Connection, user_id: int, password_hash: str) -> None:
    await conn.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
        (password_hash, time.time(), user_id),
    )


async def set_sysadmin(conn: aiosqlite.Connection, user_id: int, sysadmin: bool) -> None:
    await conn.execute(
        "UPDATE users SET sysadmin = ?, updated_at = ? WHERE id = ?", (int(sysadmin), time.time(), user_id)
    )


async def set_profile(
    conn: aiosqlite.Connection, user_id: int, email: str, realname: str, comment: str
) -> None:
    await conn.execute(
        "UPDATE users SET email = ?, realname = ?, comment = ?, updated_at = ? WHERE id = ?",
        (email, realname, comment, time.time(), user_id),
    )


async def delete(conn: aiosqlite.Connection, user_id: int) -> bool:
    cur = await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    return cur.rowcount > 0


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def count_in(conn: aiosqlite.Connection) -> int:
    """``count`` inside a write transaction."""
    async with conn.execute("SELECT count(*) FROM users") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def exists(conn: aiosqlite.Connection, username: str) -> bool:
    async with conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)) as cur:
        return await cur.fetchone() is not None
