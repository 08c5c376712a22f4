"""Appending an upload's bytes to its data file, in a worker thread.

Whole 4 KiB blocks go to the disk with ``O_DIRECT`` from a page-aligned staging
buffer, so that the kernel does not copy them into the page cache: that copy, into
freshly allocated page-cache pages, was the largest single cost of a push (up to
half of the process's CPU, ``benchmarks/RESULTS.md``). The bytes that do not fill a
block at the end of a request are written through the page cache, and the next
request of the session re-reads that block and carries on from it. A file system
that refuses ``O_DIRECT`` gets buffered writes, as before, with the writeback of each
piece started at once (``sync_file_range``).

Every call reports the bytes that reached the file: what a reader of a growing upload
(the proxy cache's tee) may read, and the size the session records.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from regd.storage import fsio
from regd.storage.fsio import Hasher

# O_DIRECT's alignment of file offsets, lengths and memory: the largest logical block
# size of common disks (512 or 4096), so right for both.
BLOCK = 4096
# The staging buffer of one upload request (page-aligned, as O_DIRECT wants).
STAGE_SIZE = 1 << 20
# Staging buffers kept for the next requests (their pages stay mapped: a fresh buffer's
# first write faults in every page of it).
MAX_SPARE_STAGES = 16
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


class Appender:
    """The open end of one upload's data file, for one request. Not thread-safe: one
    call at a time (the upload writer awaits each hand-off before the next)."""

    def __init__(
        self, path: Path, offset: int, direct: bool, start_writeback: bool, filled: bool = False
    ) -> None:
        """Open ``path`` at ``offset``, cutting off anything past it (bytes a crash left
        beyond the recorded size). ``filled``: the caller fills the stages itself
        (``stage_view``, ``filled_sync``) instead of handing in chunks."""
        self._fd = fsio.open_for_append_sync(path, offset)
        self._direct: int | None = None
        self._stage: mmap.mmap | None = None
        self._stages: list[mmap.mmap] = []
        self._start_writeback = start_writeback
        self.start = offset
        self.end = offset  # end of the bytes in the file
        self.received = 0  # bytes handed in, in the file or staged
        self._staged = 0
        try:
            flag = getattr(os, "O_DIRECT", 0)
            if direct and flag:
                self._open_direct(path, offset, flag)
            if filled:
                self._stages = [self._stage or _take_stage(), _take_stage()]
        except BaseException:
            self.close_sync()
            raise

    def _open_direct(self, path: Path, offset: int, flag: int) -> None:
        try:
            self._direct = os.open(path, os.O_WRONLY | flag)
        except OSError:  # EINVAL: this file system does not take O_DIRECT
            return
        self._stage = _take_stage()
        # The stage holds the file's bytes from _base (a block boundary) on: a partial
        # last block is read back, so that only whole blocks are written.
        self._base = offset - offset % BLOCK
        self._staged = 0
        if offset > self._base:
            self._staged = os.preadv(self._fd, [memoryview(self._stage)[: offset - self._base]], self._base)
            if self._staged != offset - self._base:
                raise OSError(f"upload file shorter than its recorded size {offset}")

    @property
    def direct(self) -> bool:
        return self._direct is not None

    @property
    def complete(self) -> bool:
        """Whether every byte handed in is in the file."""
        return self.end - self.start == self.received

    def write_sync(self, chunks: list[bytes], hasher: Hasher | None) -> int:
        """Append ``chunks``, feeding them to ``hasher`` (if any); the bytes that reached
        the file by this call (the staged rest of a block waits for the next call or
        ``close_sync``)."""
        before = self.end
        self.received += sum(map(len, chunks))
        if self._stage is None:
            self._write_buffered(chunks, hasher)
        else:
            self._write_staged(chunks, hasher)
        return self.end - before

    # Filled stages: the caller receives the bytes straight into a stage (api.direct), on
    # the event loop, then hands it here in a thread, the two stages in turn: one filling
    # while the other is hashed and written. A stage is filled from ``start`` on: the
    # part of a block the previous stage left, which filled_sync copies to its front.

    @property
    def first_start(self) -> int:
        """Where the first fill of stage 0 begins (the file's partial last block, read
        back, comes before it)."""
        return self._staged if self._direct is not None else 0

    def stage_view(self, i: int, start: int) -> memoryview:
        return memoryview(self._stages[i])[start:]

    def next_start(self, start: int, n: int) -> int:
        """Where the fill after one of ``n`` bytes from ``start`` begins."""
        return (start + n) % BLOCK if self._direct is not None else 0

    def filled_sync(self, i: int, start: int, n: int, hasher: Hasher | None) -> int:
        """Stage ``i`` holds ``n`` new bytes from ``start``: hash them and write them (the
        whole blocks with O_DIRECT, the rest of a block to the front of the other stage);
        the bytes that reached the file by this call."""
        before = self.end
        view = memoryview(self._stages[i])
        self.received += n
        if hasher is not None:
            hasher.update(view[start : start + n])
        if self._direct is None:
            self._write_buffered([view[start : start + n]], None)
            return self.end - before
        length = start + n
        whole = length - length % BLOCK
        if whole:
            written = os.pwrite(self._direct, view[:whole], self._base)
            if written < whole:  # short (a disk filling up): the rest through the page cache
                self._pwrite_all(self._fd, view[written:whole], self._base + written)
            self._base += whole
            self.end = max(self.end, self._base)
        other = self._stages[1 - i]
        tail = length - whole
        if tail:
            memoryview(other)[:tail] = view[whole:length]
        self._stage, self._staged = other, tail
        return self.end - before

    def close_sync(self) -> int:
        """Write what is staged and close; the bytes that reached the file by this call."""
        before = self.end
        try:
            if self._stage is not None and self._staged:
                self._pwrite_all(self._fd, memoryview(self._stage)[: self._staged], self._base)
                self.end = max(self.end, self._base + self._staged)
                self._staged = 0
        finally:
            for fd in (self._fd, self._direct):
                if fd is not None:
                    os.close(fd)
            self._direct = None
            for stage in {id(s): s for s in [*self._stages, self._stage] if s is not None}.values():
                _give_back_stage(stage)
            self._stage = None
            self._stages = []
        return self.end - before

    def _write_buffered(self, chunks: Sequence[bytes | memoryview], hasher: Hasher | None) -> None:
        if hasher is not None:
            for chunk in chunks:
                hasher.update(chunk)
        total = sum(map(len, chunks))
        written = os.pwritev(self._fd, chunks, self.end)
        if written < total:  # a short write: the rest piece by piece
            self._pwrite_all(self._fd, memoryview(b"".join(chunks))[written:], self.end + written)
        if self._start_writeback and _SYNC_FILE_RANGE is not None:
            _SYNC_FILE_RANGE(self._fd, self.end, total, SYNC_FILE_RANGE_WRITE)
        self.end += total

    def _write_staged(self, chunks: list[bytes], hasher: Hasher | None) -> None:
        """Copy the chunks into the stage, hash what was copied in one update per
        hasher (each a single hand-over of the GIL, where a hash per 32 KiB chunk of a
        docker push was a dozen) and write its whole blocks."""
        assert self._stage is not None
        view = memoryview(self._stage)
        fresh = self._staged  # where the bytes not hashed yet begin
        for chunk in chunks:
            piece = memoryview(chunk)
            while piece:
                n = min(len(piece), STAGE_SIZE - self._staged)
                view[self._staged : self._staged + n] = piece[:n]
                self._staged += n
                piece = piece[n:]
                if self._staged == STAGE_SIZE:
                    if hasher is not None:
                        hasher.update(view[fresh:])
                    self._write_blocks(view, STAGE_SIZE)
                    fresh = self._staged
        if hasher is not None and fresh < self._staged:
            hasher.update(view[fresh : self._staged])
        self._write_blocks(view, self._staged - self._staged % BLOCK)

    def _write_blocks(self, view: memoryview, length: int) -> None:
        """Write the stage's first ``length`` bytes (whole blocks) with O_DIRECT and
        move the rest to its front."""
        if not length:
            return
        assert self._direct is not None
        written = os.pwrite(self._direct, view[:length], self._base)
        if written < length:  # short (a disk filling up): the rest through the page cache
            self._pwrite_all(self._fd, view[written:length], self._base + written)
        self._base += length
        self.end = max(self.end, self._base)
        rest = self._staged - length
        if rest:
            view[:rest] = view[length : self._staged]
        self._staged = rest

    @staticmethod
    def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
