"""Blocking file-system calls, each run in a worker thread.

The event loop never touches the disk itself: every ``os`` call that can block goes
through this module, which hands it to the loop's default executor (sized at start
by ``app.py``). hashlib and os.write release the GIL, so hashing and writing an upload
chunk in a thread overlaps with receiving the next one on the loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


READ_SIZE = 1 << 20
# The data directory is its user's only: 0700 directories, 0600 files (``cli.main``).
PRIVATE_UMASK = 0o077


async def run(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def run_to_end(fn: Callable[..., T], *args: object) -> T:
    """``run`` for a call on descriptors its caller closes on the way out: if the caller
    is cancelled meanwhile, the call is waited for before the cancellation goes on. A
    thread left running would go on using a descriptor number that was closed and
    perhaps reused for another file or socket. For calls that end by themselves soon."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_sync(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


def make_private_sync(root: Path) -> None:
    """The data directory 0700, and the files and directories at its top and in
    ``auth/`` (the database, its -wal and -shm, keys) 0600/0700, whatever made them:
    a data directory created by an older regd under umask 022 is closed at start. The
    blob tree below needs no walk: nobody else can enter the directory."""
    os.chmod(root, 0o700)
    for directory in (root, root / "auth"):
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            try:
                os.chmod(entry.path, 0o700 if entry.is_dir() else 0o600)
            except FileNotFoundError:
                continue


def size_sync(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def read_through_sync(path: Path, hasher: Hasher, pace: Callable[[int], None] | None = None) -> int:
    """Feed a whole file to ``hasher`` in READ_SIZE pieces, calling ``pace(n)`` after
    each (a scrub's rate limit); the bytes read. FileNotFoundError when it is gone."""
    total = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        while n := f.readinto(buf):
            hasher.update(view[:n])
            total += n
            if pace is not None:
                pace(n)
    return total


def read_file_sync(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_at_most_sync(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit``."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


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


def link_sync(src: Path, dest: Path, fsync: bool) -> bool:
    """Make ``dest`` a second name of the fully written ``src`` (kept): fsync the data,
    hard-link (atomic; an existing ``dest`` already holds the same content), fsync the
    directory. Used instead of rename so that the source survives until the metadata
    transaction that publishes the blob has checked the link is still there. Whether
    this call made ``dest`` (False: it was there)."""
    if fsync:
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        os.link(src, dest)
    except FileExistsError:
        return False
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except FileExistsError:
            return False
    if fsync:
        _fsync_dir(dest.parent)
    return True


def exists_sync(path: Path) -> bool:
    return os.path.exists(path)


def open_for_append_sync(path: Path, offset: int) -> int:
    """Open an upload's data file positioned at ``offset``, cutting off anything past it
    (bytes a crash left beyond the recorded size). Readable too: the upload writer reads
    a partial last block back (``storage.appender``)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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


def probe_sync(directory: Path) -> None:
    """Create, write, fsync and remove a file in ``directory``; raises OSError if any
    step fails (the health check's proof that the data directory takes writes)."""
    path = directory / f".probe-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"regd")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def free_bytes_sync(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def try_lock_sync(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing) without waiting: the open
    descriptor that holds it, or None when another descriptor (of any process) holds it.
    The kernel drops the lock when its holder dies, so a kill -9 never leaves it behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock_sync(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
