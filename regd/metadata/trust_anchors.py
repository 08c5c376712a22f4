"""Queries on ``trust_anchors`` (a project's keys and certificates for content trust)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database
from regd.signing import Anchor, AnchorKind


@dataclass(frozen=True)
class AnchorRow:
    id: int
    project_id: int
    anchor: Anchor
    created_at: float


async def of_project(db: Database, project_id: int) -> list[AnchorRow]:
    rows = await db.fetchall(
        "SELECT id, project_id, name, kind, pem, created_at FROM trust_anchors WHERE project_id = ? "
        "ORDER BY name",
        (project_id,),
    )
    return [AnchorRow(int(r[0]), int(r[1]), Anchor(r[2], AnchorKind(r[3]), r[4]), float(r[5])) for r in rows]


async def insert(conn: aiosqlite.Connection, project_id: int, anchor: Anchor) -> int | None:
    """The new anchor's id, or None when the project has one of that name."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO trust_anchors (project_id, name, kind, pem, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (project_id, anchor.name, anchor.kind.value, anchor.pem, time.time()),
    )
    return cur.lastrowid if cur.rowcount > 0 else None


async def delete(conn: aiosqlite.Connection, project_id: int, name: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM trust_anchors WHERE project_id = ? AND name = ?", (project_id, name)
    )
    return cur.rowcount > 0
