"""Queries on ``uploads``: the persisted state of each upload session.

State changes are conditional UPDATEs (``WHERE state IN (...)``): the row is the lock,
so two requests for one session, in one process or two, cannot both win.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database, Row
from regd.uploads.state import UploadEvent, UploadState, next_state, sources


@dataclass(frozen=True)
class UploadRow:
    id: str
    repository: str
    state: UploadState
    size: int
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> UploadRow:
        return cls(
            row["id"],
            row["repository"],
            UploadState(row["state"]),
            int(row["size"]),
            float(row["created_at"]),
            float(row["updated_at"]),
        )


async def create(conn: aiosqlite.Connection, upload_id: str, repository: str, account: str = "") -> None:
    now = time.time()
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
) -> UploadState | None:
    """Apply ``event`` if the session is in a state that allows it (and, with
    ``expect_size``, still has that size); returns the new state, or None if not."""
    allowed = sources(event)
    target = next_state(allowed[0], event)
    sql = "UPDATE uploads SET state = ?, updated_at = ?"
    params: list[object] = [target.value, time.time()]
    if size is not None:
        sql += ", size = ?"
        params.append(size)
    sql += f" WHERE id = ? AND state IN ({','.join('?' * len(allowed))})"
    params += [upload_id, *(s.value for s in allowed)]
    if expect_size is not None:
        sql += " AND size = ?"
        params.append(expect_size)
    cur = await conn.execute(sql, params)
    return target if cur.rowcount == 1 else None


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
