"""One download of a cold blob from the upstream, shared by every client that wants it.

The bytes go from the upstream into an ordinary upload session (``UploadService``: the
same write-and-hash path, the same commit with its digest check) and, in the same pass,
to every client reading the fetch: each reader sends from the upload's data file what
has reached the disk (``sendable``), so memory does not grow with the blob and one
upstream download serves any number of concurrent pulls.

Rules that keep a bad upstream from reaching a client as good content:

- The last byte is held back from every reader until the commit has checked the digest
  (``verified``). A corrupt stream therefore never gives anyone a complete 200: the
  fetch fails, readers cut their responses short, the session is discarded.
- A truncated or stalled stream (fewer bytes than Content-Length, the read timeout)
  fails the same way; nothing becomes a blob.
- The fetch runs as its own task: a client that goes away stops reading, not the
  download the others (and the cache) are waiting for.

States: STARTING (upstream not answered yet; ``size`` unknown) -> STREAMING (size known,
bytes landing) -> DONE (committed) or FAILED (``error``).
"""

from __future__ import annotations

import asyncio
import enum
import fcntl
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from regd.storage import fsio


class FetchState(enum.Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"


class FetchFailedError(Exception):
    """The shared download failed; a reader's response must be cut short."""


class BlobFetch:
    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.state = FetchState.STARTING
        self.size = -1
        self.written = 0
        self.error: BaseException | None = None
        self._fd = -1
        self._readers = 0
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- the writer's side --------------------------------------------------------

    def streaming(self, size: int, fd: int) -> None:
        self.size, self._fd, self.state = size, fd, FetchState.STREAMING
        self._notify()

    def progress(self, written: int) -> None:
        self.written = written
        self._notify()

    def finish(self, error: BaseException | None) -> None:
        self.state = FetchState.FAILED if error is not None else FetchState.DONE
        self.error = error
        self._notify()
        self._close_if_unused()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the readers' side --------------------------------------------------------

    async def started(self) -> int:
        """The blob's size once the upstream answered; raises what the fetch failed with
        before any byte (a RegistryError such as BLOB_UNKNOWN reaches the client whole)."""
        while self.state is FetchState.STARTING:
            await self._changed.wait()
        if self.state is FetchState.FAILED and self._fd < 0:
            assert self.error is not None
            raise self.error
        return self.size

    def acquire(self) -> int:
        """A descriptor of the data being written (valid until ``release``), or -1 when
        there is none any more."""
        if self._fd < 0:
            return -1
        self._readers += 1
        return self._fd

    def release(self) -> None:
        self._readers -= 1
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self._readers == 0 and self.state in (FetchState.DONE, FetchState.FAILED) and self._fd >= 0:
            os.close(self._fd)  # a close of a regular file's descriptor does not block
            self._fd = -1

    async def sendable(self, offset: int) -> int:
        """How many bytes from the start a reader may send, more than ``offset`` unless
        the blob is complete; waits for them. FetchFailedError when the download failed."""
        while True:
            if self.state is FetchState.FAILED:
                raise FetchFailedError(str(self.error))
            if self.state is FetchState.DONE:
                return self.size
            limit = min(self.written, self.size - 1)  # the last byte waits for the digest check
            if limit > offset:
                return limit
            await self._changed.wait()


class PacedBody:
    """The upstream response body as an upload's ``ByteSource``: counted, and paced to
    the project's ``proxy_speed_kb``."""

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        count: Callable[[int], None],
        pace: Callable[[int], Awaitable[None]],
    ) -> None:
        self._read = read
        self._count = count
        self._pace = pace

    async def read_pieces(self) -> list[bytes]:
        chunk = await self._read()
        if not chunk:
            return []
        self._count(len(chunk))
        await self._pace(len(chunk))
        return [chunk]


def open_reader_sync(path: os.PathLike[str] | str) -> int:
    """Create the upload's (empty) data file and open it for the readers."""
    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)


async def open_reader(path: os.PathLike[str] | str) -> int:
    return await fsio.run(open_reader_sync, path)


# -- one download across worker processes ----------------------------------------------
#
# With [server] workers > 1, the worker that first wants a cold blob takes an exclusive
# flock on ``proxy/<algorithm>-<hex>.lock`` and downloads; it writes ``<upload id>
# <size>`` into the lock file once the upstream answered. A worker that finds the lock
# held follows: it reads the same upload file as it grows (its size is what has landed)
# and holds back the last byte until the lock is released with the blob in the store
# (the leader's commit checked the digest); released without the blob means the download
# failed. The leader removes the lock file when done; a leader that dies releases its
# flock with it, and the next request leads a new download.

FOLLOW_POLL = 0.02  # seconds between a follower's looks at the leader's progress


def open_lock_sync(path: os.PathLike[str] | str) -> tuple[int, bool]:
    """The lock file's descriptor, and whether this process now leads the download."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    except BaseException:
        os.close(fd)
        raise
    return fd, True


def announce_sync(fd: int, upload_id: str, size: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{upload_id} {size}\n".encode(), 0)


def close_lock_sync(fd: int, path: os.PathLike[str] | str, leading: bool) -> None:
    """Done with the lock; the leader removes the file first (then unlocks by closing)."""
    if leading:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.close(fd)


@dataclass(frozen=True)
class LeaderState:
    alive: bool  # the leader still holds the lock
    upload_id: str | None  # what it announced
    size: int


def leader_state_sync(fd: int) -> LeaderState:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        alive = True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        alive = False
    parts = os.pread(fd, 128, 0).decode(errors="replace").split()
    if len(parts) == 2 and parts[1].isdigit():
        return LeaderState(alive, parts[0], int(parts[1]))
    return LeaderState(alive, None, -1)


def landed_sync(fd: int) -> int:
    return os.fstat(fd).st_size
