"""One collection: recover the trash, expire uploads, mark, sweep manifests, sweep blobs,
sweep orphan files. The protocol and why it is safe online are in ``regd.gc``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from regd.digest import Digest
from regd.metadata import signatures
from regd.metadata import uploads as upload_rows
from regd.metadata.db import Database, fetchall
from regd.storage import fsio
from regd.storage.blobstore import BlobStore
from regd.uploads.session import UploadService

log = logging.getLogger("regd.gc")

# Test-only: seconds to sleep after each file moved to trash/ inside a sweep transaction
# and again before the trash is emptied, so that a test can kill -9 a collection mid-sweep.
# Not a setting (REGD_<SECTION>_<KEY> names are settings; TESTHOOK is no section).
SLOWDOWN_ENV = "REGD_TESTHOOK_GC_SWEEP_DELAY"

BATCH_SIZE = 256  # candidates per write transaction: holds the write lock for milliseconds
SCAN_CHUNK = 1000  # orphan scan: files stat'ed per thread hand-off
LOGGED_ITEMS = 1000  # per-item lines in a run's log; past that only counts
PROGRESS_INTERVAL = 5.0  # seconds between progress lines while a collection runs
MAX_MANIFEST_PASSES = 16  # delete_untagged: each pass peels one level (index, child, referrer)
# tmp/ holds manifests being written by a PUT in flight (its source for BlobStore.confirm):
# only files older than this (and the grace period) are a crash's leftovers.
TMP_MIN_AGE = 3600.0


@dataclass(frozen=True)
class Options:
    grace_period: float
    delete_untagged: bool = False
    dry_run: bool = False
    upload_expiry: float = 24 * 3600.0
    batch_size: int = BATCH_SIZE

    @property
    def blob_cutoff_age(self) -> float:
        # A HEAD refreshes last_seen at most every grace/2 (Registry.blob_size), so a blob
        # confirmed at any moment has last_seen within grace/2 before it: keeping blobs
        # 1.5 grace periods past last_seen keeps every confirmed blob a full grace period.
        return 1.5 * self.grace_period


@dataclass
class Report:
    dry_run: bool
    delete_untagged: bool
    started_at: float = field(default_factory=time.time)
    duration: float = 0.0
    manifests_purged: int = 0
    blobs_purged: int = 0
    orphans_purged: int = 0
    bytes_freed: int = 0
    uploads_expired: int = 0
    trash_restored: int = 0
    trash_removed: int = 0
    stopped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "could free" if self.dry_run else "freed"
        return (
            f"{verb} {human_bytes(self.bytes_freed)} ({self.bytes_freed} bytes): "
            f"{self.manifests_purged} manifests, {self.blobs_purged} blobs, "
            f"{self.orphans_purged} orphan files; {self.uploads_expired} expired uploads; "
            f"in {self.duration:.2f}s" + (" (stopped)" if self.stopped else "")
        )


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


class StopRequestedError(Exception):
    """Raised between batches when someone asked the collection to stop."""


Note = Callable[[str], None]
StopCheck = Callable[[], Awaitable[bool]]
Progress = Callable[["Report"], Awaitable[None]]


async def _never() -> bool:
    return False


async def _nothing(report: Report) -> None:
    return None


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _take(iterator: Iterator[Any], n: int) -> list[Any]:
    return list(itertools.islice(iterator, n))


# -- the mark ------------------------------------------------------------------------
# Live manifests: tagged ones, untagged ones pushed (or re-pushed) within the grace
# period, and everything a live manifest reaches: the children of a live index and the
# referrers of a live subject, in the same repository. Only used with delete_untagged;
# without it every manifest row is live.
_LIVE = """
WITH RECURSIVE live(id) AS (
    SELECT m.id FROM manifests m
    WHERE m.pushed_at > :cutoff
       OR EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
       OR EXISTS (SELECT 1 FROM blobs b WHERE b.digest = m.digest AND b.last_seen > :cutoff)
    UNION
    SELECT c.id FROM live
        JOIN manifests p ON p.id = live.id
        JOIN manifest_children mc ON mc.parent_id = p.id
        JOIN manifests c ON c.repository_id = p.repository_id AND c.digest = mc.child_digest
    UNION
    SELECT r.id FROM live
        JOIN manifests p ON p.id = live.id
        JOIN manifests r ON r.repository_id = p.repository_id AND r.subject = p.digest
)
SELECT m.id, m.digest FROM manifests m WHERE m.id NOT IN (SELECT id FROM live) ORDER BY m.id
"""

# Re-checked inside the deleting transaction, one manifest at a time against the
# database as it is then: untagged, past the grace period, listed by no index of its
# repository, and no referrer of a manifest the repository still holds. A manifest whose
# (dead) parent or subject still stands waits for the next pass.
_MANIFEST_STILL_DEAD = """
SELECT m.id, m.digest, m.size FROM manifests m
WHERE m.id IN ({ids}) AND m.pushed_at <= ?
  AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
  AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = m.digest AND b.last_seen > ?)
  AND NOT EXISTS (
      SELECT 1 FROM manifest_children mc JOIN manifests p ON p.id = mc.parent_id
      WHERE mc.child_digest = m.digest AND p.repository_id = m.repository_id)
  AND (m.subject IS NULL OR NOT EXISTS (
      SELECT 1 FROM manifests s WHERE s.repository_id = m.repository_id AND s.digest = m.subject))
"""

# A blob nothing references: no manifest is made of its bytes and none lists it as a
# config or layer (foreign layers included, so a foreign layer that was uploaded anyway
# stays while referenced), and last seen (uploaded, mounted, HEAD) before the cutoff.
_UNREFERENCED = """
SELECT b.digest, b.size FROM blobs b
WHERE b.last_seen <= ?
  AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
  AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.digest = b.digest)
"""


class Collector:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        uploads: UploadService,
        options: Options,
        note: Note | None = None,
        should_stop: StopCheck = _never,
        progress: Progress = _nothing,
    ) -> None:
        self.db = db
        self.store = store
        self.layout = store.layout
        self.uploads = uploads
        self.options = options
        self.report = Report(options.dry_run, options.delete_untagged)
        self._note_hook = note
        self._should_stop = should_stop
        self._progress = progress
        self._items_logged = 0
        self._noted_at = time.monotonic()
        self._slowdown = float(os.environ.get(SLOWDOWN_ENV, "0") or 0)

    # -- reporting ---------------------------------------------------------------------

    def note(self, line: str) -> None:
        log.info("%s", line)
        if self._note_hook is not None:
            self._note_hook(line)

    def _item(self, line: str) -> None:
        """One deleted (or deletable) item: logged up to LOGGED_ITEMS per run."""
        self._items_logged += 1
        if self._items_logged <= LOGGED_ITEMS:
            self.note(line)
        elif self._items_logged == LOGGED_ITEMS + 1:
            self.note(f"(further items are counted, not listed, past {LOGGED_ITEMS})")

    async def _checkpoint(self) -> None:
        now = time.monotonic()
        if now - self._noted_at >= PROGRESS_INTERVAL:
            self._noted_at = now
            r = self.report
            self.note(
                f"progress: {r.manifests_purged} manifests, {r.blobs_purged} blobs, "
                f"{r.orphans_purged} orphan files, {human_bytes(r.bytes_freed)} so far"
            )
        await self._progress(self.report)
        if await self._should_stop():
            raise StopRequestedError

    # -- the collection ----------------------------------------------------------------

    async def collect(self) -> Report:
        """Run every phase; the caller holds the collection lock (one at a time)."""
        o = self.options
        self.note(
            f"garbage collection starts: grace_period={o.grace_period:g}s "
            f"delete_untagged={o.delete_untagged} dry_run={o.dry_run}"
        )
        started = time.monotonic()
        try:
            await self.recover_trash()
            await self._expire_uploads()
            dead: list[int] = []
            if o.delete_untagged:
                dead = await self._sweep_manifests()
            await self._sweep_blobs(dead)
            await self._sweep_orphans()
        except StopRequestedError:
            self.report.stopped = True
            self.note("stopped on request; what was swept so far stays swept")
        self.report.duration = time.monotonic() - started
        self.note(("dry run: " if o.dry_run else "") + self.report.summary())
        await self._progress(self.report)
        return self.report

    async def recover_trash(self) -> None:
        """Finish or undo what a collection cut off mid-sweep left in trash/: a file whose
        blob row exists (its transaction never committed) goes back, others go."""
        names = await fsio.run(fsio.listdir_sync, self.layout.trash)
        for chunk in _chunks(sorted(names), 500):
            digests = {name: self.layout.digest_of_trash_name(name) for name in chunk}
            wanted = sorted({str(d) for d in digests.values() if d is not None})
            known = {
                r[0]
                for r in await self.db.fetchall(
                    f"SELECT digest FROM blobs WHERE digest IN ({_marks(len(wanted))})", wanted
                )
            }
            for name, digest in digests.items():
                path = self.layout.trash / name
                if digest is not None and str(digest) in known:
                    await self.store.restore_from_trash(path, digest)
                    self.report.trash_restored += 1
                elif not self.options.dry_run:
                    await self.store.unlink(path)
                    self.report.trash_removed += 1
        if self.report.trash_restored or self.report.trash_removed:
            self.note(
                f"trash recovered: {self.report.trash_restored} blobs restored, "
                f"{self.report.trash_removed} leftovers removed"
            )

    async def _expire_uploads(self) -> None:
        now = time.time()
        if self.options.dry_run:
            stale = await upload_rows.older_than(self.db, now - self.options.upload_expiry)
            self.report.uploads_expired = len(stale)
        else:
            self.report.uploads_expired = await self.uploads.expire(self.options.upload_expiry, now)
        if self.report.uploads_expired:
            self.note(
                f"upload sessions idle over {self.options.upload_expiry:g}s: {self.report.uploads_expired}"
            )

    # -- manifests (delete_untagged) -----------------------------------------------------

    async def _dead_manifests(self) -> list[tuple[int, str]]:
        cutoff = time.time() - self.options.grace_period
        rows = await self.db.fetchall(_LIVE, {"cutoff": cutoff})
        return [(int(r[0]), r[1]) for r in rows]

    async def _sweep_manifests(self) -> list[int]:
        """Delete untagged manifests nothing live reaches, pass after pass (a child goes
        in the pass after its index); returns the ids a dry run would delete."""
        dead = await self._dead_manifests()
        self.note(f"mark: {len(dead)} untagged manifests unreachable from tags")
        if self.options.dry_run:
            for _, digest in dead:
                self._item(f"manifest eligible for deletion: {digest}")
            self.report.manifests_purged = len(dead)
            return [i for i, _ in dead]
        for _ in range(MAX_MANIFEST_PASSES):
            deleted = 0
            for chunk in _chunks([i for i, _ in dead], self.options.batch_size):
                deleted += await self._delete_manifest_batch(chunk)
                await self._checkpoint()
            if deleted == 0:
                break
            dead = await self._dead_manifests()
            if not dead:
                break
        return []

    async def _delete_manifest_batch(self, ids: Sequence[int]) -> int:
        async with self.db.transaction() as conn:
            cutoff = time.time() - self.options.grace_period
            rows = await fetchall(
                conn, _MANIFEST_STILL_DEAD.format(ids=_marks(len(ids))), [*ids, cutoff, cutoff]
            )
            gone = [int(r[0]) for r in rows]
            if gone:
                # cosign's tag-scheme signatures go with their image: untagged here, the
                # next pass deletes them (a referrer needs nothing: its subject is gone).
                await signatures.untag_signatures_of(conn, gone)
                await conn.execute(f"DELETE FROM manifests WHERE id IN ({_marks(len(gone))})", gone)
        for row in rows:
            self._item(f"manifest deleted: {row[1]}")
        self.report.manifests_purged += len(gone)
        return len(gone)

    # -- blobs -----------------------------------------------------------------------

    async def _sweep_blobs(self, dead_manifests: list[int]) -> None:
        """Page through unreferenced blobs in digest order (bounded memory) and sweep
        each page in one short write transaction."""
        after = ""
        while True:
            cutoff = time.time() - self.options.blob_cutoff_age
            rows = await self.db.fetchall(
                _UNREFERENCED + " AND b.digest > ? ORDER BY b.digest LIMIT ?",
                (cutoff, after, self.options.batch_size),
            )
            if not rows:
                break
            after = rows[-1][0]
            if self.options.dry_run:
                for digest, size in rows:
                    self._item(f"blob eligible for deletion: {digest} ({size} bytes)")
                    self.report.blobs_purged += 1
                    self.report.bytes_freed += int(size)
            else:
                await self._sweep_blob_batch([r[0] for r in rows])
            await self._checkpoint()
        if self.options.dry_run and dead_manifests:
            await self._count_freed_by(dead_manifests)
        self.note(f"blobs: {self.report.blobs_purged} unreferenced")

    async def _sweep_blob_batch(self, digests: list[str]) -> None:
        """Re-check, delete the rows and move the files to trash/ in ONE transaction, so a
        commit that re-links a blob (BlobStore.confirm) runs wholly before or after it;
        empty the trash once committed. A failure puts the moved files back."""
        moved: list[tuple[Path, Digest, int]] = []
        try:
            async with self.db.transaction() as conn:
                cutoff = time.time() - self.options.blob_cutoff_age
                rows = await fetchall(
                    conn, _UNREFERENCED + f" AND b.digest IN ({_marks(len(digests))})", [cutoff, *digests]
                )
                if not rows:
                    return
                gone = [r[0] for r in rows]
                # repository_blobs links go with the rows (ON DELETE CASCADE).
                await conn.execute(f"DELETE FROM blobs WHERE digest IN ({_marks(len(gone))})", gone)
                parsed = [Digest.parse(r[0]) for r in rows]
                placed = await self.store.move_all_to_trash(parsed, self._slowdown)
                moved = [(t, d, int(r[1])) for t, d, r in zip(placed, parsed, rows, strict=True) if t]
        except BaseException:
            for trashed, digest, _ in moved:
                await self.store.restore_from_trash(trashed, digest)
            raise
        for digest_text, size in rows:
            self._item(f"blob deleted: {digest_text} ({size} bytes)")
        self.report.blobs_purged += len(rows)
        if self._slowdown:
            await asyncio.sleep(self._slowdown * len(moved))
        await fsio.run(self.store.remove_sync, [t for t, _, _ in moved])
        self.report.bytes_freed += sum(size for _, _, size in moved)

    async def _count_freed_by(self, dead: list[int]) -> None:
        """Dry run with delete_untagged: the blobs that deleting ``dead`` manifests would
        leave unreferenced (and past their grace), counted without deleting anything."""
        dead_set = set(dead)
        digests: set[str] = set()
        for chunk in _chunks(dead, 500):
            rows = await self.db.fetchall(
                f"SELECT digest FROM manifests WHERE id IN ({_marks(len(chunk))}) "
                f"UNION SELECT digest FROM manifest_blobs WHERE manifest_id IN ({_marks(len(chunk))})",
                [*chunk, *chunk],
            )
            digests.update(r[0] for r in rows)
        cutoff = time.time() - self.options.blob_cutoff_age
        for chunk in _chunks(sorted(digests), 500):
            users: dict[str, set[int]] = {d: set() for d in chunk}
            marks = _marks(len(chunk))
            rows = await self.db.fetchall(
                f"SELECT digest, id FROM manifests WHERE digest IN ({marks}) "
                f"UNION ALL SELECT digest, manifest_id FROM manifest_blobs WHERE digest IN ({marks})",
                [*chunk, *chunk],
            )
            for digest, manifest_id in rows:
                users[digest].add(int(manifest_id))
            freed = [d for d, ids in users.items() if ids <= dead_set]
            for digest, size in await self.db.fetchall(
                f"SELECT digest, size FROM blobs WHERE last_seen <= ? AND digest IN ({_marks(len(freed))})",
                [cutoff, *freed],
            ):
                self._item(f"blob eligible for deletion: {digest} ({size} bytes)")
                self.report.blobs_purged += 1
                self.report.bytes_freed += int(size)

    # -- orphan files ------------------------------------------------------------------

    async def _sweep_orphans(self) -> None:
        """Files under blobs/ that no row knows (a crash between link and commit), and
        stray files in blobs/ and tmp/, once older than the grace period (mtime)."""
        walk = self.store.walk_sync()
        while chunk := await fsio.run(_take, walk, SCAN_CHUNK):
            cutoff = time.time() - self.options.grace_period
            old = [(d, p, st.st_size) for d, p, st in chunk if st.st_mtime <= cutoff]
            for digest, path, size in old:
                if digest is None:
                    await self._remove_stray(path, size)
            named = {str(d): (d, p, size) for d, p, size in old if d is not None}
            if named:
                await self._sweep_orphan_batch(named)
            await self._checkpoint()
        cutoff = time.time() - max(self.options.grace_period, TMP_MIN_AGE)
        for name in await fsio.run(fsio.listdir_sync, self.layout.tmp):
            path = self.layout.tmp / name
            mtime = await fsio.run(fsio.mtime_sync, path)
            if mtime is not None and mtime <= cutoff:
                size = await fsio.run(fsio.size_sync, path)
                await self._remove_stray(path, size or 0)
        if self.report.orphans_purged:
            self.note(f"orphan files: {self.report.orphans_purged}")

    async def _remove_stray(self, path: Path, size: int) -> None:
        self._item(f"stray file {'eligible for deletion' if self.options.dry_run else 'deleted'}: {path}")
        self.report.orphans_purged += 1
        self.report.bytes_freed += size
        if not self.options.dry_run:
            await self.store.unlink(path)

    async def _sweep_orphan_batch(self, named: dict[str, tuple[Digest, Path, int]]) -> None:
        keys = sorted(named)
        known_now = {
            r[0]
            for r in await self.db.fetchall(
                f"SELECT digest FROM blobs WHERE digest IN ({_marks(len(keys))})", keys
            )
        }
        orphans = [k for k in keys if k not in known_now]
        if not orphans:
            return
        if self.options.dry_run:
            for key in orphans:
                self._item(f"orphan blob file eligible for deletion: {key}")
                self.report.orphans_purged += 1
                self.report.bytes_freed += named[key][2]
            return
        moved: list[tuple[Path, int, str]] = []
        try:
            # Same rule as for rows: decide and move inside one write transaction, so an
            # upload committing this digest right now either sees the file gone (and
            # re-links it) or has its row in place before we look (and we keep the file).
            async with self.db.transaction() as conn:
                rows = await fetchall(
                    conn, f"SELECT digest FROM blobs WHERE digest IN ({_marks(len(orphans))})", orphans
                )
                known = {r[0] for r in rows}
                keys = [k for k in orphans if k not in known]
                placed = await self.store.move_all_to_trash([named[k][0] for k in keys])
                moved = [(t, named[k][2], k) for t, k in zip(placed, keys, strict=True) if t]
        except BaseException:
            for trashed, _, key in moved:
                await self.store.restore_from_trash(trashed, named[key][0])
            raise
        await fsio.run(self.store.remove_sync, [t for t, _, _ in moved])
        for _, size, key in moved:
            self._item(f"orphan blob file deleted: {key}")
            self.report.orphans_purged += 1
            self.report.bytes_freed += size
