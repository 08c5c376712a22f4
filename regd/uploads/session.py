"""Upload sessions: receive bytes to disk while hashing, commit them as a blob.

The session's state lives in SQLite (``metadata.uploads``) and its bytes in
``uploads/<id>/data``, so a session survives a restart and any worker process can
serve any request of it. The running sha256 lives only in this process (hashlib states
cannot be saved); a write that ends with it covering the whole file records the digests
in the session's row, for a commit in another process. When neither covers the file, the
commit re-hashes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiosqlite

from regd.digest import ContentHash, Digest
from regd.errors import ErrorCode, RegistryError, is_out_of_space
from regd.metadata import blobs as blob_rows
from regd.metadata import repositories
from regd.metadata import uploads as upload_rows
from regd.metadata.db import Database
from regd.metadata.uploads import UploadRow
from regd.storage import fsio
from regd.storage.appender import Appender
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout, is_upload_id
from regd.uploads.state import UploadEvent, UploadState

# Bytes gathered on the loop before one hand-off to a thread (hash and write). Two such
# lots per upload at most, one filling, one in the thread, and the thread's staging
# buffer (storage.appender): bounded memory per upload. 1 MiB rather than 256 KiB: a
# quarter of the hand-offs and of the GIL hand-overs they bring (benchmarks/RESULTS.md).
BUFFER_SIZE = 1024 * 1024
log = logging.getLogger("regd")

# writev takes at most IOV_MAX (1024) pieces; a client that trickles tiny chunks is
# handed off sooner.
MAX_CHUNKS = 512
# Running hashes kept per process (each a few hundred bytes).
MAX_RUNNING = 10_000


class ByteSource(Protocol):
    """What an upload reads: a request body (``api.http.BodyPieces``), or the proxy
    cache's paced view of an upstream response."""

    async def read_pieces(self) -> list[bytes]:
        """The bytes that arrived since the last call, as the pieces they came in (not
        joined: a join would copy them on the event loop); [] at the end."""
        ...


@runtime_checkable
class StageSource(Protocol):
    """A request body that puts its bytes straight into the upload's staging buffers
    (``api.direct.DirectBody``)."""

    async def fill(self, view: memoryview) -> int:
        """Put the next bytes at the front of ``view``: how many, 0 at the end."""
        ...


@dataclass
class _Progress:
    written: int = 0
    # Told the bytes of this append on disk each time more land (the proxy cache's tee
    # serves a blob to its readers from the upload file while it is being written).
    on_written: Callable[[int], None] | None = None

    def add(self, count: int) -> None:
        if not count:
            return
        self.written += count
        if self.on_written is not None:
            self.on_written(self.written)


@dataclass
class _RunningHash:
    size: int
    hasher: ContentHash  # sha256 and xxh3-128, in the same pass


class UploadService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        layout: Layout,
        max_per_repository: int = 0,
        max_per_account: int = 0,
        direct_writes: bool = True,
    ) -> None:
        self.db = db
        self.store = store
        self.layout = layout
        # Open sessions allowed per repository and per account (0: no limit). Each is a
        # directory, a row and a running hash until it ends or expires.
        self.max_per_repository = max_per_repository
        self.max_per_account = max_per_account
        # Whole blocks of upload bodies written with O_DIRECT (``storage.appender``).
        self.direct_writes = direct_writes
        self._hashes: dict[str, _RunningHash] = {}
        # Sessions a request of this process is writing or committing right now.
        self._busy: set[str] = set()

    # -- lookups ---------------------------------------------------------------

    def location(self, repository: str, upload_id: str) -> str:
        return f"/v2/{repository}/blobs/uploads/{upload_id}"

    async def get(self, repository: str, upload_id: str) -> UploadRow:
        """The live session ``upload_id`` of ``repository``, or BLOB_UPLOAD_UNKNOWN."""
        row = await upload_rows.get(self.db, upload_id) if is_upload_id(upload_id) else None
        if row is None or row.repository != repository:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, f"upload {upload_id[:64]!r} unknown")
        return row

    async def _check_room(self, conn: aiosqlite.Connection, repository: str, account: str) -> None:
        limits = [("repository", repository, self.max_per_repository)]
        if account:
            limits.append(("account", account, self.max_per_account))
        for column, value, limit in limits:
            if limit and await upload_rows.open_count(conn, column, value) >= limit:
                raise RegistryError(
                    ErrorCode.TOOMANYREQUESTS,
                    f"too many open upload sessions for {column} {value} (at most {limit}): "
                    "finish or cancel some, or wait until they expire",
                    headers={"Retry-After": "60"},
                )

    def _keep_hash(self, upload_id: str, running: _RunningHash) -> None:
        """Remember a session's running hash, forgetting the oldest beyond MAX_RUNNING:
        sessions another worker expired never come back here, and a forgotten hash only
        means the commit re-hashes the file."""
        self._hashes[upload_id] = running
        while len(self._hashes) > MAX_RUNNING:
            del self._hashes[next(iter(self._hashes))]

    def range_headers(self, repository: str, upload_id: str, size: int) -> dict[str, str]:
        # Docker's Range is inclusive; an empty session reports 0-0 (spec, "Pushing a blob in chunks").
        return {
            "Location": self.location(repository, upload_id),
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    def _range_invalid(self, row: UploadRow, message: str) -> RegistryError:
        return RegistryError(
            ErrorCode.RANGE_INVALID, message, headers=self.range_headers(row.repository, row.id, row.size)
        )

    # -- transitions -----------------------------------------------------------

    async def start(self, repository: str, account: str = "") -> UploadRow:
        """A new session; TOOMANYREQUESTS when the repository or the account already has
        as many open as allowed."""
        upload_id = secrets.token_hex(16)
        await fsio.run(fsio.makedirs_sync, self.layout.upload_dir(upload_id))
        now = time.time()

        async def open_session(conn: aiosqlite.Connection) -> None:
            await self._check_room(conn, repository, account)
            await upload_rows.create(conn, upload_id, repository, account, now)

        try:
            await self.db.run_transaction(open_session)
        except BaseException:
            await fsio.run(fsio.rmtree_sync, self.layout.upload_dir(upload_id))
            raise
        self._keep_hash(upload_id, _RunningHash(0, ContentHash()))
        return UploadRow(upload_id, repository, UploadState.ACTIVE, 0, now, now)

    async def append(
        self,
        row: UploadRow,
        body: ByteSource | StageSource,
        content_range: tuple[int, int] | None,
        content_length: int | None,
        on_written: Callable[[int], None] | None = None,
    ) -> UploadRow:
        """Stream one PATCH body (or a PUT's last chunk) onto the end of the session.
        ``on_written``: called with the bytes of this body on disk as they land."""
        expected: int | None = None
        if content_range is not None:
            start, end = content_range
            if start != row.size or end < start:
                raise self._range_invalid(row, f"chunk {start}-{end} does not continue at offset {row.size}")
            expected = end - start + 1
            if content_length is not None and content_length != expected:
                raise RegistryError(
                    ErrorCode.SIZE_INVALID,
                    f"Content-Length {content_length} does not match range {start}-{end}",
                )
        if not await self._take(row, UploadEvent.BEGIN_WRITE):
            current = await self.get(row.repository, row.id)
            raise self._range_invalid(current, "upload is being written by another request or has moved on")
        progress = _Progress(on_written=on_written)
        try:
            await self._receive(row, body, expected, progress)
        finally:
            # Shielded: a client that went away cancels the handler, and the session must
            # still leave RECEIVING with the size of what reached the disk.
            try:
                await asyncio.shield(self._end_write(row, expected, progress))
            finally:
                self._busy.discard(row.id)
        if expected is not None and progress.written != expected:
            raise RegistryError(
                ErrorCode.SIZE_INVALID, f"chunk of {progress.written} bytes, range said {expected}"
            )
        return UploadRow(
            row.id,
            row.repository,
            UploadState.ACTIVE,
            row.size + progress.written,
            row.created_at,
            row.updated_at,
        )

    async def _end_write(self, row: UploadRow, expected: int | None, progress: _Progress) -> None:
        written = progress.written
        if expected is not None and written != expected:
            # A chunk that came short or long is not kept: cut back to its start.
            await self._cut_back(row)
            written = 0
        size = row.size + written
        checksums = None
        running = self._hashes.get(row.id)
        if running is not None and running.size == size and running.hasher.algorithm == "sha256":
            checksums = f"{size}:{running.hasher.digest.hexdigest()}:{running.hasher.xxh3.hexdigest()}"
        try:
            await self.db.run_transaction(
                lambda conn: upload_rows.transition(
                    conn, row.id, UploadEvent.END_WRITE, size=size, checksums=checksums
                )
            )
        except Exception as exc:
            if not is_out_of_space(exc):
                raise
            # No room left for the database to record the write (its bytes, counted or
            # cut short, took the last of the disk): give them back and record the
            # session as it was before, so that it is not left held by this process and
            # resumes from there once space is freed.
            await self._cut_back(row)
            await self.db.run_transaction(
                lambda conn: upload_rows.transition(conn, row.id, UploadEvent.END_WRITE, size=row.size)
            )
            log.warning("upload %s: its last write given back: no room to record it", row.id)
            raise

    async def _cut_back(self, row: UploadRow) -> None:
        """Drop what this request wrote: the file back to the session's recorded size, and
        the running hash that covered more."""
        await fsio.run(fsio.truncate_sync, self.layout.upload_data(row.id), row.size)
        self._hashes.pop(row.id, None)

    async def _receive(
        self, row: UploadRow, body: ByteSource | StageSource, limit: int | None, progress: _Progress
    ) -> None:
        """Copy the body to the data file, hashing it, in BUFFER_SIZE hand-offs to a
        thread; ``progress.written`` counts the bytes in the file, also when this fails."""
        running = self._hashes.pop(row.id, None)
        if running is None and row.size == 0:
            running = _RunningHash(0, ContentHash())
        hasher = running.hasher if running is not None and running.size == row.size else None
        filled = isinstance(body, StageSource)
        appender = await fsio.run(
            Appender, self.layout.upload_data(row.id), row.size, self.direct_writes, self.store.fsync, filled
        )
        try:
            if isinstance(body, StageSource):
                await self._receive_filled(appender, hasher, body, limit, progress)
            else:
                await self._receive_pieces(appender, hasher, body, limit, progress)
        finally:
            # The running hash is kept only when it covers exactly the bytes in the file.
            if hasher is not None and appender.complete:
                self._keep_hash(row.id, _RunningHash(row.size + progress.written, hasher))

    async def _receive_filled(
        self,
        appender: Appender,
        hasher: ContentHash | None,
        body: StageSource,
        limit: int | None,
        progress: _Progress,
    ) -> None:
        """The body puts its bytes straight into the appender's two staging buffers on
        the loop, each handed to a thread to hash and write while the other fills."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[int] | None = None
        i, start = 0, appender.first_start
        handed = 0
        try:
            while n := await body.fill(appender.stage_view(i, start)):
                if pending is not None:
                    progress.add(await pending)
                pending = loop.run_in_executor(None, appender.filled_sync, i, start, n, hasher)
                handed += n
                if limit is not None and handed > limit:
                    break
                i, start = 1 - i, appender.next_start(start, n)
        finally:
            await asyncio.shield(self._flush(appender, hasher, pending, [], progress))

    async def _receive_pieces(
        self,
        appender: Appender,
        hasher: ContentHash | None,
        body: ByteSource,
        limit: int | None,
        progress: _Progress,
    ) -> None:
        loop = asyncio.get_running_loop()
        # Chunks as aiohttp delivered them, hashed one by one and staged (or written with
        # one writev) in the thread: no copy into a bigger buffer on the loop.
        buf: list[bytes] = []
        buffered = handed = 0
        pending: asyncio.Future[int] | None = None
        try:
            while pieces := await body.read_pieces():
                buf.extend(pieces)
                buffered += sum(map(len, pieces))
                if limit is not None and handed + buffered > limit:
                    break
                if buffered >= BUFFER_SIZE or len(buf) >= MAX_CHUNKS:
                    if pending is not None:
                        progress.add(await pending)
                    pending = loop.run_in_executor(None, appender.write_sync, buf, hasher)
                    handed += buffered
                    buf, buffered = [], 0
        finally:
            await asyncio.shield(self._flush(appender, hasher, pending, buf, progress))

    async def _flush(
        self,
        appender: Appender,
        hasher: ContentHash | None,
        pending: asyncio.Future[int] | None,
        buf: list[bytes],
        progress: _Progress,
    ) -> None:
        """Finish the hand-off in flight and write what is left; the bytes received so
        far are good (each arrived whole), so they are kept for a resume."""
        try:
            if pending is not None:
                progress.add(await pending)
            if buf:
                progress.add(await fsio.run(appender.write_sync, buf, hasher))
        finally:
            progress.add(await fsio.run(appender.close_sync))

    async def _take(self, row: UploadRow, event: UploadEvent) -> bool:
        """Move the session into RECEIVING or COMMITTING for this request (the row is the
        lock). A session left held by a request that can no longer let go of it is
        reclaimed first: one of this process whose release failed (a full disk refused
        the write), or one of a process that is gone."""
        for attempt in range(2):
            state = await self.db.run_transaction(
                lambda conn: upload_rows.transition(conn, row.id, event, expect_size=row.size)
            )
            if state is not None:
                self._busy.add(row.id)
                return True
            if attempt or not await self._reclaim(row.id):
                return False
        return False

    async def _reclaim(self, upload_id: str) -> bool:
        current = await upload_rows.get(self.db, upload_id)
        if current is None or current.state not in upload_rows.HELD or current.writer_pid is None:
            return False
        pid = current.writer_pid
        orphaned = upload_id not in self._busy if pid == os.getpid() else not _alive(pid)
        if not orphaned:
            return False
        async with self.db.transaction(bump=False) as conn:
            state = await upload_rows.transition(conn, upload_id, UploadEvent.RECOVER, expect_writer=pid)
        if state is not None:
            log.warning("upload %s: reclaimed from a writer that let go of it (pid %d)", upload_id, pid)
        return state is not None

    async def commit(self, row: UploadRow, digest: Digest) -> int:
        """Check the bytes against ``digest`` and store them as a blob of the repository."""
        if not await self._take(row, UploadEvent.COMMIT):
            current = await self.get(row.repository, row.id)
            raise self._range_invalid(current, "upload is being written by another request")
        try:
            return await self._commit(row, digest)
        finally:
            self._busy.discard(row.id)

    async def _commit(self, row: UploadRow, digest: Digest) -> int:
        data = self.layout.upload_data(row.id)
        try:
            actual, xxh3 = await self._digest_of(row, data, digest.algorithm)
            if actual != digest.hex:
                await self._finish(row, UploadEvent.REJECT)
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID, f"content is {digest.algorithm}:{actual}, not {digest}"
                )
            if row.size == 0:  # nothing was ever written: the empty blob has no file yet
                await fsio.run(fsio.close_sync, await fsio.run(fsio.open_for_append_sync, data, 0))
            await self.store.place(data, digest)

            async def record(conn: aiosqlite.Connection) -> None:
                self.store.confirm_sync(data, digest)  # on the writer's thread, off the loop
                await blob_rows.upsert(conn, str(digest), row.size, xxh3)
                repository_id = await repositories.ensure(conn, row.repository)
                await repositories.link_blob(conn, repository_id, str(digest))
                if await upload_rows.transition(conn, row.id, UploadEvent.COMMITTED) is None:
                    # Removed meanwhile (its project was deleted): link nothing.
                    raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, f"upload {row.id} was removed")
                await upload_rows.delete(conn, row.id)

            await self.db.run_transaction(record)
        except RegistryError:
            raise
        except BaseException:
            async with self.db.transaction(bump=False) as conn:
                await upload_rows.transition(conn, row.id, UploadEvent.RECOVER)
            raise
        await self._remove_data(row.id)
        return row.size

    async def _digest_of(self, row: UploadRow, data: Path, algorithm: str) -> tuple[str, str]:
        """The upload's digest in ``algorithm`` and its xxh3-128 checksum."""
        running = self._hashes.pop(row.id, None)
        if algorithm == "sha256" and running is not None and running.size == row.size:
            return running.hasher.digest.hexdigest(), running.hasher.xxh3.hexdigest()
        size = await fsio.run(fsio.size_sync, data)
        if size is not None and size > row.size:  # bytes of a write that did not end
            await fsio.run(fsio.truncate_sync, data, row.size)
        # Written by another worker process: the checksums its write ended with.
        size_text, _, sums = (row.checksums or "").partition(":")
        sha256, _, xxh3 = sums.partition(":")
        if algorithm == "sha256" and size_text == str(row.size) and sha256 and xxh3:
            return sha256, xxh3
        hasher = ContentHash(algorithm)
        await fsio.run(fsio.read_through_sync, data, hasher)
        return hasher.digest.hexdigest(), hasher.xxh3.hexdigest()

    async def _finish(self, row: UploadRow, event: UploadEvent) -> None:
        async with self.db.transaction(bump=False) as conn:
            await upload_rows.transition(conn, row.id, event)
            await upload_rows.delete(conn, row.id)
        await self._remove_data(row.id)

    async def _remove_data(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await fsio.run(fsio.rmtree_sync, self.layout.upload_dir(upload_id))

    async def discard(self, upload_ids: list[str]) -> None:
        """Delete the files of sessions whose rows are gone already."""
        for upload_id in upload_ids:
            await self._remove_data(upload_id)

    async def cancel(self, row: UploadRow) -> None:
        async with self.db.transaction(bump=False) as conn:
            state = await upload_rows.transition(conn, row.id, UploadEvent.CANCEL)
            if state is not None:
                await upload_rows.delete(conn, row.id)
        if state is None:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID, "upload is being written and cannot be cancelled now"
            )
        await self._remove_data(row.id)

    # -- lifecycle -------------------------------------------------------------

    async def recover(self) -> int:
        """At start: sessions cut off mid-write or mid-commit become ACTIVE again."""
        stuck = await upload_rows.in_states(self.db, [UploadState.RECEIVING, UploadState.COMMITTING])
        for row in stuck:
            async with self.db.transaction(bump=False) as conn:
                await upload_rows.transition(conn, row.id, UploadEvent.RECOVER)
        return len(stuck)

    async def expire(self, max_age: float, now: float) -> int:
        """Remove sessions idle longer than ``max_age`` and stray upload directories."""
        count = 0
        for row in await upload_rows.older_than(self.db, now - max_age):
            async with self.db.transaction(bump=False) as conn:
                state = await upload_rows.transition(conn, row.id, UploadEvent.EXPIRE)
                if state is not None:
                    await upload_rows.delete(conn, row.id)
            if state is not None:
                await self._remove_data(row.id)
                count += 1
        live = await upload_rows.ids(self.db)
        for name in await fsio.run(fsio.listdir_sync, self.layout.uploads):
            if name in live or not is_upload_id(name):
                continue
            mtime = await fsio.run(fsio.mtime_sync, self.layout.upload_dir(name))
            if mtime is not None and mtime < now - max_age:
                await self._remove_data(name)
        return count


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
