"""A real ``regd serve`` child process for the daemon tests (signals, TLS, systemd).

Each ``RegdProcess`` owns a unix datagram socket that it passes as ``NOTIFY_SOCKET``:
regd says ``READY=1`` there once it listens with its database open, which is how
``start`` knows it is up (and what ``tests/test_systemd.py`` checks in detail).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Flat TOML for a regd configuration (strings, booleans, numbers)."""
    lines: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float):
                text = repr(value)
            else:
                text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def pid_of(access_line: str) -> int:
    """The worker pid an access-log line names."""
    return int(access_line.split(" pid=", 1)[1].split()[0])


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket that collects messages."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: a unix socket path must stay under 108 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="regd-notify-"))
        self.path = self._dir / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self.messages: list[str] = []

    def receive(self, timeout: float) -> str | None:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(4096)
        except TimeoutError:
            return None
        message = data.decode()
        self.messages.append(message)
        return message

    def wait_for(self, line: str, timeout: float, alive: Any = None) -> str:
        """The first message (new or already seen) holding ``line``; fails after ``timeout``."""
        for message in self.messages:
            if line in message.splitlines():
                return message
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(min(0.2, max(deadline - time.monotonic(), 0.01)))
            if message is not None and line in message.splitlines():
                return message
            if alive is not None and not alive():
                break
        raise AssertionError(f"no {line!r} from regd; got {self.messages}")

    def close(self) -> None:
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class RegdProcess:
    def __init__(
        self,
        root: Path,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.preexec = preexec  # run in the child before regd starts (limits, for instance)
        self.port = port or free_port()
        self.data_dir = root / "data"
        self.config_path = root / "regd.toml"
        self.log_path = root / "regd.log"
        self.env = dict(env or {})
        self.write_config(sections or {})
        self.notify = NotifySocket()
        self._popen: subprocess.Popen[bytes] | None = None

    def write_config(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        merged: dict[str, dict[str, Any]] = {
            "server": {"listen": f"127.0.0.1:{self.port}", "shutdown_grace": 10.0},
            "storage": {"data_dir": str(self.data_dir), "fsync": False},
            "auth": {"enabled": False},  # these tests are about the daemon, not access control
        }
        for section, keys in sections.items():
            merged.setdefault(section, {}).update(keys)
        self.config_path.write_text(toml(merged))

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def start(self, wait: bool = True) -> None:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
        env = {**inherited, "NOTIFY_SOCKET": str(self.notify.path), **self.env}
        self.notify.messages.clear()
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "regd", "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=self.preexec,
            )
        if wait:
            try:
                self.notify.wait_for("READY=1", START_TIMEOUT, self.alive)
            except AssertionError:
                self.kill()
                raise AssertionError(f"regd did not start:\n{self.log()}") from None

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        self._popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self._popen is not None
        return self._popen.wait(timeout)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        if not self.alive():
            return self.wait()
        self.send(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def served_by(self, request_id: str) -> int:
        """The pid of the process that answered request ``request_id`` (its access-log
        line; a client sets the id with ``X-Request-Id``)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if f"request_id={request_id} " in line:
                    return pid_of(line)
            time.sleep(0.05)
        raise AssertionError(f"no access-log line for request {request_id}:\n{self.log()[-3000:]}")

    def close(self) -> None:
        self.kill()
        self.notify.close()
