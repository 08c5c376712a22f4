"""Upload sessions: receive bytes to disk while hashing, commit them as a blob.

The session's state lives in SQLite (``metadata.uploads``) and its bytes in
``uploads/<id>/data``, so a session survives a restart and any worker process can
serve any request of it. The running sha256 lives only in this process; when it is
missing or stale, the commit re-hashes the file (hashlib states cannot be saved).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.metadata import blobs as blob_rows
from regd.metadata import repositories
from regd.metadata import uploads as upload_rows
from regd.metadata.db import Database
from regd.metadata.uploads import UploadRow
from regd.storage import fsio
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout, is_upload_id
from regd.uploads.state import UploadEvent, UploadState

# Bytes gathered on the loop before one hand-off to a thread (write + hash). Two such
# buffers per upload at most: one filling, one in the thread. Bounded memory per upload.
BUFFER_SIZE = 256 * 1024
# writev takes at most IOV_MAX (1024) pieces; a client that trickles tiny chunks is
# handed off sooner.
MAX_CHUNKS = 512


class ByteSource(Protocol):
    """What an upload reads: a request body (aiohttp's StreamReader), or the proxy
    cache's paced view of an upstream response."""

    async def readany(self) -> bytes: ...


@dataclass
class _Progress:
    written: int = 0
    # Told the bytes of this append on disk each time more land (the proxy cache's tee
    # serves a blob to its readers from the upload file while it is being written).
    on_written: Callable[[int], None] | None = None

    def add(self, count: int) -> None:
        self.written += count
        if self.on_written is not None:
            self.on_written(self.written)


@dataclass
class _RunningHash:
    size: int
    hasher: hashlib._Hash


class UploadService:
    def __init__(self, db: Database, store: BlobStore, layout: Layout) -> None:
        self.db = db
        self.store = store
        self.layout = layout
        self._hashes: dict[str, _RunningHash] = {}

    # -- lookups ---------------------------------------------------------------

    def location(self, repository: str, upload_id: str) -> str:
        return f"/v2/{repository}/blobs/uploads/{upload_id}"

    async def get(self, repository: str, upload_id: str) -> UploadRow:
        """The live session ``upload_id`` of ``repository``, or BLOB_UPLOAD_UNKNOWN."""
        row = await upload_rows.get(self.db, upload_id) if is_upload_id(upload_id) else None
        if row is None or row.repository != repository:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, f"upload {upload_id[:64]!r} unknown")
        return row

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

    async def start(self, repository: str) -> UploadRow:
        upload_id = secrets.token_hex(16)
        await fsio.run(fsio.makedirs_sync, self.layout.upload_dir(upload_id))
        async with self.db.transaction(bump=False) as conn:
            await upload_rows.create(conn, upload_id, repository)
        self._hashes[upload_id] = _RunningHash(0, hashlib.sha256())
        return await self.get(repository, upload_id)

    async def append(
        self,
        row: UploadRow,
        body: ByteSource,
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
        async with self.db.transaction(bump=False) as conn:
            began = await upload_rows.transition(conn, row.id, UploadEvent.BEGIN_WRITE, expect_size=row.size)
        if began is None:
            current = await self.get(row.repository, row.id)
            raise self._range_invalid(current, "upload is being written by another request or has moved on")
        progress = _Progress(on_written=on_written)
        try:
            await self._receive(row, body, expected, progress)
        finally:
            # Shielded: a client that went away cancels the handler, and the session must
            # still leave RECEIVING with the size of what reached the disk.
            await asyncio.shield(self._end_write(row, expected, progress))
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
            await fsio.run(fsio.truncate_sync, self.layout.upload_data(row.id), row.size)
            self._hashes.pop(row.id, None)
            written = 0
        async with self.db.transaction(bump=False) as conn:
            await upload_rows.transition(conn, row.id, UploadEvent.END_WRITE, size=row.size + written)

    async def _receive(
        self, row: UploadRow, body: ByteSource, limit: int | None, progress: _Progress
    ) -> None:
        """Copy the body to the data file, hashing it, in BUFFER_SIZE hand-offs to a
        thread; ``progress.written`` counts the bytes on disk, also when this fails."""
        running = self._hashes.pop(row.id, None)
        if running is None and row.size == 0:
            running = _RunningHash(0, hashlib.sha256())
        hasher = running.hasher if running is not None and running.size == row.size else None
        fd = await fsio.run(fsio.open_for_append_sync, self.layout.upload_data(row.id), row.size)
        loop = asyncio.get_running_loop()
        # Chunks as aiohttp delivered them, written with one writev and hashed one by one
        # in the thread: no copy into a bigger buffer on the loop.
        buf: list[bytes] = []
        buffered = 0
        pending: asyncio.Future[None] | None = None
        pending_len = 0
        try:
            while chunk := await body.readany():
                buf.append(chunk)
                buffered += len(chunk)
                if limit is not None and progress.written + pending_len + buffered > limit:
                    break
                if buffered >= BUFFER_SIZE or len(buf) >= MAX_CHUNKS:
                    if pending is not None:
                        await pending
                        progress.add(pending_len)
                    pending = loop.run_in_executor(
                        None, fsio.write_and_hash_sync, fd, hasher, buf, self.store.fsync
                    )
                    pending_len = buffered
                    buf, buffered = [], 0
        finally:
            await asyncio.shield(self._flush(fd, hasher, pending, pending_len, buf, progress))
            if hasher is not None:
                self._hashes[row.id] = _RunningHash(row.size + progress.written, hasher)

    async def _flush(
        self,
        fd: int,
        hasher: hashlib._Hash | None,
        pending: asyncio.Future[None] | None,
        pending_len: int,
        buf: list[bytes],
        progress: _Progress,
    ) -> None:
        """Finish the hand-off in flight and write what is left; the bytes received so
        far are good (each arrived whole), so they are kept for a resume."""
        try:
            if pending is not None:
                await pending
                progress.add(pending_len)
            if buf:
                await fsio.run(fsio.write_and_hash_sync, fd, hasher, buf)
                progress.add(sum(map(len, buf)))
        finally:
            await fsio.run(fsio.close_sync, fd)

    async def commit(self, row: UploadRow, digest: Digest) -> int:
        """Check the bytes against ``digest`` and store them as a blob of the repository."""
        async with self.db.transaction(bump=False) as conn:
            state = await upload_rows.transition(conn, row.id, UploadEvent.COMMIT, expect_size=row.size)
        if state is None:
            current = await self.get(row.repository, row.id)
            raise self._range_invalid(current, "upload is being written by another request")
        data = self.layout.upload_data(row.id)
        try:
            actual = await self._digest_of(row, data, digest.algorithm)
            if actual != digest.hex:
                await self._finish(row, UploadEvent.REJECT)
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID, f"content is {digest.algorithm}:{actual}, not {digest}"
                )
            await self.store.place(data, digest)
            async with self.db.transaction(bump=False) as conn:
                await self.store.confirm(data, digest)
                await blob_rows.upsert(conn, str(digest), row.size)
                repository_id = await repositories.ensure(conn, row.repository)
                await repositories.link_blob(conn, repository_id, str(digest))
                await upload_rows.transition(conn, row.id, UploadEvent.COMMITTED)
                await upload_rows.delete(conn, row.id)
        except RegistryError:
            raise
        except BaseException:
            async with self.db.transaction(bump=False) as conn:
                await upload_rows.transition(conn, row.id, UploadEvent.RECOVER)
            raise
        await self._remove_data(row.id)
        return row.size

    async def _digest_of(self, row: UploadRow, data: Path, algorithm: str) -> str:
        running = self._hashes.pop(row.id, None)
        if algorithm == "sha256" and running is not None and running.size == row.size:
            return running.hasher.hexdigest()
        size = await fsio.run(fsio.size_sync, data)
        if size is not None and size > row.size:
            await fsio.run(fsio.truncate_sync, data, row.size)
        return await fsio.run(fsio.hash_file_sync, data, algorithm)

    async def _finish(self, row: UploadRow, event: UploadEvent) -> None:
        async with self.db.transaction(bump=False) as conn:
            await upload_rows.transition(conn, row.id, event)
            await upload_rows.delete(conn, row.id)
        await self._remove_data(row.id)

    async def _remove_data(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await fsio.run(fsio.rmtree_sync, self.layout.upload_dir(upload_id))

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
