"""The content-addressed blob store (blobs and manifest bytes) on the local file system."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from regd.digest import Digest
from regd.storage import fsio
from regd.storage.layout import Layout


class BlobStore:
    def __init__(self, layout: Layout, fsync: bool = True) -> None:
        self.layout = layout
        self.fsync = fsync

    def path(self, digest: Digest) -> Path:
        return self.layout.blob(digest)

    async def prepare(self) -> None:
        await fsio.run(fsio.makedirs_sync, *self.layout.directories())

    async def size(self, digest: Digest) -> int | None:
        return await fsio.run(fsio.size_sync, self.path(digest))

    async def place(self, src: Path, digest: Digest) -> bool:
        """Publish a fully written file as ``digest`` (fsync, hard link, fsync dir);
        ``src`` stays until the caller's metadata transaction is done with it. Whether
        the file is new (False: the blob's file was there already)."""
        return await fsio.run(fsio.link_sync, src, self.path(digest), self.fsync)

    async def confirm(self, src: Path, digest: Digest) -> None:
        """Inside the transaction that records the blob: make sure the file is still
        there (a collection may have swept it since ``place``) and put it back if not."""
        await fsio.run(self.confirm_sync, src, digest)

    def confirm_sync(self, src: Path, digest: Digest) -> None:
        """``confirm``, blocking (in a thread, or a one-hop transaction's body)."""
        if not fsio.exists_sync(self.path(digest)):
            fsio.link_sync(src, self.path(digest), self.fsync)

    async def write_tmp(self, digest: Digest, data: bytes) -> Path:
        """Write small content (a manifest) to a temporary file, to ``place`` it next."""
        tmp = self.layout.tmp / f"{digest.hex}.{secrets.token_hex(8)}"
        await fsio.run(_write_sync, tmp, data)
        return tmp

    async def discard(self, path: Path) -> None:
        await fsio.run(fsio.unlink_sync, path)

    async def read(self, digest: Digest) -> bytes:
        return await fsio.run(fsio.read_file_sync, self.path(digest))

    async def read_small(self, digest: Digest, limit: int) -> bytes | None:
        """A blob's bytes if it holds at most ``limit`` of them, else None."""
        return await fsio.run(fsio.read_at_most_sync, self.path(digest), limit)

    async def move_to_trash(self, digest: Digest) -> Path | None:
        """Take a blob out of the store (atomic rename); None when it was not there."""
        dest = self.layout.trash / f"{digest.hex}.{secrets.token_hex(8)}"
        moved = await fsio.run(fsio.rename_sync, self.path(digest), dest)
        return dest if moved else None

    async def move_all_to_trash(self, digests: Sequence[Digest], pause: float = 0.0) -> list[Path | None]:
        """``move_to_trash`` for many blobs in one thread hand-off (a collector's batch,
        inside its write transaction: the fewer hops, the shorter the write lock). All or
        nothing: a failure puts back what was moved, then raises. ``pause``: seconds
        after each file (the collector's test hook)."""
        return await fsio.run(self._move_all_sync, list(digests), pause)

    def _move_all_sync(self, digests: list[Digest], pause: float) -> list[Path | None]:
        moved: list[Path | None] = []
        try:
            for digest in digests:
                dest = self.layout.trash / f"{digest.hex}.{secrets.token_hex(8)}"
                moved.append(dest if fsio.rename_sync(self.path(digest), dest) else None)
                if pause:
                    time.sleep(pause)
        except BaseException:
            for digest, trashed in zip(digests, moved, strict=False):
                if trashed is not None:
                    fsio.rename_sync(trashed, self.path(digest))
            raise
        return moved

    async def restore_from_trash(self, trashed: Path, digest: Digest) -> None:
        await fsio.run(fsio.rename_sync, trashed, self.path(digest))

    async def unlink(self, path: Path) -> None:
        await fsio.run(self.remove_sync, [path])

    def remove_sync(self, paths: Sequence[Path]) -> None:
        """Remove blob files for good (trash, strays); blocking. Waits while a backup
        runs (it holds ``backup.lock``): a file its database snapshot still references
        must stay in ``blobs/`` or ``trash/`` until it has been linked or copied."""
        if not paths:
            return
        fd = os.open(self.layout.backup_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            for path in paths:
                fsio.unlink_sync(path)
        finally:
            os.close(fd)  # drops the lock

    async def exists(self, digest: Digest) -> bool:
        return await fsio.run(fsio.exists_sync, self.path(digest))

    def walk_sync(self) -> Iterator[tuple[Digest | None, Path, os.stat_result]]:
        """Every file under blobs/ (for the collector's orphan sweep); blocking."""
        for dirpath, _dirs, files in os.walk(self.layout.blobs):
            for name in files:
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                yield self.layout.digest_of_blob_path(path), path, st


def _write_sync(path: Path, data: bytes) -> None:
    """Write a whole file or none: a write cut short (a full disk) leaves nothing behind."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except BaseException:
        fsio.unlink_sync(path)
        raise
