"""``regd backup DEST`` and ``regd restore BACKUP``: a consistent copy of a registry that
keeps serving, and bringing it back into an empty data directory.

Backup, safe beside a running daemon, its pushes and its collections:

1. ``backup.lock`` is taken exclusively for the whole backup. Every removal of a blob
   file for good (a collection emptying its trash, a stray file) takes it shared
   (``BlobStore.remove_sync``), so while the backup runs a file leaves ``blobs/`` at
   most for ``trash/``, never for nowhere. Pushes and collections go on; a collection
   only waits before its last, irreversible step.
2. The database is copied with SQLite's online backup API in one step: a snapshot as
   of one instant, taken beside the daemon's writers (WAL).
3. Every blob the snapshot lists (quarantined ones aside) is hard-linked into
   ``DEST/blobs/`` from ``blobs/`` or, if a collection moved it meanwhile, from
   ``trash/``; copied (and fsynced) when DEST is on another file system. Blob files are
   never modified in place, so a link is as good as a copy of the bytes; it is not a
   second copy on the disk: to survive the disk, copy DEST elsewhere (``cp -a``,
   ``rsync -H``, ``tar``).
4. ``auth/`` (the token signing key) is copied, so tokens issued before stay valid.

Restore: the data directory must be empty or missing; it is locked as a daemon would
lock it (so no daemon runs on it meanwhile), the database copied with the backup API
and checked (``PRAGMA quick_check``), blobs linked or copied back, upload sessions of
the snapshot dropped (their bytes are not part of a backup).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from regd.digest import Digest
from regd.storage.layout import Layout

# Test-only: seconds to wait between the database snapshot and the blob links, so that a
# test can let a collection commit its sweep in between (the window backup.lock covers).
PAUSE_ENV = "REGD_TESTHOOK_BACKUP_PAUSE"


class BackupError(Exception):
    """Ends ``regd backup`` or ``regd restore`` with one line."""


@dataclass
class Copied:
    blobs: int = 0
    linked: int = 0
    copied: int = 0
    missing: int = 0
    bytes: int = 0

    def summary(self) -> str:
        return (
            f"{self.blobs} blobs ({self.linked} hard-linked, {self.copied} copied, {self.bytes} bytes)"
            + (f", {self.missing} MISSING" if self.missing else "")
        )


def _empty_dir(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} must be an empty directory or not exist yet")
    path.mkdir(parents=True, exist_ok=True)


def _snapshot(source: Path, dest: Path) -> None:
    """Copy a live database with SQLite's online backup API, all pages in one step."""
    if not source.exists():
        raise BackupError(f"no database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    dst = sqlite3.connect(dest)
    try:
        src.execute("PRAGMA busy_timeout = 30000")
        src.backup(dst)  # pages=-1: one step, one read transaction, one instant
        dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
    finally:
        dst.close()
        src.close()


def _blob_digests(database: Path) -> list[Digest]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT digest FROM blobs WHERE quarantined_at IS NULL ORDER BY digest")
        return [Digest.parse(str(r[0])) for r in rows]
    finally:
        db.close()


def _place(src: Path, dest: Path, counts: Copied) -> None:
    """Hard-link ``src`` to ``dest``, or copy it (fsynced) across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
        counts.linked += 1
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, dest)
        counts.copied += 1
    counts.bytes += dest.stat().st_size


def _find(source: Layout, digest: Digest) -> list[Path]:
    """Where the bytes of ``digest`` may be: blobs/, else a collection's trash/."""
    trashed = sorted(source.trash.glob(f"{digest.hex}.*")) if source.trash.is_dir() else []
    return [source.blob(digest), *trashed]


def _copy_blobs(source: Layout, target: Layout, digests: list[Digest], counts: Copied) -> None:
    for digest in digests:
        counts.blobs += 1
        for attempt in range(3):  # a rename between blobs/ and trash/ may race a lookup
            placed = False
            for candidate in _find(source, digest):
                try:
                    _place(candidate, target.blob(digest), counts)
                except FileNotFoundError:
                    continue
                placed = True
                break
            if placed:
                break
            if attempt == 2:
                counts.missing += 1


def _copy_auth(source: Layout, target: Layout) -> None:
    if source.auth.is_dir():
        shutil.copytree(source.auth, target.auth, dirs_exist_ok=True)


def backup(data_dir: Path, dest: Path) -> Copied:
    source, target = Layout(data_dir), Layout(dest)
    if not source.database.exists():
        raise BackupError(f"no regd data directory at {data_dir} (no regd.db)")
    _empty_dir(dest, "backup destination")
    fd = os.open(source.backup_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup of {data_dir} is running") from None
        _snapshot(source.database, target.database)
        time.sleep(float(os.environ.get(PAUSE_ENV, "0") or 0))
        counts = Copied()
        _copy_blobs(source, target, _blob_digests(target.database), counts)
        _copy_auth(source, target)
    finally:
        os.close(fd)
    (dest / "BACKUP").write_text(
        f"regd backup of {data_dir.resolve()} taken {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
        f"{counts.summary()}\nrestore with: regd restore {dest} --data-dir EMPTY_DIRECTORY\n"
    )
    if counts.missing:
        raise BackupError(f"backup in {dest} is incomplete: {counts.summary()}")
    return counts


def restore(backup_dir: Path, data_dir: Path) -> Copied:
    from regd.datadir import DataDirBusyError, lock

    source, target = Layout(backup_dir), Layout(data_dir)
    if not source.database.exists():
        raise BackupError(f"{backup_dir} is not a regd backup (no regd.db)")
    _empty_dir(data_dir, "data directory")
    try:
        fd = lock(data_dir)  # no daemon may start on it halfway
    except DataDirBusyError as e:
        raise BackupError(str(e)) from None
    try:
        _snapshot(source.database, target.database)
        db = sqlite3.connect(target.database)
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise BackupError(f"the backup's database is damaged: {'; '.join(problems)[:200]}")
            db.execute("DELETE FROM uploads")  # their bytes are not part of a backup
            db.commit()
        finally:
            db.close()
        counts = Copied()
        _copy_blobs(source, target, _blob_digests(target.database), counts)
        _copy_auth(source, target)
    finally:
        os.close(fd)
    if counts.missing:
        raise BackupError(f"restore into {data_dir} is incomplete: {counts.summary()}")
    return counts
