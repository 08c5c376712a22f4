"""podman and buildah (containers/storage and containers/image clients) with nothing shared.

Each ``Containers`` gets a private directory holding its image store (the ``vfs`` driver,
which needs neither fuse-overlayfs nor a kernel overlay mount), its run root, its
temporary files, and private ``storage.conf``, ``containers.conf``, ``registries.conf``,
``policy.json`` and auth file, all passed through the environment the tools read
(``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_CONF``, ``CONTAINERS_REGISTRIES_CONF``,
``REGISTRY_AUTH_FILE``, ``TMPDIR``), so that nothing in /etc/containers, /var/lib/containers
or $HOME is read or written. podman and buildah of one ``Containers`` share its store, as
they do on a real machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.prerequisites import require_root

from .tools import run


class Containers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.auth_file = root / "auth.json"
        self.policy = root / "policy.json"
        (root / "tmp").mkdir()
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "storage"}"\nrunroot = "{root / "run"}"\n'
        )
        (root / "containers.conf").write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{root / "events.log"}"\n'
        )
        # Only fully qualified references (host:port/name): no search registries.
        (root / "registries.conf").write_text("unqualified-search-registries = []\n")
        # Debian builds podman without sigstore; signatures are not what these tests check.
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        self.auth_file.write_text('{"auths": {}}\n')  # podman refuses a missing one
        self.env = {
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "TMPDIR": str(root / "tmp"),
        }

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([program, *args], env=self.env, timeout=180, check=check)

    def context(self, name: str, files: int = 2, size: int = 64 * 1024) -> Path:
        """A build context: ``files`` files of fresh random bytes and a Containerfile
        ``FROM scratch`` with one ``COPY`` (one layer) per file."""
        directory = self.root / name
        directory.mkdir()
        lines = ["FROM scratch"]
        for index in range(files):
            (directory / f"file{index}.bin").write_bytes(os.urandom(size + index))
            lines.append(f"COPY file{index}.bin /file{index}.bin")
        (directory / "Containerfile").write_text("\n".join(lines) + "\n")
        return directory


@contextmanager
def private_containers() -> Iterator[Containers]:
    require_root("podman and buildah (rootless needs subordinate uids)")
    root = Path(tempfile.mkdtemp(prefix="regd-e2e-containers-"))
    try:
        yield Containers(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
