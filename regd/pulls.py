"""Harbor's pull statistics: a repository's ``pull_count``, an artifact's and a tag's
``pull_time``.

A pull is a successful manifest ``GET`` (by tag or digest; not ``HEAD``, not a 304), as
Harbor counts it. Writing a row per pull would take SQLite's write lock on the hottest
path, so each process counts in memory and writes what it counted every ``[server]
pull_flush_interval`` seconds, and once more when it stops, in one write transaction.
The writes add (``pull_count + n``) and keep the later time, so any number of worker
processes can flush in any order. A flush that fails keeps its counts for the next one.
Counts of the last interval are lost only if the process dies without stopping (SIGKILL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from regd.metadata import artifacts
from regd.metadata.db import Database
from regd.metadata.manifests import ManifestRow

log = logging.getLogger("regd.pulls")


@dataclass
class PullBatch:
    repositories: Counter[int] = field(default_factory=Counter)  # id -> pulls
    manifests: dict[int, float] = field(default_factory=dict)  # id -> last pull
    tags: dict[tuple[int, str], float] = field(default_factory=dict)  # (repository id, tag) -> last pull

    def __len__(self) -> int:
        return sum(self.repositories.values())

    def add(self, repository_id: int, manifest_id: int, tag: str | None, when: float, count: int = 1) -> None:
        self.repositories[repository_id] += count
        self.manifests[manifest_id] = max(when, self.manifests.get(manifest_id, when))
        if tag is not None:
            key = (repository_id, tag)
            self.tags[key] = max(when, self.tags.get(key, when))

    def merge(self, other: PullBatch) -> None:
        self.repositories.update(other.repositories)
        for manifest_id, when in other.manifests.items():
            self.manifests[manifest_id] = max(when, self.manifests.get(manifest_id, when))
        for key, when in other.tags.items():
            self.tags[key] = max(when, self.tags.get(key, when))


class PullRecorder:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending = PullBatch()

    def record(self, row: ManifestRow, tag: str | None, when: float | None = None) -> None:
        """One pull of ``row`` (through ``tag`` when pulled by tag); no I/O."""
        self._pending.add(row.repository_id, row.id, tag, time.time() if when is None else when)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write the pulls counted so far in one transaction; returns how many."""
        batch, self._pending = self._pending, PullBatch()
        if not batch:
            return 0
        try:
            # No cached lookup holds pull statistics: no generation bump, so the flush
            # never invalidates other processes' caches.
            async with self.db.transaction(bump=False) as conn:
                await artifacts.record_pulls(conn, batch.repositories, batch.manifests, batch.tags)
        except BaseException:
            self._pending.merge(batch)
            raise
        return len(batch)

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing pull statistics failed; keeping them for the next try")
