"""One daemon per data directory (regd/datadir.py): a second ``regd serve`` on the data
directory of a running one is refused with one line naming the directory and the PID;
the admin commands keep working beside the daemon; the lock goes with the daemon, also
with a kill -9."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.regd_process import RegdProcess, free_port


def _second_serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regd", "serve", "--listen", f"127.0.0.1:{free_port()}",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "REGD_AUTH_ENABLED": "false"},
    )


def _regd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regd", *args], input=stdin,
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(params=[1, 2], ids=["single process", "workers=2"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"workers": request.param}})
    process.start()
    yield process
    process.close()


def test_a_second_daemon_on_the_same_data_directory_is_refused_in_one_line(running: RegdProcess) -> None:
    second = _second_serve(running.data_dir)

    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert lines[0] == (
        f"regd: data directory {running.data_dir} is in use by another regd (pid {running.pid}); "
        "stop it first, or give this one its own --data-dir"
    )
    assert running.alive()


def test_admin_commands_keep_working_beside_the_daemon(running: RegdProcess) -> None:
    data = ["--data-dir", str(running.data_dir)]
    assert _regd("project", "create", "beside", *data).returncode == 0
    user = _regd("user", "add", "carol", "--password-stdin", *data, stdin="Passw0rd1\n")
    assert user.returncode == 0, user.stderr
    gc = _regd("gc", "--dry-run", *data)
    assert gc.returncode == 0 and gc.stdout.startswith("garbage collection"), gc.stderr
    assert running.alive()


def test_the_lock_goes_with_the_daemon_even_after_kill_9(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = RegdProcess(tmp_path / "a")
    second = RegdProcess(tmp_path / "b", {"storage": {"data_dir": str(first.data_dir)}})
    try:
        first.start()
        first.kill()
        second.start()  # ready: it took the lock and serves
        assert (first.data_dir / "regd.lock").read_text().strip() == str(second.pid)
        assert second.stop() == 0
        first.start()  # and after a clean stop too
        assert first.stop() == 0
    finally:
        first.close()
        second.close()
