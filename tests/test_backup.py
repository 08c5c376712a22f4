"""``regd backup`` of a registry that is serving, pushing and collecting at the same
time, then ``regd restore`` into an empty data directory: every image of the snapshot
pulls, byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import orjson

from tests.gc_support import regd_gc_command, regd_gc_env
from tests.regd_process import RegdProcess

OCI = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _regd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regd", *args], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **(env or {})},
    )


async def _push_image(http: aiohttp.ClientSession, base: str, repo: str, tag: str) -> str:
    config, layers = os.urandom(200), [os.urandom(30_000), os.urandom(50_000)]
    for blob in (config, *layers):
        uploads = f"{base}/v2/{repo}/blobs/uploads/"
        resp = await http.post(uploads, params={"digest": _digest(blob)}, data=blob)
        assert resp.status == 201, await resp.text()
    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(x),
                    "size": len(x)} for x in layers],
    })
    resp = await http.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI})
    assert resp.status == 201, await resp.text()
    return _digest(manifest)


def _snapshot_images(database: Path) -> list[tuple[str, str, list[str]]]:
    """(repository, manifest digest, blob digests) of every manifest in a database."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        manifests = db.execute(
            "SELECT m.id, r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id"
        ).fetchall()
        return [
            (name, digest, [str(r[0]) for r in db.execute(
                "SELECT digest FROM manifest_blobs WHERE manifest_id = ?", (mid,))])
            for mid, name, digest in manifests
        ]
    finally:
        db.close()


def _wait_for(what: str, check: object, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not after {seconds}s: {what}"
        time.sleep(0.02)


def test_a_backup_taken_during_pushes_and_a_collection_restores_every_image_it_holds(
    tmp_path: Path,
) -> None:
    (tmp_path / "live").mkdir()
    regd = RegdProcess(tmp_path / "live")
    base = f"http://127.0.0.1:{regd.port}"
    dest = tmp_path / "backup"
    stop_pushing = threading.Event()
    pushed_during: list[str] = []
    push_failures: list[BaseException] = []

    async def prepare() -> None:
        async with aiohttp.ClientSession() as http:
            digests = [await _push_image(http, base, "library/keep", f"v{i}") for i in range(4)]
            digests += [await _push_image(http, base, "library/gone", f"v{i}") for i in range(4)]
            for digest in digests[4:]:  # unreferenced now: the collection sweeps their blobs
                assert (await http.delete(f"{base}/v2/library/gone/manifests/{digest}")).status == 202
        # Past their grace period (an hour below); the blobs pushed from now on are not.
        db = sqlite3.connect(regd.data_dir / "regd.db", timeout=30)
        with db:
            db.execute(
                "UPDATE blobs SET last_seen = 0 WHERE digest NOT IN "
                "(SELECT digest FROM manifest_blobs UNION SELECT digest FROM manifests)"
            )
        db.close()

    async def push_on() -> None:
        async with aiohttp.ClientSession() as http:
            i = 0
            while not stop_pushing.is_set():
                pushed_during.append(await _push_image(http, base, "library/busy", f"t{i}"))
                i += 1

    def pushing() -> None:
        try:
            asyncio.run(push_on())
        except BaseException as e:  # reported by the test, unless it ended the test early
            if not stop_pushing.is_set():
                push_failures.append(e)

    pusher = threading.Thread(target=pushing)
    try:
        regd.start()
        asyncio.run(prepare())
        pusher.start()
        # A slowed collection: it moves each swept file to trash/ inside its transaction.
        gc = subprocess.Popen(
            regd_gc_command(regd.data_dir), env=regd_gc_env(grace=3600.0, delay=0.3),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        _wait_for("the collection sweeping", lambda: os.listdir(regd.data_dir / "trash"))
        _wait_for("a push during the collection", lambda: len(pushed_during) >= 1)

        # The snapshot is taken while the collection's sweep is not yet committed; the
        # backup then waits until that sweep has committed, and links the files after.
        pause = {"REGD_TESTHOOK_BACKUP_PAUSE": "12"}
        backup = _regd("backup", str(dest), "--data-dir", str(regd.data_dir), env=pause)

        assert backup.returncode == 0, backup.stderr
        assert "MISSING" not in backup.stdout and " hard-linked" in backup.stdout
        _, err = gc.communicate(timeout=120)
        assert gc.returncode == 0, err
        assert gc.poll() is not None  # the collection waited for the backup, then finished
        stop_pushing.set()
        pusher.join(60)
        assert not pusher.is_alive() and not push_failures, push_failures
        assert regd.stop() == 0
    finally:
        stop_pushing.set()
        regd.close()
        if pusher.is_alive():
            pusher.join(60)

    snapshot = _snapshot_images(dest / "regd.db")
    repos = {repo for repo, _, _ in snapshot}
    assert "library/keep" in repos
    db = sqlite3.connect(dest / "regd.db")
    swept_rows = db.execute(
        "SELECT COUNT(*) FROM blobs WHERE digest NOT IN "
        "(SELECT digest FROM manifest_blobs UNION SELECT digest FROM manifests)"
    ).fetchone()[0]
    db.close()
    assert swept_rows > 0, "the snapshot should hold blobs the collection was sweeping"

    (tmp_path / "restored").mkdir()
    restored = RegdProcess(tmp_path / "restored")
    result = _regd("restore", str(dest), "--data-dir", str(restored.data_dir))
    assert result.returncode == 0, result.stderr

    async def pull_all() -> None:
        async with aiohttp.ClientSession() as http:
            for repo, digest, blobs in snapshot:
                url = f"{restored_base}/v2/{repo}/manifests/{digest}"
                resp = await http.get(url, headers={"Accept": OCI})
                assert resp.status == 200 and _digest(await resp.read()) == digest
                for blob in blobs:
                    resp = await http.get(f"{restored_base}/v2/{repo}/blobs/{blob}")
                    assert resp.status == 200 and _digest(await resp.read()) == blob, (repo, blob)

    restored_base = f"http://127.0.0.1:{restored.port}"
    try:
        restored.start()
        asyncio.run(pull_all())
        scrub = _regd("scrub", "--data-dir", str(restored.data_dir))  # every blob of the copy, checked
        assert scrub.returncode == 0 and "0 damaged, 0 missing" in scrub.stdout, scrub.stdout + scrub.stderr
        assert restored.stop() == 0
    finally:
        restored.close()


def test_backup_and_restore_refuse_what_they_must_not_overwrite(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path)
    try:
        regd.start()
        used = tmp_path / "used"
        used.mkdir()
        (used / "something").write_text("x")
        result = _regd("backup", str(used), "--data-dir", str(regd.data_dir))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"regd: backup destination {used} must be an empty directory or not exist yet"
        )
        ok = _regd("backup", str(tmp_path / "b"), "--data-dir", str(regd.data_dir))
        assert ok.returncode == 0, ok.stderr
        # Restoring over the running daemon's data directory: refused, nothing touched.
        result = _regd("restore", str(tmp_path / "b"), "--data-dir", str(regd.data_dir))
        assert result.returncode == 1 and "must be an empty directory" in result.stderr
        assert regd.alive()
        assert regd.stop() == 0
    finally:
        regd.close()
