"""Queries on ``uploads``: the persisted state of each upload session.

State changes are conditional UPDATEs (``WHERE state IN (...)``): the row is the lock,
so two requests for one session, in one process or two, cannot both win.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from regd.metadata.db import Database, Row
from regd.uploads.state import UploadEvent, UploadState, next_state, sources

# The states in which one process holds a session (and its row names that process).
HELD = frozenset({UploadState.RECEIVING, UploadState.COMMITTING})


@dataclass(frozen=True)
class UploadRow:
    id: str
    repository: str
    state: UploadState
    size: int
    created_at: float
    updated_at: float
    writer_pid: int | None = None  # the process holding it in RECEIVING or COMMITTING
    checksums: str | None = None  # "<size>:<sha256>:<xxh3>" of its bytes, when known

    @classmethod
    def of(cls, row: Row) -> UploadRow:
        return cls(
            row["id"],
            row["repository"],
            UploadState(row["state"]),
            int(row["size"]),
            float(row["created_at"]),
            float(row["updated_at"]),
            None if row["writer_pid"] is None else int(row["writer_pid"]),
            row["checksums"],
        )


async def create(
    conn: aiosqlite.Connection, upload_id: str, repository: str, account: str = "", now: float | None = None
) -> None:
    now = time.time() if now is None else now
    await conn.execute(
        "INSERT INTO uploads (id, repository, account, state, size, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 0, ?, ?)",
        (upload_id, repository, account, UploadState.ACTIVE.value, now, now),
    )


async def open_count(conn: aiosqlite.Connection, column: str, value: str) -> int:
    """Sessions open for one ``repository`` or ``account``, inside the write transaction
    that would open one more (so two processes cannot both take the last place)."""
    assert column in ("repository", "account")
    async with conn.execute(f"SELECT count(*) FROM uploads WHERE {column} = ?", (value,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get(db: Database, upload_id: str) -> UploadRow | None:
    row = await db.fetchone("SELECT * FROM uploads WHERE id = ?", (upload_id,))
    return None if row is None else UploadRow.of(row)


async def transition(
    conn: aiosqlite.Connection,
    upload_id: str,
    event: UploadEvent,
    size: int | None = None,
    expect_size: int | None = None,
    expect_writer: int | None = None,
    checksums: str | None = None,
) -> UploadState | None:
    """Apply ``event`` if the session is in a state that allows it (and, with
    ``expect_size``, still has that size; with ``expect_writer``, is still held by that
    process); returns the new state, or None if not. A new ``size`` replaces the
    session's ``checksums`` (with those given, or none)."""
    allowed = sources(event)
    target = next_state(allowed[0], event)
    # A session being written or committed records which process holds it.
    writer = os.getpid() if target in HELD else None
    sql = "UPDATE uploads SET state = ?, updated_at = ?, writer_pid = ?"
    params: list[object] = [target.value, time.time(), writer]
    if size is not None:
        sql += ", size = ?, checksums = ?"
        params += [size, checksums]
    sql += f" WHERE id = ? AND state IN ({','.join('?' * len(allowed))})"
    params += [upload_id, *(s.value for s in allowed)]
    if expect_size is not None:
        sql += " AND size = ?"
        params.append(expect_size)
    if expect_writer is not None:
        sql += " AND writer_pid = ?"
        params.append(expect_writer)
    cur = await conn.execute(sql, params)
    return target if cur.rowcount == 1 else None


def release_writer_sync(database: Path, pid: int) -> int:
    """The sessions process ``pid`` held (RECEIVING or COMMITTING) become ACTIVE again,
    as ``RECOVER`` does at start: what the supervisor does when a worker dies. Blocking
    (the supervisor runs no event loop); returns how many were released."""
    allowed = sources(UploadEvent.RECOVER)
    target = next_state(allowed[0], UploadEvent.RECOVER)
    conn = sqlite3.connect(database, timeout=30.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "UPDATE uploads SET state = ?, updated_at = ?, writer_pid = NULL "
            f"WHERE writer_pid = ? AND state IN ({','.join('?' * len(allowed))})",
            [target.value, time.time(), pid, *(s.value for s in allowed)],
        )
        conn.execute("COMMIT")
        return cur.rowcount
    finally:
        conn.close()


async def delete(conn: aiosqlite.Connection, upload_id: str) -> None:
    await conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))


async def in_states(db: Database, states: list[UploadState]) -> list[UploadRow]:
    rows = await db.fetchall(
        f"SELECT * FROM uploads WHERE state IN ({','.join('?' * len(states))})",
        [s.value for s in states],
    )
    return [UploadRow.of(r) for r in rows]


async def older_than(db: Database, cutoff: float) -> list[UploadRow]:
    rows = await db.fetchall("SELECT * FROM uploads WHERE updated_at < ?", (cutoff,))
    return [UploadRow.of(r) for r in rows]


async def ids(db: Database) -> set[str]:
    return {row[0] for row in await db.fetchall("SELECT id FROM uploads")}
