"""Running collections: one at a time (a ``flock`` on ``gc.lock``, across processes),
each recorded in ``gc_runs`` with its log and counters, stoppable, and on a schedule."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regd import metrics
from regd.config import Config
from regd.cron import Cron
from regd.gc.collector import Collector, Options, Report
from regd.metadata import gc_runs
from regd.metadata.db import Database
from regd.storage import fsio
from regd.storage.blobstore import BlobStore
from regd.uploads.session import UploadService

log = logging.getLogger("regd.gc")

SCHEDULE_POLL = 60.0  # seconds: how often the scheduler re-reads the schedule and the trash
LOG_FLUSH_INTERVAL = 1.0  # seconds between writes of a running collection's log and counters
MAX_WORKERS = 10
CLOSE_TIMEOUT = 30.0  # seconds a shutdown waits for a collection to reach a batch boundary


class GCBusyError(Exception):
    """Another collection (in this process or another) holds the collection lock."""


class GCParametersError(ValueError):
    pass


@dataclass(frozen=True)
class Parameters:
    """Harbor's job parameters. ``workers`` is accepted and recorded for compatibility:
    SQLite has one writer, so regd sweeps in one task in short batches."""

    delete_untagged: bool = False
    dry_run: bool = False
    workers: int = 1

    @classmethod
    def of(cls, raw: Any, default_delete_untagged: bool) -> Parameters:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise GCParametersError("parameters must be an object")
        delete_untagged = raw.get("delete_untagged", default_delete_untagged)
        dry_run = raw.get("dry_run", False)
        workers = raw.get("workers", 1)
        if not isinstance(delete_untagged, bool) or not isinstance(dry_run, bool):
            raise GCParametersError("delete_untagged and dry_run must be booleans")
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
            raise GCParametersError(
                f"Error: Invalid number of workers:{workers}. Workers must be greater than 0 "
                f"and less than or equal to {MAX_WORKERS}."
            )
        return cls(delete_untagged, dry_run, workers)

    def as_dict(self) -> dict[str, Any]:
        return {"delete_untagged": self.delete_untagged, "dry_run": self.dry_run, "workers": self.workers}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _RunLog:
    """Buffers a run's log lines and counters, written to its row at most once a second."""

    def __init__(self, db: Database, run_id: int) -> None:
        self.db = db
        self.run_id = run_id
        self.lines: list[str] = []
        self.flushed_at = 0.0

    def note(self, line: str) -> None:
        self.lines.append(f"{_stamp()} [INFO] {line}\n")

    async def flush(self, report: Report, status: str = "Running", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.flushed_at < LOG_FLUSH_INTERVAL:
            return
        self.flushed_at = now
        text, self.lines = "".join(self.lines), []
        await gc_runs.update(
            self.db,
            self.run_id,
            status,
            text,
            report.manifests_purged,
            report.blobs_purged + report.orphans_purged,
            report.bytes_freed,
        )


class GCService:
    def __init__(self, config: Config, db: Database, store: BlobStore, uploads: UploadService) -> None:
        self.config = config
        self.db = db
        self.store = store
        self.uploads = uploads
        self._stops: set[int] = set()
        self._tasks: dict[int, asyncio.Task[Report | None]] = {}
        self.schedule_changed = asyncio.Event()

    # -- the lock ----------------------------------------------------------------------

    async def _lock(self) -> int:
        fd = await fsio.run(fsio.try_lock_sync, self.store.layout.gc_lock)
        if fd is None:
            raise GCBusyError("another garbage collection is running")
        return fd

    async def recover(self) -> bool:
        """Put back what a collection cut off mid-sweep left in trash/ and end its history
        row, unless a collection is running now (it recovers first). At daemon start and
        whenever the scheduler finds trash left behind."""
        try:
            fd = await self._lock()
        except GCBusyError:
            return False
        try:
            abandoned = await gc_runs.abandon_running(self.db)
            if abandoned:
                log.warning("%d garbage collections were cut off by the end of their process", abandoned)
            await self._collector(Options(self.config.gc.grace_period)).recover_trash()
        finally:
            await fsio.run(fsio.unlock_sync, fd)
        return True

    def _collector(self, options: Options, run: _RunLog | None = None) -> Collector:
        async def should_stop() -> bool:
            return run is not None and (
                run.run_id in self._stops or await gc_runs.stop_requested(self.db, run.run_id)
            )

        async def progress(report: Report) -> None:
            if run is not None:
                await run.flush(report)

        return Collector(
            self.db,
            self.store,
            self.uploads,
            options,
            note=run.note if run is not None else None,
            should_stop=should_stop,
            progress=progress,
        )

    def _options(self, parameters: Parameters, grace_period: float | None) -> Options:
        return Options(
            grace_period=self.config.gc.grace_period if grace_period is None else grace_period,
            delete_untagged=parameters.delete_untagged,
            dry_run=parameters.dry_run,
            upload_expiry=self.config.uploads.expire_after,
        )

    # -- running -----------------------------------------------------------------------

    async def _begin(self, kind: str, schedule_type: str, parameters: Parameters) -> tuple[int, int]:
        fd = await self._lock()
        try:
            await gc_runs.abandon_running(self.db)  # left Running by a process that died
            run_id = await gc_runs.create(self.db, kind, schedule_type, parameters.as_dict())
        except BaseException:
            await fsio.run(fsio.unlock_sync, fd)
            raise
        return fd, run_id

    async def run(
        self,
        parameters: Parameters,
        kind: str = "MANUAL",
        schedule_type: str = "Manual",
        grace_period: float | None = None,
    ) -> tuple[int, Report]:
        """Run a collection now and wait for it (the CLI, the scheduler, tests);
        GCBusyError when one is already running."""
        fd, run_id = await self._begin(kind, schedule_type, parameters)
        try:
            return run_id, await self._execute(run_id, parameters, grace_period)
        finally:
            await fsio.run(fsio.unlock_sync, fd)

    async def start(self, parameters: Parameters, kind: str = "MANUAL", schedule_type: str = "Manual") -> int:
        """Start a collection in the background (the API); GCBusyError when one runs."""
        fd, run_id = await self._begin(kind, schedule_type, parameters)

        async def background() -> Report | None:
            try:
                return await self._execute(run_id, parameters, None)
            except Exception:
                log.exception("garbage collection %d failed", run_id)
                return None
            finally:
                await fsio.run(fsio.unlock_sync, fd)
                self._tasks.pop(run_id, None)

        self._tasks[run_id] = asyncio.create_task(background())
        return run_id

    async def _execute(self, run_id: int, parameters: Parameters, grace_period: float | None) -> Report:
        run = _RunLog(self.db, run_id)
        collector = self._collector(self._options(parameters, grace_period), run)
        await gc_runs.update(self.db, run_id, "Running")
        try:
            report = await collector.collect()
        except BaseException as e:
            run.note(f"[ERROR] collection failed: {e!r}")
            await run.flush(collector.report, "Error", force=True)
            raise
        finally:
            self._stops.discard(run_id)
        await run.flush(report, "Stopped" if report.stopped else "Success", force=True)
        metrics.GC_RUNS.inc()
        if not report.dry_run:
            metrics.GC_BYTES_FREED.inc(report.bytes_freed)
            metrics.GC_BLOBS_DELETED.inc(report.blobs_purged + report.orphans_purged)
        return report

    async def stop(self, run_id: int) -> None:
        """Ask a running collection to stop after its current batch (any process)."""
        self._stops.add(run_id)
        await gc_runs.request_stop(self.db, run_id)

    async def close(self) -> None:
        """At shutdown: stop background collections between batches and wait for them."""
        for run_id in list(self._tasks):
            await self.stop(run_id)
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=CLOSE_TIMEOUT)

    # -- history and schedule ----------------------------------------------------------

    async def history(self, offset: int, limit: int) -> tuple[list[gc_runs.RunRow], int]:
        return await gc_runs.page(self.db, offset, limit)

    async def get_run(self, run_id: int) -> gc_runs.RunRow | None:
        return await gc_runs.get(self.db, run_id)

    async def log(self, run_id: int) -> str:
        return await gc_runs.log_of(self.db, run_id) or ""

    async def schedule(self) -> gc_runs.ScheduleRow | None:
        return await gc_runs.schedule(self.db)

    async def set_schedule(self, type_: str, cron: str, parameters: Parameters) -> None:
        """Store the periodic schedule (type ``None`` removes it); cron checked already."""
        await gc_runs.set_schedule(self.db, type_, cron, parameters.as_dict())
        self.schedule_changed.set()

    # -- the schedule ------------------------------------------------------------------

    async def scheduler(self) -> None:
        """Run scheduled collections; also recover trash a dead collection left."""
        schedule: gc_runs.ScheduleRow | None = None
        due: datetime | None = None
        while True:
            self.schedule_changed.clear()
            current = await gc_runs.schedule(self.db)
            if current != schedule:
                schedule = current
                due = Cron.parse(schedule.cron).next_after(datetime.now(UTC)) if schedule else None
                if due is not None:
                    log.info("next scheduled garbage collection at %s", due.isoformat())
            wait = SCHEDULE_POLL if due is None else (due - datetime.now(UTC)).total_seconds()
            try:
                await asyncio.wait_for(self.schedule_changed.wait(), max(0.0, min(wait, SCHEDULE_POLL)))
                continue
            except TimeoutError:
                pass
            if schedule is not None and due is not None and datetime.now(UTC) >= due:
                await self._run_scheduled(schedule)
                due = Cron.parse(schedule.cron).next_after(max(due, datetime.now(UTC)))
            elif await fsio.run(fsio.listdir_sync, self.store.layout.trash):
                await self.recover()

    async def _run_scheduled(self, schedule: gc_runs.ScheduleRow) -> None:
        # Several worker processes each run a scheduler: the lock lets one collect, and a
        # scheduled run recorded in the last minute means another worker just did.
        recent, _ = await gc_runs.page(self.db, 0, 1)
        if recent and recent[0].kind == "SCHEDULE" and time.time() - recent[0].created_at < 60:
            return
        parameters = Parameters.of(schedule.parameters, self.config.gc.delete_untagged)
        try:
            await self.run(parameters, "SCHEDULE", schedule.type)
        except GCBusyError:
            log.info("scheduled garbage collection skipped: another one is running")
        except Exception:
            log.exception("scheduled garbage collection failed")


async def collect_once(
    config: Config, parameters: Parameters, grace_period: float | None = None
) -> tuple[int, Report]:
    """One collection on ``config``'s data directory from outside the daemon (``regd
    gc``), safe while a daemon serves the same directory: it opens its own connections,
    and SQLite's write lock and ``gc.lock`` order it against everything else."""
    from regd.storage.layout import Layout

    layout = Layout(config.data_dir)
    db = Database(layout.database)
    store = BlobStore(layout, fsync=config.storage.fsync)
    await store.prepare()
    await db.open()
    try:
        service = GCService(config, db, store, UploadService(db, store, layout))
        return await service.run(parameters, grace_period=grace_period)
    finally:
        await db.close()
