"""Queries on ``robots``: project robot accounts named ``robot$<project>+<name>``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database, Row

_SELECT = "SELECT r.*, p.name AS project_name FROM robots r JOIN projects p ON p.id = r.project_id"


@dataclass(frozen=True)
class Robot:
    id: int
    name: str
    project_id: int
    project_name: str
    description: str
    secret_hash: str
    actions: frozenset[str]
    disabled: bool
    duration: int  # days, -1 for never
    expires_at: int  # unix seconds, -1 for never
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> Robot:
        return cls(
            int(row["id"]),
            row["name"],
            int(row["project_id"]),
            row["project_name"],
            row["description"],
            row["secret_hash"],
            frozenset(a for a in row["actions"].split(",") if a),
            bool(row["disabled"]),
            int(row["duration"]),
            int(row["expires_at"]),
            float(row["created_at"]),
            float(row["updated_at"]),
        )

    def expired(self, now: float) -> bool:
        return self.expires_at != -1 and now >= self.expires_at


async def by_name(db: Database, name: str) -> Robot | None:
    row = await db.fetchone(_SELECT + " WHERE r.name = ?", (name,))
    return None if row is None else Robot.of(row)


async def by_id(db: Database, robot_id: int) -> Robot | None:
    row = await db.fetchone(_SELECT + " WHERE r.id = ?", (robot_id,))
    return None if row is None else Robot.of(row)


async def page(
    db: Database, project_ids: list[int] | None, offset: int, limit: int
) -> tuple[int, list[Robot]]:
    """Robots of ``project_ids`` (None: of every project), by id: (total, this page)."""
    where, params = "", []
    if project_ids is not None:
        where = f" WHERE r.project_id IN ({','.join('?' * len(project_ids))})" if project_ids else " WHERE 0"
        params = list(project_ids)
    total = await db.fetchval("SELECT count(*) FROM robots r" + where, params)
    rows = await db.fetchall(_SELECT + where + " ORDER BY r.id LIMIT ? OFFSET ?", [*params, limit, offset])
    return int(total), [Robot.of(r) for r in rows]


async def insert(
    conn: aiosqlite.Connection,
    name: str,
    project_id: int,
    description: str,
    secret_hash: str,
    actions: frozenset[str],
    duration: int,
) -> tuple[int, int]:
    """A new robot; returns (id, expires_at)."""
    now = time.time()
    expires_at = -1 if duration == -1 else int(now) + duration * 86400
    cur = await conn.execute(
        "INSERT INTO robots (name, project_id, description, secret_hash, actions, duration, expires_at, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            name,
            project_id,
            description,
            secret_hash,
            ",".join(sorted(actions)),
            duration,
            expires_at,
            now,
            now,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid, expires_at


async def set_secret(conn: aiosqlite.Connection, robot_id: int, secret_hash: str) -> None:
    await conn.execute(
        "UPDATE robots SET secret_hash = ?, updated_at = ? WHERE id = ?", (secret_hash, time.time(), robot_id)
    )


async def update(
    conn: aiosqlite.Connection, robot_id: int, description: str, disabled: bool, actions: frozenset[str]
) -> None:
    await conn.execute(
        "UPDATE robots SET description = ?, disabled = ?, actions = ?, updated_at = ? WHERE id = ?",
        (description, int(disabled), ",".join(sorted(actions)), time.time(), robot_id),
    )


async def delete(conn: aiosqlite.Connection, robot_id: int) -> bool:
    cur = await conn.execute("DELETE FROM robots WHERE id = ?", (robot_id,))
    return cur.rowcount > 0
