"""``[server] workers``: worker processes sharing the socket, supervised; ``"auto"`` (the
default) runs one per CPU."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from regd.cpus import available_cpus
from tests.auth_support import ADMIN, ADMIN_PASSWORD, PASSWORD, basic
from tests.regd_process import RegdProcess, free_port, pid_of


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"workers": 2}})
    yield process
    process.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _upload_across_connections(base: str, i: int) -> tuple[str, str]:
    """One upload started on one connection and finished on another (maybe another
    worker); returns the request ids of its first PATCH and of its PUT."""
    data = os.urandom(100_000 + i)
    patch_id, put_id = f"patch-{i}", f"put-{i}"
    async with aiohttp.ClientSession() as first:
        resp = await first.post(f"{base}/v2/library/w/blobs/uploads/")
        location = base + resp.headers["Location"]
        resp = await first.patch(
            location, data=data[:50_000], headers={"Content-Range": "0-49999", "X-Request-Id": patch_id}
        )
        assert resp.status == 202
    async with aiohttp.ClientSession() as second:  # a new connection: maybe another worker
        end = len(data) - 1
        resp = await second.patch(location, data=data[50_000:], headers={"Content-Range": f"50000-{end}"})
        assert resp.status == 202, await resp.text()
        resp = await second.put(location, params={"digest": _digest(data)}, headers={"X-Request-Id": put_id})
        assert resp.status == 201, await resp.text()
    async with aiohttp.ClientSession() as third:
        resp = await third.get(f"{base}/v2/library/w/blobs/{_digest(data)}")
        assert await resp.read() == data
    return patch_id, put_id


async def _traffic(base: str, rounds: int) -> int:
    """Pushes and pulls over many connections (so both workers get some). Returns the
    requests made."""
    for i in range(rounds):
        await _upload_across_connections(base, i)
    return rounds * 5


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_port_and_the_data(regd: RegdProcess) -> None:
    regd.start()  # returns once the supervisor said READY=1: every worker is ready
    workers = _children(regd.pid)
    assert len(workers) == 2
    base = f"http://127.0.0.1:{regd.port}"

    async def scenario() -> None:
        # Until an upload was finished by another worker than the one that took its first
        # chunk (the cross-worker re-hash path), within a bounded number of uploads.
        made = 0
        crossed = False
        for i in range(60):
            patch_id, put_id = await _upload_across_connections(base, i)
            made += 5
            crossed = regd.served_by(patch_id) != regd.served_by(put_id)
            if crossed and i >= 11:
                break
        assert crossed, "60 uploads and no PUT answered by another worker than its PATCH"
        served = {pid_of(line) for line in regd.log().splitlines() if " pid=" in line}
        assert served == set(workers), (served, workers)
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{base}/metrics")).text()
        # /metrics sums every worker's counters, whichever worker answers it
        uploads = _metric(text, "regd_http_requests_total", route="v2 upload", status="202")
        assert uploads == made / 5 * 2
        assert _metric(text, "regd_http_requests_total", route="v2 blob", status="200") == made / 5

    asyncio.run(scenario())
    assert regd.stop() == 0
    regd.notify.wait_for("STOPPING=1", 5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_dead_worker_is_restarted_and_the_registry_keeps_serving(regd: RegdProcess) -> None:
    regd.start()
    first, second = _children(regd.pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _children(regd.pid)
        if len(now) == 2 and first not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker not restarted:\n{regd.log()}")
    assert second in _children(regd.pid)
    asyncio.run(_traffic(f"http://127.0.0.1:{regd.port}", 3))
    assert "worker 0 died; starting it again" in regd.log() or "worker 1 died" in regd.log()
    assert regd.stop() == 0


def test_sighup_reaches_every_worker_and_systemd_hears_ready_again(regd: RegdProcess) -> None:
    regd.start()
    regd.notify.messages.clear()
    regd.send(signal.SIGHUP)
    regd.notify.wait_for("RELOADING=1", 10)
    regd.notify.wait_for("READY=1", 10)
    deadline = time.monotonic() + 10
    while regd.log().count("reloaded:") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert regd.log().count("reloaded:") == 2
    assert regd.stop() == 0


# -- caches across real worker processes (each has its own lookup caches) -----------------

OCI = "application/vnd.oci.image.manifest.v1+json"


class _Workers:
    """Requests over a new connection each, so that both workers answer some; each
    request is tagged with an id, and the access log tells which worker answered it."""

    def __init__(self, regd: RegdProcess, headers: dict[str, str] | None = None) -> None:
        self.regd = regd
        self.base = f"http://127.0.0.1:{regd.port}"
        self.headers = headers or {}
        self.count = 0

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, int]:
        """Status, body and the pid of the worker that answered."""
        self.count += 1
        request_id = f"req-{self.count}"
        headers = {**self.headers, **kwargs.pop("headers", {}), "X-Request-Id": request_id}
        async with aiohttp.ClientSession() as http:
            async with http.request(method, self.base + path, headers=headers, **kwargs) as resp:
                status, body = resp.status, await resp.read()
        return status, body, self.regd.served_by(request_id)

    async def on_each_worker(self, method: str, path: str, **kwargs: Any) -> dict[int, tuple[int, bytes]]:
        """The request made until every worker answered it at least once (bounded)."""
        answers: dict[int, tuple[int, bytes]] = {}
        workers = set(_children(self.regd.pid))
        for _ in range(100):
            status, body, pid = await self.request(method, path, **kwargs)
            if pid in answers:
                assert answers[pid] == (status, body), f"worker {pid} answered differently"
            answers[pid] = (status, body)
            if set(answers) == workers:
                return answers
        raise AssertionError(f"100 connections and not every worker answered: {set(answers)} of {workers}")


async def _push_manifest(w: _Workers, tag: str, layer: bytes) -> bytes:
    config = b"{}"
    for blob in (config, layer):
        status, body, _ = await w.request(
            "POST", "/v2/library/c/blobs/uploads/", params={"digest": _digest(blob)}, data=blob
        )
        assert status == 201, body
    manifest = (
        b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
        b'"digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",'
        b'"digest":"%s","size":%d}]}'
        % (OCI.encode(), _digest(config).encode(), _digest(layer).encode(), len(layer))
    )
    status, body, _ = await w.request(
        "PUT", f"/v2/library/c/manifests/{tag}", data=manifest, headers={"Content-Type": OCI}
    )
    assert status == 201, body
    return manifest


def test_a_tag_moved_or_deleted_on_one_worker_is_seen_at_once_by_the_other(regd: RegdProcess) -> None:
    regd.start()
    w = _Workers(regd, {"Accept": OCI})

    async def scenario() -> None:
        first = await _push_manifest(w, "t", b"layer one")
        second = await _push_manifest(w, "other", b"layer two")
        # Every worker has the tag in its lookup cache now.
        answers = await w.on_each_worker("GET", "/v2/library/c/manifests/t")
        assert {a for a in answers.values()} == {(200, first)}

        status, _, mover = await w.request(
            "PUT", "/v2/library/c/manifests/t", data=second, headers={"Content-Type": OCI}
        )
        assert status == 201
        answers = await w.on_each_worker("GET", "/v2/library/c/manifests/t")
        assert {a for a in answers.values()} == {(200, second)}, f"moved by {mover}: {answers}"

        status, _, deleter = await w.request("DELETE", "/v2/library/c/manifests/t")
        assert status == 202
        answers = await w.on_each_worker("GET", "/v2/library/c/manifests/t")
        assert {a[0] for a in answers.values()} == {404}, f"deleted by {deleter}: {answers}"

    asyncio.run(scenario())
    assert regd.stop() == 0


def test_with_auth_on_a_revoked_admin_flag_is_seen_at_once_by_every_worker(tmp_path: Path) -> None:
    regd = RegdProcess(
        tmp_path,
        {"server": {"workers": 2}, "auth": {"enabled": True}},
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    try:
        regd.start()
        w = _Workers(regd)

        async def scenario() -> None:
            body = {"username": "bob", "password": PASSWORD}
            status, text, _ = await w.request("POST", "/api/v2.0/users", json=body, headers=ADMIN)
            assert status == 201, text
            status, text, _ = await w.request("GET", "/api/v2.0/users/search", params={"username": "bob"},
                                              headers=ADMIN)
            bob = json.loads(text)[0]["user_id"]
            flag = f"/api/v2.0/users/{bob}/sysadmin"
            status, text, _ = await w.request("PUT", flag, json={"sysadmin_flag": True}, headers=ADMIN)
            assert status == 200, text
            # bob lists users (admins only) on every worker: his account is cached there.
            answers = await w.on_each_worker("GET", "/api/v2.0/users", headers=basic("bob"))
            assert {a[0] for a in answers.values()} == {200}

            status, text, _ = await w.request("PUT", flag, json={"sysadmin_flag": False}, headers=ADMIN)
            assert status == 200, text
            answers = await w.on_each_worker("GET", "/api/v2.0/users", headers=basic("bob"))
            assert {a[0] for a in answers.values()} == {403}, answers

        asyncio.run(scenario())
        assert regd.stop() == 0
    finally:
        regd.close()


def test_serve_decides_the_worker_count_before_importing_prometheus_client(tmp_path: Path) -> None:
    """``regd serve`` with workers chooses prometheus_client's multiprocess mode before
    the first import of it. Anything on the way there that imports regd.metrics (a
    subcommand's module while the parser is built, a package imported to check a
    setting) makes every worker count in its own memory, and /metrics shows one
    worker's share. The probe walks that way with every scheduled setting set."""
    config = tmp_path / "regd.toml"
    config.write_text(
        f'[server]\nworkers = 2\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        '[scrub]\nschedule = "0 0 3 * * *"\n'
    )
    probe = (
        "import sys, regd.cli as c; a = c.build_parser().parse_args(['serve', '-c', sys.argv[1]]); "
        "c.worker_count(c._config(a)); print(sorted(m for m in sys.modules if 'prometheus' in m))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_the_workers_are_forked_from_a_single_threaded_supervisor(tmp_path: Path) -> None:
    """The supervisor's start-up (with the bootstrap admin, whose password goes through
    the hashing pool) leaves threads ending after their pool is shut down; a fork then
    could copy a lock one of them holds into a worker for good (seen: a worker of the
    CI run never answered, nor stopped on SIGTERM). Before forking, the supervisor waits
    until the kernel lists one task for it, including threads Python no longer lists
    (here a bare ``_thread`` one, still running for 0.3 s, stands for them). Three
    start-ups, in fresh processes."""
    probe = (
        "import os, sys, time, _thread; from regd.config import load_config; "
        "from regd.daemon import Daemon; from regd.workers import _run, single_threaded; "
        "c = load_config(None, overrides={'storage': {'data_dir': sys.argv[1]}}); "
        "_run(Daemon(c, lambda: c).prepare()); _thread.start_new_thread(time.sleep, (0.3,)); "
        "print(single_threaded(), len(os.listdir('/proc/self/task')))"
    )
    env = dict(os.environ, REGD_ADMIN_PASSWORD="Start-up-" + os.urandom(6).hex())
    for i in range(3):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / f"data{i}")], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "1"], out.stdout


@contextlib.contextmanager
def _serve_without_config(tmp_path: Path, cpus: set[int] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``regd serve`` as a new user runs it: no configuration file, no REGD_ variable;
    yields once it serves, stops it with SIGTERM (exit status 0) at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGD_", "NOTIFY_", "WATCHDOG_"))}

    def pin() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "regd", "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin,
    )
    try:
        _wait_serving(port, proc)
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def _wait_serving(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # 401: serving, access control on by default
        except OSError:
            time.sleep(0.1)
    raise AssertionError("regd serve did not start")


def _wait_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = _children(pid)
        if len(children) >= count:
            return children
        time.sleep(0.1)
    return _children(pid)


def test_serve_with_no_configuration_runs_one_worker_per_cpu(tmp_path: Path) -> None:
    cpus = available_cpus()
    assert cpus >= 2, "this test needs a machine (and cgroup) with two CPUs or more"
    with _serve_without_config(tmp_path) as proc:
        assert len(_wait_children(proc.pid, cpus)) == cpus > 1
        assert (tmp_path / "regd-data").is_dir()  # the default data directory


def test_serve_pinned_to_one_cpu_runs_one_process(tmp_path: Path) -> None:
    with _serve_without_config(tmp_path, cpus={min(os.sched_getaffinity(0))}) as proc:
        assert _children(proc.pid) == []  # the single-process daemon: no supervisor, no fork


def test_kill_9_of_the_supervisor_takes_its_workers_with_it(regd: RegdProcess) -> None:
    regd.start()
    workers = _children(regd.pid)
    assert len(workers) == 2
    regd.kill()  # SIGKILL: no chance to forward anything
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    regd.start()  # the port is free again; the restart recovers as after any crash
    assert len(_children(regd.pid)) == 2
    assert regd.stop() == 0


def test_only_worker_0_runs_the_schedulers(tmp_path: Path) -> None:
    """The GC and scrub schedulers (and the upload janitor beside them) run in one worker:
    each scheduler says when it runs next once, not once per worker."""
    regd = RegdProcess(tmp_path, {"server": {"workers": 2}})
    try:
        regd.start()  # creates the database
        assert regd.stop() == 0
        db = sqlite3.connect(regd.data_dir / "regd.db")
        with db:
            db.execute(
                "INSERT INTO gc_schedule (id, type, cron, parameters, created_at, updated_at) "
                "VALUES (1, 'Daily', '0 0 0 * * *', '{}', 0, 0)"
            )
        db.close()
        before = len(regd.log().splitlines())
        regd.start()
        w = _Workers(regd)
        asyncio.run(w.on_each_worker("GET", "/v2/"))  # both workers are up and serving

        def lines(text: str) -> int:
            return sum(text in line for line in regd.log().splitlines()[before:])

        deadline = time.monotonic() + 10
        while lines("next scheduled garbage collection at") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lines("next scheduled garbage collection at") == 1, regd.log()
        assert lines("next scheduled scrub at") == 1, regd.log()
        assert regd.stop() == 0
    finally:
        regd.close()
