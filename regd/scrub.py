"""The scrub: re-read every blob file against the checksum recorded when it was stored.

Bit rot and lost files are found before a client meets them. For each blob row, in
digest order, in a worker thread and under ``[scrub] rate_limit`` bytes per second:

- the file is read once through xxh3-128 (many GB/s per core) and compared with the
  checksum recorded at commit (``blobs.xxh3``); a blob stored before regd recorded one is
  read through its digest's algorithm and xxh3 together, and the checksum recorded;
- a mismatch (or a wrong size) is confirmed with the digest itself (sha256, ~1 GB/s):
  the file is damaged only when its bytes no longer hash to their digest;
- a damaged file is moved to ``quarantine/`` and the blob marked quarantined, a lost
  one is only marked; both inside a write transaction that first checks the row still
  stands (a collection may have swept it meanwhile) and the file is still as found.
  A quarantined blob is answered as unknown (404), so a client's next push uploads it
  again, which repairs it (``metadata.blobs.upsert``);
- the images that reference a quarantined blob are reported: the log, ``/metrics``
  (``regd_quarantined_blobs``, ``regd_scrub_findings_total``), ``GET /api/v2.0/system/scrub``
  and the ``regd scrub`` command;
- files under ``blobs/`` that no row knows are counted and logged; the next garbage
  collection removes them (its orphan sweep).

One scrub at a time across processes (``scrub.lock``); each is recorded in ``scrub_runs``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import xxhash

from regd import metrics
from regd.config import Config
from regd.cron import Cron
from regd.digest import ContentHash, Digest
from regd.metadata import scrub as rows
from regd.metadata.db import Database
from regd.storage import fsio
from regd.storage.blobstore import BlobStore

log = logging.getLogger("regd.scrub")

BATCH = 500  # blob rows read per query


class ScrubBusyError(Exception):
    """Another scrub (in this process or another) holds the scrub lock."""


class Verdict(enum.Enum):
    OK = "ok"
    RECORDED = "checksum recorded"  # no checksum yet: the digest matched, xxh3 recorded
    CORRECTED = "checksum corrected"  # xxh3 differed but the digest matched
    DAMAGED = "damaged"
    MISSING = "missing"


_BAD = (Verdict.DAMAGED, Verdict.MISSING)


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    bytes_read: int
    xxh3: str | None = None


class RateLimit:
    """At most ``rate`` bytes a second on average since the start (0: no limit); the
    reading thread sleeps, never the event loop. ``clock`` and ``sleep`` are for tests."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._total = 0

    def __call__(self, n: int) -> None:
        self._total += n
        if self.rate <= 0:
            return
        ahead = self._total / self.rate - (self._clock() - self._start)
        if ahead > 0:
            self._sleep(ahead)


def check_blob_sync(store: BlobStore, blob: rows.BlobToCheck, pace: RateLimit) -> Check:
    """Read one blob file against its row (blocking; runs in a worker thread)."""
    digest = Digest.parse(blob.digest)
    path = store.path(digest)
    try:
        if blob.xxh3 is None:
            both = ContentHash(digest.algorithm)
            read = fsio.read_through_sync(path, both, pace)
            ok = read == blob.size and both.digest.hexdigest() == digest.hex
            return Check(Verdict.RECORDED if ok else Verdict.DAMAGED, read, both.xxh3.hexdigest())
        quick = xxhash.xxh3_128()
        read = fsio.read_through_sync(path, quick, pace)
        if read == blob.size and quick.hexdigest() == blob.xxh3:
            return Check(Verdict.OK, read)
        # Confirm with the digest itself before calling it damaged.
        both = ContentHash(digest.algorithm)
        read += fsio.read_through_sync(path, both, pace)
    except FileNotFoundError:
        return Check(Verdict.MISSING, 0)
    if both.digest.hexdigest() == digest.hex:
        return Check(Verdict.CORRECTED, read, both.xxh3.hexdigest())
    return Check(Verdict.DAMAGED, read)


@dataclass
class Report:
    checked: int = 0
    bytes_read: int = 0
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unknown_files: int = 0
    checksums_recorded: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "checked": self.checked,
            "bytes_read": self.bytes_read,
            "damaged": len(self.damaged),
            "missing": len(self.missing),
            "unknown_files": self.unknown_files,
            "checksums_recorded": self.checksums_recorded,
        }

    @property
    def clean(self) -> bool:
        return not self.damaged and not self.missing

    def summary(self) -> str:
        return (
            f"{self.checked} blobs checked ({self.bytes_read} bytes read), {len(self.damaged)} damaged, "
            f"{len(self.missing)} missing, {self.unknown_files} files no blob row knows, "
            f"{self.checksums_recorded} checksums recorded"
        )


class ScrubService:
    def __init__(self, config: Config, db: Database, store: BlobStore) -> None:
        self.config = config
        self.db = db
        self.store = store

    async def run(self, kind: str = "MANUAL", rate: int | None = None) -> Report:
        """One whole scrub now; ``ScrubBusyError`` when another one runs."""
        fd = await fsio.run(fsio.try_lock_sync, self.store.layout.scrub_lock)
        if fd is None:
            raise ScrubBusyError("another scrub is running")
        try:
            async with self.db.transaction(bump=False) as conn:
                run_id = await rows.begin_run(conn, kind)
            report = Report()
            status = "Error"
            try:
                await self._scrub(report, RateLimit(self.config.scrub.rate_limit if rate is None else rate))
                status = "Success"
            finally:
                async with self.db.transaction(bump=False) as conn:
                    await rows.end_run(conn, run_id, status, report.counts())
                metrics.SCRUB_RUNS.inc()
                metrics.SCRUB_UNKNOWN_FILES.set(report.unknown_files)
        finally:
            await fsio.run(fsio.unlock_sync, fd)
        log.info("scrub %d done: %s", run_id, report.summary())
        return report

    async def _scrub(self, report: Report, pace: RateLimit) -> None:
        after = ""
        while batch := await rows.blobs_after(self.db, after, BATCH):
            for blob in batch:
                check = await fsio.run(check_blob_sync, self.store, blob, pace)
                report.checked += 1
                report.bytes_read += check.bytes_read
                metrics.SCRUB_BYTES.inc(check.bytes_read)
                await self._act(report, blob, check)
            after = batch[-1].digest
        await self._unknown_files(report)

    async def _act(self, report: Report, blob: rows.BlobToCheck, check: Check) -> None:
        if check.verdict in (Verdict.RECORDED, Verdict.CORRECTED):
            assert check.xxh3 is not None
            async with self.db.transaction(bump=False) as conn:
                await rows.record_xxh3(conn, blob.digest, check.xxh3)
            report.checksums_recorded += 1
            if check.verdict is Verdict.CORRECTED:
                log.warning("blob %s: bytes match the digest, not the recorded xxh3; corrected", blob.digest)
        elif check.verdict in _BAD and await self._quarantine(blob, check.verdict):
            (report.damaged if check.verdict is Verdict.DAMAGED else report.missing).append(blob.digest)
            metrics.SCRUB_FINDINGS.labels(check.verdict.value).inc()
            images = await rows.affected(self.db, blob.digest)
            named = ", ".join(_image(a) for a in images) or "no image"
            log.error("blob %s is %s: quarantined; affects %s; a push of it repairs it",
                      blob.digest, check.verdict.value, named)

    async def _quarantine(self, blob: rows.BlobToCheck, verdict: Verdict) -> bool:
        """Mark (and for a damaged file, move aside) a blob, if nothing changed since it
        was read: its row stands (no collection swept it) and its file is as found."""
        digest = Digest.parse(blob.digest)
        path = self.store.path(digest)
        async with self.db.transaction() as conn:  # bumps: cached blob lookups must go
            if not await rows.live_row(conn, blob.digest):
                return False
            exists = await fsio.run(fsio.exists_sync, path)
            if verdict is Verdict.MISSING and exists:
                return False  # re-pushed meanwhile
            if verdict is Verdict.DAMAGED:
                dest = self.store.layout.quarantine / f"{digest.hex}.{secrets.token_hex(8)}"
                if not await fsio.run(fsio.rename_sync, path, dest):
                    verdict = Verdict.MISSING
            await rows.quarantine(conn, blob.digest, verdict.value)
        return True

    async def _unknown_files(self, report: Report) -> None:
        known = await rows.known_digests(self.db)
        unknown = await fsio.run(_unknown_sync, self.store, known)
        report.unknown_files = len(unknown)
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            log.warning(
                "%d files under blobs/ belong to no blob (the next garbage collection removes them): %s",
                len(unknown),
                shown,
            )

    async def status(self) -> tuple[rows.RunRow | None, list[tuple[rows.Quarantined, list[rows.Affected]]]]:
        """The last scrub and every quarantined blob with the images it affects."""
        found = [(q, await rows.affected(self.db, q.digest)) for q in await rows.quarantined(self.db)]
        return await rows.last_run(self.db), found

    async def scheduler(self) -> None:
        """Run ``[scrub] schedule`` (a Harbor cron; empty: never)."""
        text = self.config.scrub.schedule
        if not text:
            return
        cron = Cron.parse(text)
        while True:
            due = cron.next_after(datetime.now(UTC))
            if due is None:
                return
            log.info("next scheduled scrub at %s", due.isoformat())
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            try:
                await self.run("SCHEDULE")
            except ScrubBusyError:
                log.info("scheduled scrub skipped: another one is running")
            except Exception:
                log.exception("scheduled scrub failed")


def _image(a: rows.Affected) -> str:
    return f"{a.repository}@{a.digest}" + (f" ({','.join(a.tags)})" if a.tags else "")


def _unknown_sync(store: BlobStore, known: set[str]) -> list[str]:
    unknown = []
    for digest, path, _st in store.walk_sync():
        if digest is None or str(digest) not in known:
            unknown.append(os.path.relpath(path, store.layout.blobs))
    return unknown
