"""Blocking file-system calls, each run in a worker thread.

The event loop never touches the disk itself: every ``os`` call that can block goes
through this module, which hands it to the loop's default executor (sized at start
by ``app.py``). hashlib and os.write release the GIL, so hashing and writing an upload
chunk in a thread overlaps with receiving the next one on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

READ_SIZE = 1 << 20


async def run(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_sync(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)


def size_sync(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def write_and_hash_sync(fd: int, hasher: hashlib._Hash | None, data: bytes | bytearray) -> None:
    """Append one buffer to an open upload file and feed it to the running hash."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    if hasher is not None:
        hasher.update(data)


def hash_file_sync(path: Path, algorithm: str) -> str:
    """Hash a whole file from disk (the upload's hash state did not survive)."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return hasher.hexdigest()


def read_file_sync(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def truncate_sync(path: Path, size: int) -> None:
    os.truncate(path, size)


def unlink_sync(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def rmtree_sync(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def rename_sync(src: Path, dest: Path) -> bool:
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        return False
    return True


def link_sync(src: Path, dest: Path, fsync: bool) -> None:
    """Make ``dest`` a second name of the fully written ``src`` (kept): fsync the data,
    hard-link (atomic; an existing ``dest`` already holds the same content), fsync the
    directory. Used instead of rename so that the source survives until the metadata
    transaction that publishes the blob has checked the link is still there."""
    if fsync:
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        os.link(src, dest)
    except FileExistsError:
        return
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except FileExistsError:
            return
    if fsync:
        _fsync_dir(dest.parent)


def exists_sync(path: Path) -> bool:
    return os.path.exists(path)


def open_for_append_sync(path: Path, offset: int) -> int:
    """Open an upload's data file positioned at ``offset``, cutting off anything past it
    (bytes a crash left beyond the recorded size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def close_sync(fd: int) -> None:
    os.close(fd)


def listdir_sync(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def mtime_sync(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None
