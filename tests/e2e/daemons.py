"""Start and stop the long-running processes the e2e tests need.

- ``Process``: one child with its output in a log file; stops with SIGTERM, then SIGKILL,
  and kills whatever it left behind.
- ``Dockerd``: a private containerd and dockerd, as root, with every path (data, exec
  root, sockets, pid file, daemon.json, CLI config) inside one temporary directory so
  they never touch a system docker and can be removed without a trace.
- ``RegistryServer``: the registry under test, ``regd serve`` or, to check the tests
  themselves, CNCF distribution (``REGD_E2E_TARGET=distribution``), on a free port of
  127.0.0.1 with its own data directory.
"""

from __future__ import annotations

import enum
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

import pytest

from tests.prerequisites import regd_only, require_root, require_tool

from .tools import run

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class Target(enum.Enum):
    REGD = "regd"
    DISTRIBUTION = "distribution"

    @classmethod
    def from_env(cls) -> Target:
        value = os.environ.get("REGD_E2E_TARGET", cls.REGD.value)
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            message = f"REGD_E2E_TARGET={value!r}: expected one of {choices}"
            raise pytest.UsageError(message) from None


def free_port() -> int:
    """A port free on 127.0.0.1 now; a race with other programs is possible but rare."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, ready: Callable[[], bool], process: Process, timeout: float) -> None:
    """Poll ``ready`` until true; fail early, with the log, if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.alive:
            pytest.fail(
                f"{process.name} exited ({process.returncode}) before {what}\n{process.log_tail()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            pytest.fail(f"{process.name}: no {what} after {timeout}s\n{process.log_tail()}", pytrace=False)
        time.sleep(0.1)


class Process:
    """One child process in its own session, its stdout and stderr appended to a log file."""

    def __init__(
        self, name: str, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        self._log = self.log_path.open("ab")
        self._log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.args)}\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM, wait, then SIGKILL. True if it exited on SIGTERM within ``timeout``."""
        if self._popen is None:
            return True
        leftovers = _descendants(self._popen.pid)
        graceful = True
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                graceful = False
        self._reap(leftovers)
        return graceful

    def kill(self) -> None:
        """SIGKILL, as a crash would; no chance to clean up."""
        if self._popen is not None:
            self._reap(_descendants(self._popen.pid))

    def _reap(self, leftovers: list[tuple[int, str]]) -> None:
        assert self._popen is not None
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait(STOP_TIMEOUT)
        for pid, started in leftovers:
            if _start_time(pid) == started:  # the same process, not a reused pid
                _signal(pid, signal.SIGKILL)
        _signal_group(self._popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path}\n{tail}"


class Dockerd:
    """A private containerd + dockerd; ``docker()`` runs the CLI against it."""

    def __init__(self, state: Path, logs: Path) -> None:
        require_root("dockerd and containerd")
        self.state = state
        self.socket = state / "docker.sock"
        self.containerd_socket = state / "containerd" / "containerd.sock"
        self.cli = require_tool("docker")
        self.env = {
            "DOCKER_HOST": f"unix://{self.socket}",
            # The CLI's own config (auths, credential helpers) stays out of $HOME.
            "DOCKER_CONFIG": str(state / "cli"),
        }
        self._containerd = Process("containerd", self._containerd_args(), logs / "containerd.log")
        self._dockerd = Process("dockerd", self._dockerd_args(), logs / "dockerd.log")

    @property
    def host(self) -> str:
        return self.env["DOCKER_HOST"]

    def start(self) -> None:
        self._containerd.start()
        wait_until("containerd socket", self.containerd_socket.exists, self._containerd, 30)
        self._dockerd.start()
        wait_until("answer to `docker version`", self._answers, self._dockerd, READY_TIMEOUT)

    def docker(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([self.cli, *args], env=self.env, timeout=timeout, check=check)

    def stop(self) -> None:
        """Stop both daemons and detach their mounts; the caller removes ``state``."""
        self._dockerd.stop(60)
        self._containerd.stop()
        _unmount_below(self.state)

    @property
    def log_path(self) -> Path:
        return self._dockerd.log_path

    def _answers(self) -> bool:
        return (
            self.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False).returncode == 0
        )

    def _containerd_args(self) -> list[str]:
        # Our own containerd: a dockerd without --containerd would silently share the
        # system one whenever /run/containerd/containerd.sock exists (as on CI runners).
        config = self.state / "containerd.toml"
        self.containerd_socket.parent.mkdir(parents=True)
        config.write_text(
            "version = 2\n"
            f'root = "{self.state / "containerd" / "root"}"\n'
            f'state = "{self.state / "containerd" / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "[grpc]\n"
            f'  address = "{self.containerd_socket}"\n'
        )
        return [require_tool("containerd"), "--config", str(config)]

    def _dockerd_args(self) -> list[str]:
        # An empty daemon.json: a system one may set hosts or data-root and conflict.
        daemon_json = self.state / "daemon.json"
        daemon_json.write_text("{}\n")
        return [
            require_tool("dockerd"),
            f"--config-file={daemon_json}",
            f"--host={self.host}",
            f"--data-root={self.state / 'data'}",
            f"--exec-root={self.state / 'exec'}",
            f"--pidfile={self.state / 'dockerd.pid'}",
            f"--containerd={self.containerd_socket}",
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]


class ServerFactory(Protocol):
    """The ``regd_server`` fixture: start one more registry with its own data."""

    def __call__(
        self, config: Path | None = None, env: Mapping[str, str] | None = None
    ) -> RegistryServer: ...


class RegistryServer:
    """The registry under test on 127.0.0.1; ``restart()`` keeps the port and the data."""

    def __init__(
        self,
        target: Target,
        data_dir: Path,
        log_path: Path,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        args = self._regd_args(config) if target is Target.REGD else self._distribution_args(config)
        self._process = Process(target.value, args, log_path, env)

    def start(self) -> None:
        self._process.start()
        wait_until(f"answer on {self.url}/v2/", self._answers, self._process, READY_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM; the contract says it exits, so not exiting in time fails the test."""
        if not self._process.stop():
            pytest.fail(
                f"{self.target.value} did not exit within {STOP_TIMEOUT}s of SIGTERM\n"
                f"{self._process.log_tail()}",
                pytrace=False,
            )

    def kill(self) -> None:
        self._process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def alive(self) -> bool:
        return self._process.alive

    def log_tail(self, lines: int = 60) -> str:
        return self._process.log_tail(lines)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False

    def _regd_args(self, config: Path | None) -> list[str]:
        args = [*_regd_command(), "serve", "--listen", self.host, "--data-dir", str(self.data_dir)]
        return [*args, "--config", str(config)] if config is not None else args

    def _distribution_args(self, config: Path | None) -> list[str]:
        if config is not None:
            regd_only("a regd config file")
        path = self.log_path.with_suffix(".yml")
        # A fixed http.secret keeps upload URLs valid across a restart, as regd must.
        path.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {self.data_dir}}}\n"
            "  delete: {enabled: true}\n"
            f"http: {{addr: {self.host}, secret: regd-e2e-not-a-secret}}\n"
        )
        docker_registry = shutil.which("docker-registry")
        if docker_registry is None:
            pytest.skip("docker-registry (CNCF distribution) is not installed")
        assert docker_registry is not None
        return [docker_registry, "serve", str(path)]


def _regd_command() -> list[str]:
    """The ``regd`` console script of this interpreter's environment, else its entry point."""
    beside = Path(sys.executable).with_name("regd")
    if os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("regd")
    if found is not None:
        return [found]
    return [sys.executable, "-c", "from regd.cli import main; raise SystemExit(main())"]


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _stat_field(int(entry.name), 1)
            if parent is not None:
                children.setdefault(int(parent), []).append(int(entry.name))
    found: list[tuple[int, str]] = []
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop()
        started = _start_time(child)
        if started is not None:
            found.append((child, started))
        queue.extend(children.get(child, []))
    return found


def _stat_field(pid: int, index: int) -> str | None:
    """Field ``index`` of /proc/PID/stat counted after the command name (0 = state)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name may hold spaces and parentheses
    return fields[index] if index < len(fields) else None


def _start_time(pid: int) -> str | None:
    return _stat_field(pid, 19)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _unmount_below(root: Path) -> None:
    """Detach every mount under ``root`` (dockerd makes its data root a mount), deepest first."""
    prefix = f"{root}/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # octal escapes, e.g. \040
        if point == str(root) or point.startswith(prefix):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        run(["umount", "--lazy", point], timeout=30, check=False)
