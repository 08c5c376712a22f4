"""Read-only totals for ``/metrics`` and ``/api/v2.0/health`` (no table of their own)."""

from __future__ import annotations

from regd.metadata.db import Database


async def blob_totals(db: Database) -> tuple[int, int]:
    """(blobs stored, their bytes); a scan of ``blobs``, run on a reader connection."""
    row = await db.fetchone("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs")
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


async def uploads_by_state(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT state, COUNT(*) FROM uploads GROUP BY state")
    return {str(row[0]): int(row[1]) for row in rows}


async def ping(db: Database) -> None:
    """Raise unless the database file answers a query that reads a table page."""
    await db.fetchone("SELECT id FROM uploads LIMIT 1")
