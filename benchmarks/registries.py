"""Starting and stopping the registries under test, one at a time, each with a fresh data dir.

- distribution: Debian's `docker-registry` (distribution 2.8.2), filesystem storage, delete
  enabled, access log off, log level error; with auth, `auth: token` trusting the suite's
  own issuer (see auth.py).
- regd: `regd serve --listen --data-dir --config`, access log off, everything else at its
  defaults (fsync included); auth off by `[auth] enabled = false`, and on with the
  bootstrap user `admin` whose password the suite sets through REGD_ADMIN_PASSWORD.
- null: the load generator's do-nothing registry (`regbench serve`), the ceiling; with
  `null_keep` it keeps pushed blobs in memory and serves them back, so real clients can pull.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import auth
from benchmarks.loadgen import niced

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
    nice: int = 0  # niceness of the registries and the load generator
    issuer: auth.Issuer | None = None
    regd_commit: str = "installed (working tree)"
    regd_source: Path | None = None  # a snapshot of regd/ to run; None: the installed `regd`
    regd_workers: int | None = None  # None: regd's default ("auto": one per CPU)
    regd_auth: bool | None = None  # whether this regd knows [auth]; found out on first use
    request_log: bool = False  # log every request with its duration (benchmarks/dockerreqs.py)
    null_keep: bool = False  # null keeps pushed blobs and serves them (real clients can pull)
    repositories: list[str] = field(default_factory=list)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL to its whole session after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class StartError(RuntimeError):
    pass


class Running:
    """One registry process; use as a context manager."""

    def __init__(self, name: str, argv: list[str], port: int, data_dir: Path, log: Path,
                 env: dict[str, str]) -> None:
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
                cwd=data_dir.parent, start_new_session=True, env=env,
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
        terminate(self.proc, 15)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        # Flush what this registry left dirty so that the next one does not pay for it.
        os.sync()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot_regd(rev: str, dest: Path) -> str:
    """Copies regd/ as committed at `rev` (or, for rev "worktree", as it is on disk now)
    into `dest`, so that every round runs the same code even while someone edits the
    working tree; returns a description of what was copied."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    dest.mkdir(parents=True, exist_ok=True)
    if rev == "worktree":
        shutil.copytree(root / "regd", dest / "regd", ignore=shutil.ignore_patterns("__pycache__"))
        changed = len(git("status", "--porcelain", "--", "regd").splitlines())
        return f"working tree on commit {git('rev-parse', '--short', 'HEAD')} ({changed} files changed)"
    commit = git("rev-parse", "--short", f"{rev}^{{commit}}")
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "regd"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return f"commit {commit}"


def variants(work: Path, revs: list[str], workers: int | None,
             with_distribution: bool) -> list[tuple[str, Settings]]:
    """(label, settings) of distribution (unless left out) and of regd as committed at each
    revision, for the small benchmarks that need no load generator (coldpull, listing)."""
    def settings(source: Path | None = None) -> Settings:
        return Settings(workdir=work, data_root=work, logdir=work, regbench=Path("/nonexistent"),
                        regd_workers=workers, regd_auth=True, regd_source=source)

    found = [("distribution", settings())] if with_distribution else []
    for rev in revs or ["HEAD"]:
        s = settings(work / f"regd-{len(found)}")
        assert s.regd_source is not None
        s.regd_commit = snapshot_regd(rev, s.regd_source)
        found.append((f"regd {rev} ({s.regd_commit})", s))
    return found


def _distribution_config(data: Path, port: int, s: Settings, with_auth: bool) -> str:
    lines = [
        "version: 0.1",
        "log:",
        f"  level: {'info' if s.request_log else 'error'}",  # info: "response completed" lines
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


REGD_BASE_CONFIG = """\
[server]
access_log = false
log_level = "warning"
"""
# Password of regd's bootstrap user `admin` in auth-on runs (REGD_ADMIN_PASSWORD).
REGD_ADMIN_PASSWORD = "Bench-" + secrets.token_hex(8) + "-9"


def regd_config(with_auth: bool, auth_section: bool, workers: int | None = None,
                request_log: bool = False) -> str:
    """regd's TOML: access log off (on, as JSON lines, with `request_log`), `workers`
    processes (None: regd's default); [auth] only when this regd knows the section."""
    text = REGD_BASE_CONFIG + (f"workers = {workers}\n" if workers is not None else "")
    if request_log:
        text = text.replace("access_log = false", 'access_log = true\nlog_format = "json"').replace(
            'log_level = "warning"', 'log_level = "info"')
    if not auth_section:
        return text
    enabled = "true" if with_auth else "false"
    return text + f'\n[auth]\nenabled = {enabled}\nservice = "{auth.SERVICE}"\n'


def _regd_program(s: Settings) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, REGD_ADMIN_PASSWORD=REGD_ADMIN_PASSWORD)
    if s.regd_source is None:
        return ["regd"], env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(s.regd_source), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "regd"], env


def regd_has_auth(s: Settings) -> bool:
    """Whether this regd accepts an [auth] section (regd check-config says so)."""
    if s.regd_auth is None:
        program, env = _regd_program(s)
        cfg = s.workdir / "regd-check.toml"
        cfg.write_text(regd_config(True, True))
        check = subprocess.run([*program, "check-config", "--config", str(cfg)], env=env,
                               capture_output=True, timeout=60)
        s.regd_auth = check.returncode == 0
    return s.regd_auth


def start(name: str, s: Settings, with_auth: bool = False) -> Running:
    """Starts registry `name` on a free loopback port with a fresh data dir, ready to serve."""
    port = free_port()
    base = Path(s.data_root) / f"{name}-{port}-{time.monotonic_ns()}"
    data = base / "data"
    data.mkdir(parents=True)
    log = s.logdir / f"{name}{'-auth' if with_auth else ''}-{port}.log"
    env = dict(os.environ)
    if name == "distribution":
        cfg = base / "config.yml"
        cfg.write_text(_distribution_config(data, port, s, with_auth))
        argv = ["docker-registry", "serve", str(cfg)]
    elif name == "regd":
        cfg = base / "regd.toml"
        cfg.write_text(regd_config(with_auth, regd_has_auth(s), s.regd_workers, s.request_log))
        program, env = _regd_program(s)
        argv = [*program, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                "--config", str(cfg)]
    elif name == "null":
        argv = [str(s.regbench), "serve", "--listen", f"127.0.0.1:{port}",
                *(["--keep", "yes"] if s.null_keep else [])]
    else:
        raise ValueError(name)
    running = Running(name, niced(argv, s.nice), port, data, log, env)
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
        return auth.fetch_token(r.url, "admin", REGD_ADMIN_PASSWORD, s.repositories)
    raise ValueError(f"{name} has no auth")


def supports_auth(name: str, s: Settings) -> bool:
    if name == "distribution":
        return s.issuer is not None
    if name == "regd":
        return regd_has_auth(s)
    return False
