"""Database.run_transaction: a whole write transaction in one hop to the writer's thread
(regd/metadata/db.py), as the upload path uses it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiosqlite
import pytest

from regd.metadata import uploads as upload_rows
from regd.metadata.db import Database
from regd.uploads.state import UploadEvent, UploadState


async def test_the_body_runs_on_the_writer_thread_in_one_hop(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[str] = []
    real = aiosqlite.Connection._execute

    async def spy(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        queued.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", spy)
    threads: set[str] = set()

    async def body(conn: aiosqlite.Connection) -> UploadState | None:
        threads.add(threading.current_thread().name)
        await upload_rows.create(conn, "a" * 32, "library/x", "alice")
        assert await upload_rows.open_count(conn, "repository", "library/x") == 1
        return await upload_rows.transition(conn, "a" * 32, UploadEvent.BEGIN_WRITE, expect_size=0)

    assert await db.run_transaction(body) is UploadState.RECEIVING
    assert queued == ["_drive"]  # one hop; the four statements ran inline
    assert threads and "MainThread" not in threads
    row = await upload_rows.get(db, "a" * 32)
    assert row is not None and row.state is UploadState.RECEIVING


async def test_a_body_that_raises_is_rolled_back(db: Database) -> None:
    async def body(conn: aiosqlite.Connection) -> None:
        await upload_rows.create(conn, "b" * 32, "library/x")
        raise LookupError("no")

    with pytest.raises(LookupError):
        await db.run_transaction(body)
    assert await upload_rows.get(db, "b" * 32) is None
    # and the writer is free for the next transaction
    await db.run_transaction(lambda conn: upload_rows.create(conn, "c" * 32, "library/x"))
    assert await upload_rows.get(db, "c" * 32) is not None


async def test_a_body_that_waits_on_anything_else_is_refused_and_rolled_back(db: Database) -> None:
    async def body(conn: aiosqlite.Connection) -> None:
        await upload_rows.create(conn, "d" * 32, "library/x")
        await asyncio.sleep(0)  # would suspend: not allowed on the writer's thread

    with pytest.raises(RuntimeError, match="awaited something other than its statements"):
        await db.run_transaction(body)
    assert await upload_rows.get(db, "d" * 32) is None


async def test_concurrent_one_hop_and_ordinary_transactions_serialise(db: Database) -> None:
    async def one_hop(i: int) -> None:
        await db.run_transaction(lambda conn: upload_rows.create(conn, f"{i:032x}", "library/x"))

    async def ordinary(i: int) -> None:
        async with db.transaction(bump=False) as conn:
            await upload_rows.create(conn, f"{i + 1000:032x}", "library/x")

    await asyncio.gather(*(one_hop(i) for i in range(50)), *(ordinary(i) for i in range(50)))
    assert len(await upload_rows.ids(db)) == 100
