"""The SQLite database: one writer connection behind a lock, and reader connections.

WAL mode lets readers run beside the writer, in this process and in others (a second
worker, ``regd gc`` on the same data directory). Write transactions start with
``BEGIN IMMEDIATE``, which takes SQLite's write lock at once: two write transactions,
from any process, never interleave. That is what the collector's safety rests on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from regd.metadata.generation import Generation
from regd.metadata.schema import MIGRATIONS, SCHEMA_VERSION

Row = sqlite3.Row
Params = Sequence[Any] | dict[str, Any]
T = TypeVar("T")
# A transaction's body for ``Database.run_transaction``: statements on the connection.
Body = Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]


class SchemaTooNewError(Exception):
    pass


class DatabaseDamagedError(Exception):
    """``PRAGMA quick_check`` found the database file damaged."""


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, except that a statement issued from its own thread runs
    there at once instead of being queued for it: what lets ``Database.run_transaction``
    run a whole transaction in one hop. (``_execute`` is aiosqlite's one way into its
    thread; ``tests/test_metadata_hop.py`` notices if a new aiosqlite changes it.)"""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def _drive(conn: aiosqlite.Connection, body: Body[T]) -> T:
    """On the writer's thread: BEGIN IMMEDIATE, run ``body`` to its end (each statement
    it awaits runs inline, so it never suspends), COMMIT; ROLLBACK if it raises."""
    raw = conn._conn
    raw.execute("BEGIN IMMEDIATE")
    try:
        coroutine = body(conn)
        try:
            coroutine.send(None)
        except StopIteration as done:
            result: T = done.value
        else:
            coroutine.close()
            raise RuntimeError("a one-hop transaction awaited something other than its statements")
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
    return result


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await _Connection(lambda: sqlite3.connect(path, isolation_level=None), 64)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA busy_timeout = 30000")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")  # the first to read the file
    except BaseException:
        await conn.close()  # its thread is not a daemon: left open, it keeps regd alive
        raise
    return conn


class Database:
    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self.generation = Generation(path.with_name(path.name + ".generation"))
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.cycle([0])
        self._lock = asyncio.Lock()

    async def open(self, check: bool = False) -> None:
        """Connect, migrate; with ``check`` (the daemon's start), first ``PRAGMA
        quick_check``: a damaged file raises ``DatabaseDamagedError`` before anything is
        written to it, and a newer schema ``SchemaTooNewError`` (never a re-initialisation)."""
        await asyncio.get_running_loop().run_in_executor(None, self.generation.open_sync)
        self._writer = await _connect(self.path)
        if check:
            await self._quick_check(self._writer)
        await self._writer.execute("PRAGMA journal_mode = WAL")
        # Readable by regd's user only: it holds password hashes and the credentials of
        # proxy-cache upstreams. SQLite gives -wal and -shm the database file's mode.
        await asyncio.get_running_loop().run_in_executor(None, _make_private, self.path)
        await self._migrate(self._writer)
        self._readers = [await _connect(self.path) for _ in range(self._reader_count)]
        self._next_reader = itertools.cycle(range(len(self._readers)))

    async def close(self) -> None:
        for conn in [*self._readers, *([self._writer] if self._writer else [])]:
            await conn.close()
        self._readers = []
        self._writer = None
        self.generation.close_sync()

    async def _quick_check(self, conn: aiosqlite.Connection) -> None:
        # O(size of the database), without the cross-checks of integrity_check: a second
        # or so per GB. SQLite reports a damaged header as an error, damage inside the
        # file as rows other than "ok".
        try:
            async with conn.execute("PRAGMA quick_check(5)") as cur:
                problems = [str(row[0]) for row in await cur.fetchall()]
        except sqlite3.DatabaseError as e:
            problems = [str(e)]
        if problems != ["ok"]:
            text = " ".join("; ".join(problems).split())  # one line: SQLite's has newlines
            raise DatabaseDamagedError(text[:300])

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"its schema version {version} is newer than this regd's ({SCHEMA_VERSION}): "
                "run the regd that wrote it, or restore a backup made by this version"
            )
        for target in range(version, SCHEMA_VERSION):
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[target]):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {target + 1}")
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("database is not open")
        return self._writer

    @asynccontextmanager
    async def transaction(self, bump: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on success, else rolls back.

        After the commit the shared generation is bumped (see ``generation.py``) so that
        no process serves a cached lookup the commit made stale. ``bump=False`` is for
        transactions that touch nothing cached (upload session bookkeeping, a blob that
        becomes newly visible).
        """
        async with self._lock:
            conn = self.writer
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            if bump:
                await asyncio.get_running_loop().run_in_executor(None, self.generation.bump_sync)

    async def run_transaction(self, body: Body[T]) -> T:
        """``transaction(bump=False)`` in one hop to the writer's thread instead of one
        per statement: ``body(conn)`` runs there, its statements inline. Under load each
        hop waits for a turn of the busy event loop, so an upload's bookkeeping took
        20-60 ms a request at eight concurrent pushes. ``body`` may await nothing but
        statements on ``conn`` (anything else raises RuntimeError, rolled back)."""
        async with self._lock:
            writer = self.writer
            result: T = await writer._execute(_drive, writer, body)  # type: ignore[no-untyped-call]
            return result

    def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise RuntimeError("database is not open")
        return self._readers[next(self._next_reader)]

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        # Execute and fetch in ONE hop on the reader's thread. As two hops, another
        # coroutine's query could run on the same connection in between, inside the read
        # transaction this statement holds open until fetched: it would see the database
        # as it was when this one began, missing commits made since (a session just
        # created, a manifest just pushed). Long reads, like a collector's, made it common.
        return list(await self._reader().execute_fetchall(sql, params))

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


def _make_private(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass


def _statements(script: str) -> Iterable[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> Row | None:
    async with conn.execute(sql, params) as cur:
        row: Row | None = await cur.fetchone()
        return row


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[Row]:
    async with conn.execute(sql, params) as cur:
        return list(await cur.fetchall())
