"""The Python side of the load generator: building `regbench`, preparing blobs, running it.

Blobs are windows of one file of random bytes (`base`): blob i is `base[off_i : off_i +
size]` with a distinct offset per blob, so every blob in a run has different content and a
different digest, while the client needs no memory per blob and hashes nothing while it is
timed. Digests are computed here once per run (hashlib, SHA-NI) on two threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CRATE = Path(__file__).resolve().parent / "loadgen"


def niced(argv: Sequence[str], nice: int) -> list[str]:
    """`argv` run at niceness `nice` (negative needs root): set before exec, so that every
    thread the program makes inherits it."""
    return ["nice", "-n", str(nice), *argv] if nice else list(argv)


def build_regbench() -> Path:
    """`cargo build --release --offline` (std only, so no registry is needed)."""
    subprocess.run(
        ["cargo", "build", "--release", "--offline", "--quiet"], cwd=CRATE, check=True
    )
    return CRATE / "target" / "release" / "regbench"


@dataclass(frozen=True)
class Blob:
    digest: str
    offset: int
    size: int


class BlobFactory:
    """Hands out sets of blobs that never repeat within a run."""

    def __init__(self, workdir: Path, blob_size: int, seed: int = 1) -> None:
        self.workdir = workdir
        self.blob_size = blob_size
        self.base = workdir / f"base-{blob_size}.bin"
        self.base_size = blob_size + (64 << 20)
        rng = random.Random(seed + blob_size)
        with self.base.open("wb") as f:
            for start in range(0, self.base_size, 64 << 20):
                f.write(os.urandom(min(64 << 20, self.base_size - start)))
        self._data = memoryview(self.base.read_bytes())
        self._rng = rng
        self._used: set[int] = set()

    def make(self, name: str, count: int) -> Path:
        """Writes a blob list file for `count` fresh blobs and returns its path."""
        span = self.base_size - self.blob_size
        offsets: list[int] = []
        while len(offsets) < count:
            off = self._rng.randrange(span)
            if off not in self._used:
                self._used.add(off)
                offsets.append(off)
        with ThreadPoolExecutor(2) as pool:
            digests = list(pool.map(self._digest, offsets))
        path = self.workdir / f"blobs-{name}.txt"
        path.write_text("".join(f"{d} {o} {self.blob_size}\n" for d, o in zip(digests, offsets, strict=True)))
        return path

    def _digest(self, off: int) -> str:
        return "sha256:" + hashlib.sha256(self._data[off : off + self.blob_size]).hexdigest()

    def content(self, blob_list: Path, index: int) -> bytes:
        _, off, size = blob_list.read_text().splitlines()[index].split()
        return bytes(self._data[int(off) : int(off) + int(size)])

    @staticmethod
    def digest_at(blob_list: Path, index: int) -> str:
        return blob_list.read_text().splitlines()[index].split()[0]


@dataclass
class LoadResult:
    """One regbench run as it reported itself, plus the client's own CPU time."""

    ops: int = 0
    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: int = 0
    reconnects: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def start_load(regbench: Sequence[str], command: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    argv = [*regbench, command]
    for key, value in args.items():
        for v in value if isinstance(value, list) else [value]:
            argv += [f"--{key}", str(v)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_load(proc: subprocess.Popen[str], timeout: float) -> LoadResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return LoadResult(errors=1, error_samples=["load generator timed out"])
    if proc.returncode != 0:
        return LoadResult(errors=1, error_samples=[f"regbench exited {proc.returncode}: {err[-500:]}"])
    data = json.loads(out)
    return LoadResult(**data)


def run_load(regbench: Sequence[str], command: str, args: dict[str, Any], timeout: float) -> LoadResult:
    """Runs regbench to completion; a crash or time-out counts as an error."""
    cpu0 = _children_cpu()
    result = finish_load(start_load(regbench, command, args), timeout)
    result.client_cpu_seconds = _children_cpu() - cpu0
    return result


def run_loads_together(
    regbench: Sequence[str], runs: list[tuple[str, dict[str, Any]]], timeout: float
) -> list[LoadResult]:
    """Starts several regbench runs at once (mixed push and pull) and waits for all."""
    cpu0 = _children_cpu()
    procs = [start_load(regbench, cmd, args) for cmd, args in runs]
    results = [finish_load(p, timeout) for p in procs]
    cpu = _children_cpu() - cpu0
    for r in results:
        r.client_cpu_seconds = cpu / len(results)
    return results
