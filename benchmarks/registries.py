"""Starting and stopping the registries under test, one at a time, each with a fresh data dir.

- distribution: Debian's `docker-registry` (distribution 2.8.2), filesystem storage, delete
  enabled, access log off, log level error; with auth, `auth: token` trusting the suite's
  own issuer (see auth.py).
- regd: `regd serve --listen --data-dir --config`, access log off, everything else at its
  defaults (fsync included); with auth, the TOML given by --regd-auth-config.
- null: the load generator's do-nothing registry (`regbench serve`), the ceiling.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import auth

NAMES = ("distribution", "regd", "null")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Settings:
    """What every registry start needs to know; fixed for the whole run."""

    workdir: Path
    data_root: Path
    logdir: Path
    regbench: Path
    issuer: auth.Issuer | None = None
    regd_auth_config: Path | None = None
    regd_credentials: tuple[str, str] | None = None
    repositories: list[str] = field(default_factory=list)


class StartError(RuntimeError):
    pass


class Running:
    """One registry process; use as a context manager."""

    def __init__(self, name: str, argv: list[str], port: int, data_dir: Path, log: Path) -> None:
        self.name = name
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.url = f"http://{self.addr}"
        self.data_dir = data_dir
        self.log = log
        self.token: str | None = None
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=data_dir.parent, start_new_session=True,
            )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1).close()
                return
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise StartError(f"{self.name} not answering on {self.url}/v2/ after {timeout}s")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        # Flush what this registry left dirty so that the next one does not pay for it.
        os.sync()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _distribution_config(data: Path, port: int, s: Settings, with_auth: bool) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {data}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if with_auth:
        assert s.issuer is not None
        lines += [
            "auth:",
            "  token:",
            f"    realm: http://127.0.0.1:{port}/token-not-served",
            f"    service: {auth.SERVICE}",
            f"    issuer: {auth.ISSUER}",
            f"    rootcertbundle: {s.issuer.bundle}",
        ]
    return "\n".join(lines) + "\n"


REGD_BENCH_CONFIG = """\
[server]
access_log = false
log_level = "warning"
"""


def start(name: str, s: Settings, with_auth: bool = False) -> Running:
    """Starts registry `name` on a free loopback port with a fresh data dir, ready to serve."""
    port = free_port()
    base = Path(s.data_root) / f"{name}-{port}-{time.monotonic_ns()}"
    data = base / "data"
    data.mkdir(parents=True)
    log = s.logdir / f"{name}{'-auth' if with_auth else ''}-{port}.log"
    if name == "distribution":
        cfg = base / "config.yml"
        cfg.write_text(_distribution_config(data, port, s, with_auth))
        argv = ["docker-registry", "serve", str(cfg)]
    elif name == "regd":
        cfg = base / "regd.toml"
        if with_auth:
            assert s.regd_auth_config is not None
            cfg.write_text(s.regd_auth_config.read_text())
        else:
            cfg.write_text(REGD_BENCH_CONFIG)
        argv = ["regd", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                "--config", str(cfg)]
    elif name == "null":
        argv = [str(s.regbench), "serve", "--listen", f"127.0.0.1:{port}"]
    else:
        raise ValueError(name)
    running = Running(name, argv, port, data, log)
    running.data_dir = base  # stop() removes the config beside the data too
    try:
        running.wait_ready()
        if with_auth:
            running.token = _token_for(name, running, s)
    except BaseException:
        running.stop()
        raise
    return running


def _token_for(name: str, r: Running, s: Settings) -> str:
    if name == "distribution":
        assert s.issuer is not None
        return auth.mint_token(s.issuer, s.repositories)
    if name == "regd":
        assert s.regd_credentials is not None
        user, password = s.regd_credentials
        return auth.fetch_token(r.url, user, password, s.repositories)
    raise ValueError(f"{name} has no auth")


def supports_auth(name: str, s: Settings) -> bool:
    if name == "distribution":
        return s.issuer is not None
    if name == "regd":
        return s.regd_auth_config is not None and s.regd_credentials is not None
    return False
