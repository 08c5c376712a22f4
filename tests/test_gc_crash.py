"""kill -9 of ``regd gc`` in the middle of a sweep, several times, then a restart and a
second collection: the metadata stays consistent and nothing referenced is lost.

The sweep is slowed down by the test hook ``REGD_TESTHOOK_GC_SWEEP_DELAY`` (seconds after
each file moved inside a sweep transaction, and before the trash is emptied) so that the
kills land inside a transaction and between COMMIT and the unlinking of the trash."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from regd.app import create_app
from regd.storage.layout import Layout

from .gc_support import (
    DockerStyleClient,
    Image,
    check_consistent,
    gc_config,
    random_image,
    referenced,
    regd_gc_command,
    regd_gc_env,
    run_regd_gc,
)

GARBAGE_BLOBS = 400
KILL_AFTER = [1.0, 3.4, 1.8]  # seconds after the collection starts: in a transaction, after a COMMIT


async def kill_mid_sweep(data_dir: Path, after: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *regd_gc_command(data_dir), env=regd_gc_env(delay=0.01), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    while b"garbage collection starts" not in (line := await proc.stderr.readline()):
        assert line, f"regd gc ended before its collection started (exit {await proc.wait()})"
    await asyncio.sleep(after)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL


def check_referenced_intact(data_dir: Path) -> None:
    """Right after a kill, before any recovery: SQLite is intact and every referenced blob
    has its row and its file (only unreferenced blobs may sit in trash/)."""
    layout = Layout(data_dir)
    with sqlite3.connect(layout.database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = {d for (d,) in conn.execute("SELECT digest FROM blobs")}
    for digest in referenced(layout.database):
        assert digest in rows
        algorithm, encoded = digest.split(":")
        assert (layout.blobs / algorithm / encoded[:2] / encoded).exists(), f"referenced {digest} lost"


async def test_kill_9_mid_sweep_then_restart_and_collect_again(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    kept: dict[str, Image] = {}

    async def serve() -> tuple[TestServer, ClientSession, DockerStyleClient]:
        server = await aiohttp_server(create_app(gc_config(data_dir, grace_period=0)))
        session = ClientSession()
        return server, session, DockerStyleClient(session, str(server.make_url("")).rstrip("/"))

    server, session, client = await serve()
    for n in range(4):
        img = random_image(layers=3)
        await client.push("crash/app", f"v{n}", img)
        kept[f"v{n}"] = img
    for n in range(3):
        doomed = random_image(layers=3)
        await client.push("crash/app", f"doomed{n}", doomed)
        assert await client.delete("crash/app", doomed.digest) == 202
    for _ in range(GARBAGE_BLOBS):
        await client.upload("crash/loose", os.urandom(64))
    await session.close()
    await server.close()

    trash = Layout(data_dir).trash
    left_in_trash = []
    for after in KILL_AFTER:
        await kill_mid_sweep(data_dir, after)
        left_in_trash.append(len(os.listdir(trash)))
        check_referenced_intact(data_dir)
    print(f"files left in trash/ by each kill: {left_in_trash}")
    assert any(left_in_trash), f"no kill landed mid-sweep: {left_in_trash}"

    # Restart: the daemon recovers the trash at start; everything referenced pulls.
    server, session, client = await serve()
    for tag, img in kept.items():
        await client.pull("crash/app", tag, img)
    await session.close()
    await server.close()
    assert os.listdir(trash) == []

    code, out, err = await run_regd_gc(data_dir)
    assert code == 0, err[-2000:]
    assert "freed" in out
    check_consistent(data_dir, only_referenced=True)
    with sqlite3.connect(Layout(data_dir).database) as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM gc_runs ORDER BY id")]
    assert statuses == ["Error"] * len(KILL_AFTER) + ["Success"], statuses

    server, session, client = await serve()
    for tag, img in kept.items():
        await client.pull("crash/app", tag, img)
    await session.close()
    await server.close()
