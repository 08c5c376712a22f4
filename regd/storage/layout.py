"""The on-disk layout: the one module that builds paths under the data directory.

    <data_dir>/
      regd.db, regd.db-wal, regd.db-shm   metadata (SQLite, WAL)
      blobs/<algorithm>/<hex[0:2]>/<hex>   content-addressed blobs, manifests included;
                                           a file here always holds exactly the bytes
                                           of its digest (it arrives by atomic rename
                                           of a fully written, fsynced file)
      uploads/<upload id>/data             bytes of an upload session in progress
      trash/<hex>.<random>                 blobs a collection is sweeping (regd.gc: a file
                                           here whose blob row exists goes back, others go)
      gc.lock                              flock held by the one running collection
      quarantine/<hex>.<random>            blob files a scrub found damaged (regd.scrub)
      scrub.lock                           flock held by the one running scrub
      backup.lock                          held exclusively by a running `regd backup`;
                                           removing a blob file for good takes it shared
      regd.lock                            flock held by the one daemon serving this
                                           directory (and its workers); holds its PID
      tmp/                                 files being written before their rename
      proxy/<algorithm>-<hex>.lock         flock held by the worker downloading that blob
                                           for a proxy-cache project; holds its upload id
                                           and size, so other workers serve the same
                                           download (regd.proxy.fetch)
      auth/token.key                       the RSA key that signs tokens (0600)
      auth/admin.password                  admin's generated first password (0600)

Every path is built from values that were validated first: a ``Digest`` (fixed-length
lower-case hex) or an upload id (32 lower-case hex characters). No repository name ever
becomes a path, so nothing a client sends can reach outside the data directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from regd.digest import Digest

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def is_upload_id(text: str) -> bool:
    return UPLOAD_ID_RE.match(text) is not None


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "regd.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def gc_lock(self) -> Path:
        return self.root / "gc.lock"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def backup_lock(self) -> Path:
        return self.root / "backup.lock"

    @property
    def scrub_lock(self) -> Path:
        return self.root / "scrub.lock"

    @property
    def daemon_lock(self) -> Path:
        return self.root / "regd.lock"

    @property
    def auth(self) -> Path:
        return self.root / "auth"

    @property
    def token_key(self) -> Path:
        return self.auth / "token.key"

    @property
    def admin_password(self) -> Path:
        return self.auth / "admin.password"

    @property
    def proxy(self) -> Path:
        return self.root / "proxy"

    def proxy_fetch_lock(self, digest: Digest) -> Path:
        return self.proxy / f"{digest.algorithm}-{digest.hex}.lock"

    def directories(self) -> list[Path]:
        return [self.root, self.blobs, self.uploads, self.trash, self.tmp, self.quarantine, self.proxy]

    def blob(self, digest: Digest) -> Path:
        return self.blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def upload_dir(self, upload_id: str) -> Path:
        if not is_upload_id(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self.uploads / upload_id

    def upload_data(self, upload_id: str) -> Path:
        return self.upload_dir(upload_id) / "data"

    def digest_of_trash_name(self, name: str) -> Digest | None:
        """The digest a file under trash/ (``<hex>.<random>``) stands for, or None."""
        encoded = name.split(".", 1)[0]
        algorithm = {64: "sha256", 128: "sha512"}.get(len(encoded))
        try:
            return None if algorithm is None else Digest.parse(f"{algorithm}:{encoded}")
        except Exception:
            return None

    def digest_of_blob_path(self, path: Path) -> Digest | None:
        """The digest a file under blobs/ stands for, or None for a stray file."""
        try:
            algorithm, prefix, name = path.relative_to(self.blobs).parts
            digest = Digest.parse(f"{algorithm}:{name}")
        except Exception:
            return None
        return digest if prefix == digest.hex[:2] else None
