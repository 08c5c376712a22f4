"""Harbor's per-project limits on upstream traffic: ``max_upstream_conn`` (concurrent
upstream transfers; beyond it 429 ``TOO_MANY_REQUEST``) and ``proxy_speed_kb`` (a
bandwidth cap in KiB/s on each transfer from the upstream)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from regd.errors import ErrorCode, RegistryError


def setting(metadata: dict[str, str], key: str) -> int:
    """A numeric project setting; -1 (no limit) when missing, malformed or not positive."""
    try:
        value = int(metadata.get(key, "-1"))
    except ValueError:
        return -1
    return value if value > 0 else -1


class ConnectionCap:
    """Upstream transfers in flight, per project."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def available(self, project: str, limit: int) -> bool:
        return limit <= 0 or self._open.get(project, 0) < limit

    @contextmanager
    def hold(self, project: str, limit: int) -> Iterator[None]:
        if not self.available(project, limit):
            raise RegistryError(ErrorCode.TOO_MANY_REQUEST)
        self._open[project] = self._open.get(project, 0) + 1
        try:
            yield
        finally:
            self._open[project] -= 1
            if not self._open[project]:
                del self._open[project]


class Pacer:
    """Sleeps so that bytes go no faster than ``kib_per_second`` (no cap when <= 0)."""

    def __init__(self, kib_per_second: int) -> None:
        self._rate = kib_per_second * 1024.0
        self._started = time.monotonic()
        self._bytes = 0

    async def pace(self, count: int) -> None:
        if self._rate <= 0:
            return
        self._bytes += count
        ahead = self._bytes / self._rate - (time.monotonic() - self._started)
        if ahead > 0:
            await asyncio.sleep(ahead)
