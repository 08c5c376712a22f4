"""A change counter shared by every process on one data directory.

Readers keep small caches of metadata lookups (a tag's manifest, a blob's link) and must
never serve one that a commit made stale, whichever process committed. The counter is
8 bytes of a small file mapped into every process's memory: reading it is a memory load,
no system call. After each write transaction commits, the writer bumps the counter under
an ``flock`` (so two processes' bumps never merge into one). A cached entry is valid only
while the counter still holds the value read *before* the lookup that produced it:

    reader: g = current(); row = query(); cache[key] = (g, row)
    writer: COMMIT; bump()                   (before it answers its client)

A lookup that ran before a commit was stored under a value the commit's bump has since
left behind, so it is looked up again; a client that saw the writer's answer sees the
new value, because the bump came first.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Hashable
from pathlib import Path
from typing import Any

_FORMAT = "<Q"


class Generation:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._map: mmap.mmap | None = None

    def open_sync(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < 8:
            os.ftruncate(self._fd, 8)
        self._map = mmap.mmap(self._fd, 8)

    def close_sync(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def current(self) -> int:
        """The counter's value; -1 when not open (then nothing may be cached)."""
        if self._map is None:
            return -1
        value: int = struct.unpack_from(_FORMAT, self._map, 0)[0]
        return value

    def bump_sync(self) -> None:
        if self._map is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            struct.pack_into(_FORMAT, self._map, 0, self.current() + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class LookupCache:
    """Metadata lookups of this process, valid while the shared generation stands still
    (``metadata/generation.py``): any commit, by any process, empties it."""

    def __init__(self, generation: Generation, max_entries: int = 50_000) -> None:
        self._counter = generation
        self._generation = -1
        self._entries: dict[Hashable, Any] = {}
        self._max = max_entries

    def get(self, key: Hashable) -> Any:
        current = self._counter.current()
        if current != self._generation:
            self._entries.clear()
            self._generation = current
            return None
        return self._entries.get(key)

    def stamp(self) -> int:
        """Read before a lookup; pass to ``put`` with its result."""
        return self._counter.current()

    def put(self, key: Hashable, value: Any, stamp: int) -> None:
        if stamp < 0 or stamp != self._counter.current():
            return
        if stamp != self._generation:
            self._entries.clear()
            self._generation = stamp
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = value
