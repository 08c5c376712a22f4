"""Helpers for the garbage collection tests: a config, pushing images the way docker does,
pulling them back digest-verified, and checking the data directory against the database."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession

from regd.config import Config, load_config
from regd.digest import Digest
from regd.storage.layout import Layout

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


def gc_config(data_dir: Path, **gc: Any) -> Config:
    """The real app's config on ``data_dir``, without authentication."""
    overrides: dict[str, dict[str, Any]] = {
        "storage": {"data_dir": str(data_dir), "fsync": False},
        "gc": gc,
        "auth": {"enabled": False},
    }
    return load_config(None, environ={}, overrides=overrides)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def matches(digest: str, data: bytes) -> bool:
    """Whether ``data`` has ``digest``, in the digest's own algorithm (sha256 or sha512)."""
    return digest_of(data, digest.partition(":")[0]) == digest


@dataclass
class Image:
    """An image (or index, or referrer) as pushed: its manifest and every blob's bytes."""

    manifest: bytes
    media_type: str = OCI_MANIFEST
    blobs: dict[str, bytes] = field(default_factory=dict)
    algorithm: str = "sha256"  # of its blobs' digests and of the digest it is pushed by

    @property
    def digest(self) -> str:
        return digest_of(self.manifest, self.algorithm)


def image(
    blobs: list[bytes],
    subject: Image | None = None,
    foreign: tuple[tuple[str, int], ...] = (),
    algorithm: str = "sha256",
) -> Image:
    """An OCI image of ``blobs`` (first is the config), optionally a referrer of ``subject``
    and with foreign layers (digest, size) that are never uploaded; its blobs addressed by
    ``algorithm`` digests."""
    digests = [digest_of(b, algorithm) for b in blobs]
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digests[0], "size": len(blobs[0])},
        "layers": [
            {"mediaType": LAYER, "digest": d, "size": len(b)}
            for d, b in zip(digests[1:], blobs[1:], strict=True)
        ]
        + [
            {
                "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "digest": d,
                "size": s,
                "urls": ["https://example.invalid/layer"],
            }
            for d, s in foreign
        ],
    }
    if subject is not None:
        body["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest),
        }
        body["artifactType"] = "application/vnd.example.signature"
    return Image(orjson.dumps(body), OCI_MANIFEST, dict(zip(digests, blobs, strict=True)), algorithm)


def index(children: list[Image], algorithm: str = "sha256") -> Image:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": c.media_type, "digest": c.digest, "size": len(c.manifest)} for c in children
        ],
    }
    return Image(orjson.dumps(body), OCI_INDEX, algorithm=algorithm)


def random_image(layers: int = 2, size: int = 1000, algorithm: str = "sha256") -> Image:
    return image([os.urandom(size + i) for i in range(layers + 1)], algorithm=algorithm)


MAX_ATTEMPTS = 10


class PushAbandonedError(Exception):
    """The client gave up: its manifest was refused MAX_ATTEMPTS times (never accepted)."""


class DockerStyleClient:
    """A registry client over HTTP doing what docker does on push: HEAD each blob, upload
    only when missing (or mount it from another repository), then PUT the manifest."""

    def __init__(self, session: ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.mounts = 0

    async def head_blob(self, repo: str, digest: str) -> bool:
        async with self.session.head(f"{self.base}/v2/{repo}/blobs/{digest}") as resp:
            assert resp.status in (200, 404), resp.status
            return resp.status == 200

    async def upload(self, repo: str, data: bytes, digest: str | None = None) -> None:
        url = f"{self.base}/v2/{repo}/blobs/uploads/"
        async with self.session.post(url, params={"digest": digest or sha256(data)}, data=data) as resp:
            assert resp.status == 201, await resp.text()

    async def mount(self, repo: str, digest: str, source: str) -> bool:
        url = f"{self.base}/v2/{repo}/blobs/uploads/"
        async with self.session.post(url, params={"mount": digest, "from": source}) as resp:
            assert resp.status in (201, 202), await resp.text()
            if resp.status == 202:  # not mountable: the session it opened is not needed
                async with self.session.delete(self.base + resp.headers["Location"]) as cancel:
                    assert cancel.status == 204
            return resp.status == 201

    async def put_manifest(self, repo: str, reference: str, img: Image) -> tuple[int, dict[str, Any]]:
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        async with self.session.put(url, data=img.manifest, headers={"Content-Type": img.media_type}) as resp:
            body = orjson.loads(await resp.read() or b"{}")
            return resp.status, body

    async def push(self, repo: str, reference: str, img: Image, mount_from: str | None = None) -> int:
        """Push docker-style; returns how many times the manifest PUT was refused with
        MANIFEST_BLOB_UNKNOWN (each time the client uploads what it lacks and retries,
        after a short backoff); PushAbandonedError after MAX_ATTEMPTS refusals."""
        refused = 0
        while True:
            if refused:  # like a re-run `docker push`: HEAD everything again
                await asyncio.sleep(0.005 * refused)
            for digest in img.blobs:
                if await self.head_blob(repo, digest):
                    continue
                if mount_from is not None and await self.mount(repo, digest, mount_from):
                    self.mounts += 1
                    continue
                await self.upload(repo, img.blobs[digest], digest)
            status, body = await self.put_manifest(repo, reference, img)
            if status == 201:
                return refused
            assert status == 400 and body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", (status, body)
            refused += 1
            if refused >= MAX_ATTEMPTS:
                raise PushAbandonedError(f"{repo}:{reference} refused {refused} times")
            assert set(body["errors"][0]["detail"]["digests"]) <= set(img.blobs)

    async def delete(self, repo: str, reference: str) -> int:
        async with self.session.delete(f"{self.base}/v2/{repo}/manifests/{reference}") as resp:
            return resp.status

    async def pull(self, repo: str, reference: str, img: Image) -> None:
        """Pull by ``reference``: the manifest must be ``img``'s and every blob digest-verified."""
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        headers = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
        async with self.session.get(url, headers=headers) as resp:
            assert resp.status == 200, f"{repo}:{reference}: {resp.status} {await resp.text()}"
            data = await resp.read()
        assert digest_of(data, img.algorithm) == img.digest, f"{repo}:{reference} is another manifest"
        for digest in img.blobs:
            async with self.session.get(f"{self.base}/v2/{repo}/blobs/{digest}") as resp:
                assert resp.status == 200, f"{repo}:{reference} lost {digest}: {resp.status}"
                assert matches(digest, await resp.read()), f"{repo}:{reference}: {digest} is corrupt"


def referenced(db_path: Path) -> dict[str, int]:
    """Digest -> size of every blob some manifest references (its bytes, config, layers)."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT m.digest, b.size FROM manifests m JOIN blobs b ON b.digest = m.digest "
            "UNION SELECT mb.digest, mb.size FROM manifest_blobs mb WHERE mb.is_foreign = 0"
        ).fetchall()
    return {d: s for d, s in rows}


def blob_files(data_dir: Path) -> dict[str, int]:
    """Digest -> size of every file under blobs/."""
    layout = Layout(data_dir)
    found: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(layout.blobs):
        for name in files:
            path = Path(dirpath) / name
            digest = layout.digest_of_blob_path(path)
            assert digest is not None, f"stray file {path}"
            found[str(digest)] = path.stat().st_size
    return found


def check_consistent(data_dir: Path, only_referenced: bool = False) -> None:
    """Every blob row has its file with the right bytes, every referenced blob has a row,
    the trash is empty; with ``only_referenced``, no file or row is left that nothing uses."""
    layout = Layout(data_dir)
    with sqlite3.connect(layout.database) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = dict(conn.execute("SELECT digest, size FROM blobs").fetchall())
    files = blob_files(data_dir)
    for digest, size in rows.items():
        assert files.get(digest) == size, f"blob row {digest} without its file"
        assert matches(digest, layout.blob(Digest.parse(digest)).read_bytes()), f"{digest} is corrupt"
    refs = referenced(layout.database)
    with sqlite3.connect(layout.database) as conn:
        needed = {d for (d,) in conn.execute("SELECT digest FROM manifest_blobs WHERE is_foreign = 0")}
        needed |= {d for (d,) in conn.execute("SELECT digest FROM manifests")}
    lost = needed - set(rows)
    assert not lost, f"referenced blobs without a row: {sorted(lost)[:5]}"
    assert os.listdir(layout.trash) == [], "trash/ not empty"
    if only_referenced:
        assert set(files) == set(refs), f"unreferenced files left: {sorted(set(files) - set(refs))[:5]}"
        assert set(rows) == set(refs), f"unreferenced rows left: {sorted(set(rows) - set(refs))[:5]}"


def regd_gc_env(grace: float = 0.0, delay: float = 0.0) -> dict[str, str]:
    """The environment of a ``regd gc`` process: no stray REGD_ settings, the grace period,
    and the test hook that slows its sweep (seconds per file) when ``delay``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGD_")}
    env.update(REGD_GC_GRACE_PERIOD=str(grace), REGD_STORAGE_FSYNC="false")
    if delay:
        env["REGD_TESTHOOK_GC_SWEEP_DELAY"] = str(delay)
    return env


def regd_gc_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "regd", "gc", "--data-dir", str(data_dir), *args]


async def run_regd_gc(data_dir: Path, *args: str, grace: float = 0.0) -> tuple[int, str, str]:
    """Run ``regd gc`` to its end: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *regd_gc_command(data_dir, *args),
        env=regd_gc_env(grace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
