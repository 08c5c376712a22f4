"""Fixtures for the e2e tests: a private dockerd, the registry under test, client tools.

``dockerd`` and ``registry`` are shared by the whole session; a test that restarts or
reconfigures a server starts its own with ``regd_server(config=..., env=...)``. When a
test fails, the lines each daemon logged during that test are added to its report.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from types import FrameType

import pytest

from tests.prerequisites import require_tool

from .containers import Containers, private_containers
from .daemons import Dockerd, RegistryServer, ServerFactory, Target

# Every daemon log, by label, so a failing test's report can show what it logged.
_LOGS = pytest.StashKey[dict[str, Path]]()
_LOG_OFFSETS = pytest.StashKey[dict[str, int]]()
_REPORTED_LINES = 200
# Set on a test whose call failed, for fixtures that keep evidence (a browser screenshot).
CALL_FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LOGS] = {}
    # A SIGTERM (a CI timeout) would end pytest without teardown and leave dockerd
    # running; as KeyboardInterrupt, pytest still runs the session finalizers.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    logs = item.config.stash[_LOGS]
    item.stash[_LOG_OFFSETS] = {label: _size(path) for label, path in logs.items()}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[CALL_FAILED] = True
    if report.failed:
        offsets = item.stash.get(_LOG_OFFSETS, {})
        for label, path in item.config.stash[_LOGS].items():
            lines = _read_from(path, offsets.get(label, 0)).splitlines()[-_REPORTED_LINES:]
            if lines:
                report.sections.append((f"{label} log ({path})", "\n".join(lines)))
    return report


@pytest.fixture(scope="session")
def target() -> Target:
    return Target.from_env()


@pytest.fixture(scope="session")
def dockerd(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    logs = tmp_path_factory.mktemp("dockerd")
    # Not under pytest's tmp dir: unix socket paths must stay under 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="regd-e2e-"))
    daemon: Dockerd | None = None
    try:
        daemon = Dockerd(state, logs)
        pytestconfig.stash[_LOGS]["dockerd"] = daemon.log_path
        daemon.start()
        yield daemon
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def regd_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, target: Target
) -> Iterator[ServerFactory]:
    servers: list[RegistryServer] = []

    def start(config: Path | None = None, env: Mapping[str, str] | None = None) -> RegistryServer:
        root = tmp_path_factory.mktemp(target.value)
        data_dir = root / "data"
        data_dir.mkdir()
        # Access control off unless a test turns it on (tests/e2e/accounts.py does): the
        # other tests are about content, pushed and pulled without logging in.
        env = {"REGD_AUTH_ENABLED": "false", **(env or {})}
        server = RegistryServer(target, data_dir, root / "server.log", config, env)
        pytestconfig.stash[_LOGS][f"{target.value} {server.host}"] = server.log_path
        servers.append(server)
        server.start()
        return server

    yield start
    failures = []
    for server in servers:
        try:
            server.stop()
        except pytest.fail.Exception as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture(scope="session")
def registry(regd_server: ServerFactory) -> RegistryServer:
    """The registry shared by tests that neither restart nor reconfigure it."""
    return regd_server()


@pytest.fixture(scope="session")
def skopeo() -> str:
    return require_tool("skopeo")


@pytest.fixture(scope="session")
def ctr() -> str:
    return require_tool("ctr")


@pytest.fixture(scope="session")
def podman() -> str:
    return require_tool("podman")


@pytest.fixture(scope="session")
def buildah() -> str:
    return require_tool("buildah")


@pytest.fixture
def containers() -> Iterator[Containers]:
    """A private image store and configuration for podman and buildah (one per test)."""
    with private_containers() as store:
        yield store


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
