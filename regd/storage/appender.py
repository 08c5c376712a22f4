"""Appending an upload's bytes to its data file: filled on the event loop, written in a
worker thread.

Whole 4 KiB blocks go to the disk with ``O_DIRECT`` from page-aligned staging
buffers, so that the kernel does not copy them into the page cache: that copy, into
freshly allocated page-cache pages, was the largest single cost of a push (up to
half of the process's CPU, ``benchmarks/RESULTS.md``). The bytes that do not fill a
block at the end of a request are written through the page cache, and the next
request of the session re-reads that block and carries on from it. A file system
that refuses ``O_DIRECT`` gets the same whole blocks written through the page cache,
with the writeback of each started at once (``sync_file_range``).

Two stages per request. The event loop copies each piece of the body into one
(``fill``) while a thread hashes and writes the other (``write_sync``), so the thread
holds the GIL only between its calls into C: when it copied the pieces itself, the
loop waited for the GIL during each copy, and the hand-overs of the GIL cost more
CPU than the copy (``benchmarks/RESULTS.md``, "Push, fourth pass"). Opening the file
is part of the first thread call and closing it of the last (``finish_sync``), so a
request costs its hand-offs and nothing more.

Every thread call reports the bytes that reached the file: what a reader of a growing
upload (the proxy cache's tee) may read, and the size the session records.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from regd.storage import fsio
from regd.storage.fsio import Hasher

# O_DIRECT's alignment of file offsets, lengths and memory: the largest logical block
# size of common disks (512 or 4096), so right for both.
BLOCK = 4096
# One staging buffer (page-aligned, as O_DIRECT wants); each request has two.
STAGE_SIZE = 1 << 20
# Staging buffers kept for the next requests (their pages stay mapped: a fresh buffer's
# first fill faults in every page of it, on the event loop).
MAX_SPARE_STAGES = 32
_spare_stages: list[mmap.mmap] = []  # list.append and .pop are atomic under the GIL


def _take_stage() -> mmap.mmap:
    try:
        return _spare_stages.pop()
    except IndexError:
        return mmap.mmap(-1, STAGE_SIZE)


def _give_back_stage(stage: mmap.mmap) -> None:
    if len(_spare_stages) < MAX_SPARE_STAGES:
        _spare_stages.append(stage)
        return
    try:
        stage.close()
    except BufferError:  # a view of it lives on (in a traceback): unmapped when freed
        pass


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


# sync_file_range(2) with SYNC_FILE_RANGE_WRITE starts the writeback of a range without
# waiting for it, so the fsync at commit finds little left to write. (Linux.)
_SYNC_FILE_RANGE = _sync_file_range()
SYNC_FILE_RANGE_WRITE = 2

# What the loop hands to the thread: a stage, the length of its bytes, and where the
# bytes not hashed yet begin in it.
HandOff = tuple[mmap.mmap, int, int]


class Appender:
    """The open end of one upload's data file, for one request.

    Loop side: ``fill`` and ``hand_off``. Thread side: ``write_sync`` and then
    ``finish_sync`` once, one call at a time (the upload writer awaits each before the
    next hand-off). A stage handed off is the thread's until its call returns."""

    def __init__(self, path: Path, offset: int, direct: bool, start_writeback: bool) -> None:
        """Nothing is opened here: the first thread call opens ``path`` at ``offset``,
        cutting off anything past it (bytes a crash left beyond the recorded size)."""
        self._path = path
        self._want_direct = direct and bool(getattr(os, "O_DIRECT", 0))
        self._start_writeback = start_writeback
        self._fd: int | None = None
        self._direct: int | None = None
        self.direct = False  # whether whole blocks went out with O_DIRECT (known once open)
        self._failed = False
        self._closed = False
        self.start = offset
        self.end = offset  # end of the bytes in the file
        self.received = 0  # bytes of the body filled in
        # The stages hold the file's bytes from _base (a block boundary) on: the first
        # block of a request that starts inside one is read back into the first stage
        # (by the first thread call), so that only whole blocks are written.
        self._base = offset - offset % BLOCK
        self._readback = offset - self._base
        self._stages = [_take_stage(), _take_stage()]
        self._fill = memoryview(self._stages[0])
        self._filled = self._fresh = self._readback

    # -- loop side -------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self._filled == STAGE_SIZE

    def fill(self, piece: memoryview) -> int:
        """Copy as much of ``piece`` as the stage takes; how many bytes that was."""
        n = min(len(piece), STAGE_SIZE - self._filled)
        self._fill[self._filled : self._filled + n] = piece[:n]
        self._filled += n
        self.received += n
        return n

    def hand_off(self) -> HandOff:
        """The filled stage, for ``write_sync``; filling goes on in the other stage,
        which starts with the partial block this one ends with (write_sync writes
        only whole blocks). Call it only when the last hand-off's call has returned."""
        stage, length, fresh = self._stages[0], self._filled, self._fresh
        whole = length - length % BLOCK
        self._stages.reverse()
        self._fill = memoryview(self._stages[0])
        tail = length - whole
        if tail:
            self._fill[:tail] = memoryview(stage)[whole:length]
        self._filled = self._fresh = tail
        return stage, length, fresh

    def last(self) -> HandOff:
        """What is filled, for ``finish_sync``."""
        return self._stages[0], self._filled, self._fresh

    @property
    def complete(self) -> bool:
        """Whether every byte filled in is in the file (after ``finish_sync``)."""
        return not self._failed and self.end - self.start == self.received

    # -- thread side -----------------------------------------------------------------

    def write_sync(self, stage: mmap.mmap, length: int, fresh: int, hasher: Hasher | None) -> int:
        """Hash a handed-off stage's fresh bytes and write its whole blocks; the bytes
        that reached the file by this call."""
        before = self.end
        if self._failed or self._closed:
            raise OSError("an earlier write of this request failed, or it is closed")
        try:
            self._open(stage)
            view = memoryview(stage)
            if hasher is not None and fresh < length:
                hasher.update(view[fresh:length])
            self._write_blocks(view[: length - length % BLOCK])
        except BaseException:
            # What reached the file stays (``end``); nothing after a gap is written.
            self._failed = True
            raise
        return self.end - before

    def finish_sync(self, stage: mmap.mmap, length: int, fresh: int, hasher: Hasher | None) -> int:
        """``write_sync`` of the last stage, then its partial block through the page
        cache, and close; the bytes that reached the file by this call. Closes also
        after an error (and then writes nothing)."""
        before = self.end
        try:
            if not (self._failed or self._closed):
                self.write_sync(stage, length, fresh, hasher)
                tail = length % BLOCK
                if tail:
                    assert self._fd is not None
                    whole = length - tail
                    self._pwrite_all(self._fd, memoryview(stage)[whole:length], self._base)
                    self.end = max(self.end, self._base + tail)
        finally:
            for fd in (self._fd, self._direct):
                if fd is not None:
                    os.close(fd)
            self._fd = self._direct = None
            self._closed = True
            for spare in self._stages:
                _give_back_stage(spare)
            self._stages = []
        return self.end - before

    def _open(self, first: mmap.mmap) -> None:
        if self._fd is not None:
            return
        self._fd = fsio.open_for_append_sync(self._path, self.start)
        if self._readback:
            got = os.preadv(self._fd, [memoryview(first)[: self._readback]], self._base)
            if got != self._readback:
                raise OSError(f"upload file shorter than its recorded size {self.start}")
        if self._want_direct:
            try:
                self._direct = os.open(self._path, os.O_WRONLY | os.O_DIRECT)
            except OSError:  # EINVAL: this file system does not take O_DIRECT
                self._direct = None
        self.direct = self._direct is not None

    def _write_blocks(self, data: memoryview) -> None:
        """Write whole blocks at ``_base``: with O_DIRECT, else through the page cache."""
        if not data:
            return
        assert self._fd is not None
        length = len(data)
        if self._direct is not None:
            written = os.pwrite(self._direct, data, self._base)
            if written < length:  # short (a disk filling up): the rest through the page cache
                self._pwrite_all(self._fd, data[written:], self._base + written)
        else:
            self._pwrite_all(self._fd, data, self._base)
            if self._start_writeback and _SYNC_FILE_RANGE is not None:
                _SYNC_FILE_RANGE(self._fd, self._base, length, SYNC_FILE_RANGE_WRITE)
        self._base += length
        self.end = max(self.end, self._base)

    @staticmethod
    def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
