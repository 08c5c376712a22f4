"""The sd_notify protocol, spoken by a real ``regd serve`` to a socket the test listens on,
and the unit file as systemd itself reads it."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regd.systemd import Notifier
from tests.prerequisites import require_tool
from tests.regd_process import RegdProcess

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "regd.service"


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path)
    yield process
    process.close()


def test_ready_is_sent_once_listening_with_the_database_open(regd: RegdProcess) -> None:
    regd.start()

    ready = regd.notify.wait_for("READY=1", 1)

    assert any(line.startswith("STATUS=") for line in ready.splitlines())
    with socket.create_connection(("127.0.0.1", regd.port), timeout=5):
        pass
    assert (regd.data_dir / "regd.db").exists()


def test_sigterm_sends_stopping_then_exits_0(regd: RegdProcess) -> None:
    regd.start()

    assert regd.stop(signal.SIGTERM) == 0

    regd.notify.wait_for("STOPPING=1", 1)
    assert "stopped" in regd.log()


def test_sighup_sends_reloading_then_ready_again(regd: RegdProcess) -> None:
    regd.start()
    regd.notify.messages.clear()

    regd.send(signal.SIGHUP)

    reloading = regd.notify.wait_for("RELOADING=1", 10)
    usec = [line for line in reloading.splitlines() if line.startswith("MONOTONIC_USEC=")]
    assert usec and abs(int(usec[0].split("=")[1]) / 1e6 - time.monotonic()) < 60
    regd.notify.wait_for("READY=1", 10)
    assert regd.notify.messages.index(reloading) < len(regd.notify.messages) - 1
    assert regd.alive()
    assert regd.stop() == 0


def test_watchdog_pings_every_half_interval(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, env={"WATCHDOG_USEC": "400000"})
    try:
        regd.start()
        regd.notify.messages.clear()
        arrivals = []
        while len(arrivals) < 10:
            regd.notify.wait_for("WATCHDOG=1", 5)
            arrivals.append(time.monotonic())
            regd.notify.messages.clear()
        gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
        # Pings every half interval (0.2 s), not every full one (0.4 s): judged by the
        # median gap, which one late ping on a loaded machine cannot move.
        median = gaps[len(gaps) // 2]
        assert 0.1 < median < 0.35, gaps
    finally:
        regd.close()


def test_no_watchdog_pings_without_watchdog_usec(regd: RegdProcess) -> None:
    regd.start()

    time.sleep(1.0)
    while regd.notify.receive(0.05) is not None:
        pass

    assert not any("WATCHDOG=1" in m for m in regd.notify.messages)


def test_watchdog_for_another_pid_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    try:
        assert notifier.watchdog_interval is None
    finally:
        notifier.close()


def test_abstract_namespace_socket_receives_ready() -> None:
    name = f"regd-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
    try:
        notifier.ready("up")
        assert receiver.recv(4096).decode().splitlines() == ["READY=1", "STATUS=up"]
    finally:
        notifier.close()
        receiver.close()


def test_a_missing_notify_socket_never_fails_regd() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    try:
        notifier.ready("up")
        notifier.stopping("down")
    finally:
        notifier.close()


# -- the unit file ---------------------------------------------------------------------


def _systemd_analyze() -> str:
    return require_tool("systemd-analyze")


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    # verify insists that ExecStart's program exists: point it at this environment's regd
    # (or any executable, when the console script is not on PATH).
    regd = shutil.which("regd") or sys.executable
    text = UNIT.read_text()
    if not Path("/usr/local/bin/regd").exists():
        text = text.replace("/usr/local/bin/regd", regd)
    unit = tmp_path / "regd.service"
    unit.write_text(text)

    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )

    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "regd.service" in line or "regd" in line.lower()
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_unit_file_has_the_hardening_the_readme_promises() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "StateDirectory=regd",
        "ConfigurationDirectory=regd",
    ):
        assert line in text.splitlines(), line


def test_unit_file_exposure_is_the_score_the_readme_states(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd 252 or newer has)")
    overall = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert overall, result.stdout + result.stderr
    score = float(overall[0].split(":")[1].split()[0])
    assert score <= 1.2, overall[0]
    assert "exposure **1.2 OK**" in (ROOT / "README.md").read_text()
