"""Queries on ``gc_runs`` (the history of collections) and ``gc_schedule`` (one row)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from regd.metadata.db import Database, Row


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str  # MANUAL or SCHEDULE (Harbor's job_kind)
    schedule_type: str  # Manual, Hourly, Daily, Weekly, Custom
    parameters: dict[str, Any]
    status: str  # Pending, Running, Success, Error, Stopped
    stop_requested: bool
    manifests_purged: int
    blobs_purged: int
    bytes_freed: int
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> RunRow:
        return cls(
            int(row["id"]),
            row["kind"],
            row["schedule_type"],
            orjson.loads(row["parameters"]),
            row["status"],
            bool(row["stop_requested"]),
            int(row["manifests_purged"]),
            int(row["blobs_purged"]),
            int(row["bytes_freed"]),
            float(row["created_at"]),
            float(row["updated_at"]),
        )


@dataclass(frozen=True)
class ScheduleRow:
    type: str  # Hourly, Daily, Weekly, Custom (None is no row)
    cron: str
    parameters: dict[str, Any]
    created_at: float
    updated_at: float


_COLUMNS = (
    "id, kind, schedule_type, parameters, status, stop_requested, manifests_purged, "
    "blobs_purged, bytes_freed, created_at, updated_at"
)


async def create(db: Database, kind: str, schedule_type: str, parameters: dict[str, Any]) -> int:
    now = time.time()
    async with db.transaction(bump=False) as conn:
        cur = await conn.execute(
            "INSERT INTO gc_runs (kind, schedule_type, parameters, status, created_at, updated_at) "
            "VALUES (?, ?, ?, 'Pending', ?, ?)",
            (kind, schedule_type, orjson.dumps(parameters).decode(), now, now),
        )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def update(
    db: Database,
    run_id: int,
    status: str,
    log: str = "",
    manifests_purged: int = 0,
    blobs_purged: int = 0,
    bytes_freed: int = 0,
) -> None:
    """Record progress: the status, the counters so far, and ``log`` appended."""
    async with db.transaction(bump=False) as conn:
        await conn.execute(
            "UPDATE gc_runs SET status = ?, log = log || ?, manifests_purged = ?, blobs_purged = ?, "
            "bytes_freed = ?, updated_at = ? WHERE id = ?",
            (status, log, manifests_purged, blobs_purged, bytes_freed, time.time(), run_id),
        )


async def request_stop(db: Database, run_id: int) -> None:
    async with db.transaction(bump=False) as conn:
        await conn.execute("UPDATE gc_runs SET stop_requested = 1 WHERE id = ?", (run_id,))


async def stop_requested(db: Database, run_id: int) -> bool:
    return bool(await db.fetchval("SELECT stop_requested FROM gc_runs WHERE id = ?", (run_id,)))


async def abandon_running(db: Database) -> int:
    """Runs still Pending or Running when nobody holds the collection lock died with
    their process (kill -9, power loss): they end as Error."""
    async with db.transaction(bump=False) as conn:
        cur = await conn.execute(
            "UPDATE gc_runs SET status = 'Error', log = log || ?, updated_at = ? "
            "WHERE status IN ('Pending', 'Running')",
            ("the collection was interrupted (its process ended)\n", time.time()),
        )
    return cur.rowcount


async def get(db: Database, run_id: int) -> RunRow | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM gc_runs WHERE id = ?", (run_id,))
    return None if row is None else RunRow.of(row)


async def log_of(db: Database, run_id: int) -> str | None:
    value = await db.fetchval("SELECT log FROM gc_runs WHERE id = ?", (run_id,))
    return None if value is None else str(value)


async def page(db: Database, offset: int, limit: int) -> tuple[list[RunRow], int]:
    """Runs newest first, and how many there are in all."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM gc_runs ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)
    )
    total = int(await db.fetchval("SELECT count(*) FROM gc_runs"))
    return [RunRow.of(r) for r in rows], total


async def schedule(db: Database) -> ScheduleRow | None:
    row = await db.fetchone("SELECT * FROM gc_schedule WHERE id = 1")
    if row is None:
        return None
    return ScheduleRow(
        row["type"],
        row["cron"],
        orjson.loads(row["parameters"]),
        float(row["created_at"]),
        float(row["updated_at"]),
    )


async def set_schedule(db: Database, type_: str, cron: str, parameters: dict[str, Any]) -> None:
    """Store the periodic schedule; type ``None`` removes it."""
    now = time.time()
    async with db.transaction(bump=False) as conn:
        if type_ == "None":
            await conn.execute("DELETE FROM gc_schedule WHERE id = 1")
            return
        await conn.execute(
            "INSERT INTO gc_schedule (id, type, cron, parameters, created_at, updated_at) "
            "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET type = excluded.type, "
            "cron = excluded.cron, parameters = excluded.parameters, updated_at = excluded.updated_at",
            (type_, cron, orjson.dumps(parameters).decode(), now, now),
        )
