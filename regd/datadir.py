"""One daemon per data directory.

``regd serve`` takes an exclusive ``flock`` on ``<data_dir>/regd.lock`` before it opens
anything else and keeps it for its whole life; worker processes inherit the descriptor
(``fork``), so the lock stays held while any process of the daemon lives, and the
kernel drops it when the last one dies (a kill -9 never leaves it behind). The file
holds the PID of the daemon that took it, for the one line a second daemon answers.

Only ``serve`` (and ``restore``, which must not write under a running daemon) takes
it: ``regd gc``, ``user``, ``project``, ``member``, ``robot``, ``scrub`` and ``backup``
are safe beside a running daemon (SQLite transactions, ``gc.lock``) and do not.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from regd.storage import fsio
from regd.storage.layout import Layout


class DataDirBusyError(Exception):
    """Another daemon holds the data directory."""


class DatabaseMissingError(Exception):
    """Blob files but no database: starting would re-initialise what they belong to."""


def check_database_present(layout: Layout) -> None:
    """Refuse to create a new database beside blobs stored under a lost one (blocking)."""
    if layout.database.exists():
        return
    for _dirpath, _dirs, files in os.walk(layout.blobs):
        if files:
            raise DatabaseMissingError(
                f"database {layout.database} is missing but {layout.blobs} holds blobs; "
                "restore the database (regd restore BACKUP) rather than start an empty registry over them"
            )


def holder(layout: Layout) -> int | None:
    """The PID written in the lock file, if any."""
    with contextlib.suppress(OSError, ValueError):
        return int(layout.daemon_lock.read_text().strip() or "x")
    return None


def lock(root: Path) -> int:
    """Take the data directory (created if missing); the descriptor that holds the lock.
    Raises ``DataDirBusyError`` (another daemon) or ``OSError`` (unusable directory)."""
    layout = Layout(root)
    layout.root.mkdir(parents=True, exist_ok=True)
    fd = fsio.try_lock_sync(layout.daemon_lock)
    if fd is None:
        pid = holder(layout)
        running = f"pid {pid}" if pid is not None else "pid unknown"
        raise DataDirBusyError(
            f"data directory {root} is in use by another regd ({running}); "
            "stop it first, or give this one its own --data-dir"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
