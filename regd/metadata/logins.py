"""Queries on ``login_failures`` and ``login_trusted``: the login throttle's state
(``regd/auth/throttle.py``), shared by every process on the data directory."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from regd.metadata.db import Database, fetchone

_COLUMNS = "failures, last_failure, locked_until, lockouts"


@dataclass
class Failures:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    lockouts: int = 0


async def read(
    db: Database, keys: list[str], username: str, address: str
) -> tuple[dict[str, Failures], float]:
    """The failure counts of ``keys`` (missing ones: none), and until when ``address``
    is trusted for ``username`` (0: not), in one round trip."""
    marks = ",".join("?" * len(keys))
    rows = await db.fetchall(
        f"SELECT key, {_COLUMNS} FROM login_failures WHERE key IN ({marks}) "
        "UNION ALL SELECT '', 0, 0, until, 0 FROM login_trusted WHERE username = ? AND address = ?",
        [*keys, username, address],
    )
    found: dict[str, Failures] = {}
    trusted = 0.0
    for row in rows:
        if row[0] == "":
            trusted = float(row[3])
        else:
            found[row[0]] = Failures(int(row[1]), float(row[2]), float(row[3]), int(row[4]))
    return found, trusted


async def get(conn: aiosqlite.Connection, key: str) -> Failures | None:
    row = await fetchone(
        conn,
        "SELECT failures, last_failure, locked_until, lockouts FROM login_failures WHERE key = ?",
        (key,),
    )
    return None if row is None else Failures(int(row[0]), float(row[1]), float(row[2]), int(row[3]))


async def put(conn: aiosqlite.Connection, key: str, entry: Failures) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO login_failures (key, failures, last_failure, locked_until, lockouts) "
        "VALUES (?, ?, ?, ?, ?)",
        (key, entry.failures, entry.last_failure, entry.locked_until, entry.lockouts),
    )


async def clear(conn: aiosqlite.Connection, key: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))


async def trust(conn: aiosqlite.Connection, username: str, address: str, until: float) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO login_trusted (username, address, until) VALUES (?, ?, ?)",
        (username, address, until),
    )


async def prune(conn: aiosqlite.Connection, now: float, window: float, max_lockout: float) -> None:
    """Forget failures no lock or window still needs, and expired trust."""
    await conn.execute(
        "DELETE FROM login_failures WHERE locked_until <= ? AND last_failure < ?",
        (now, now - max(window, max_lockout)),
    )
    await conn.execute("DELETE FROM login_trusted WHERE until < ?", (now,))
