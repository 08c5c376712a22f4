"""Issue 15, finding 7, against a real ``regd serve`` started under umask 022 (as the
README's command is, by hand): no other local user may read the database (password and
secret hashes), manifests, layers or files in progress. The data directory is 0700 and
everything in it 0600, whatever the umask; a directory an older regd left open is
closed at start."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.regd_process import RegdProcess
from tests.security_support import ADMIN, Api, session_from, start_regd


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # regd's child process inherits it
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    modes = {".": stat.S_IMODE(root.stat().st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            modes[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return modes


async def test_everything_regd_creates_is_private_whatever_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    regd = start_regd(tmp_path)
    try:
        async with session_from() as http:
            api = Api(http, regd)
            await api.push_image("library/app", "v1", ADMIN)  # layers, a manifest (via tmp/)
            _, _, headers = await api.call("POST", "/v2/library/app/blobs/uploads/", ADMIN)
            await api.expect(202, "PATCH", headers["Location"], headers=ADMIN, data=b"partial upload")
            modes = _modes(regd.data_dir)
    finally:
        regd.close()

    for name in ("regd.db", "regd.db-wal", "regd.db-shm", "auth/token.key", "blobs", "uploads", "tmp"):
        assert name in modes, sorted(modes)
    assert any(name.startswith("uploads/") and name.endswith("/data") for name in modes)
    for name, mode in modes.items():
        is_dir = (regd.data_dir / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), f"{name} is {oct(mode)}"


async def test_a_data_directory_left_open_by_an_older_regd_is_closed_at_start(
    tmp_path: Path, loose_umask: None
) -> None:
    regd = RegdProcess(tmp_path, {"auth": {"enabled": True}}, env={"REGD_ADMIN_PASSWORD": "Admin12345"})
    regd.start()
    regd.stop()
    os.chmod(regd.data_dir, 0o755)
    for path in regd.data_dir.iterdir():
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    regd.start()
    try:
        modes = _modes(regd.data_dir)
    finally:
        regd.close()

    assert modes["."] == 0o700
    for name in ("regd.db", "regd.db-wal", "regd.db-shm", "regd.db.generation"):
        assert modes[name] == 0o600, name
    assert modes["blobs"] == modes["auth"] == 0o700
