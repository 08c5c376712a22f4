"""How many CPUs this process may use: what ``[server] workers = "auto"`` resolves to.

The answer is the smaller of two limits, at least 1:

- the affinity mask (``sched_getaffinity``: ``taskset``, systemd's ``CPUAffinity=``,
  a cpuset);
- the CPU quota of the process's cgroup and of every cgroup above it, rounded up:
  cgroup v2 ``cpu.max`` (``"200000 100000"`` is 2 CPUs, ``"max 100000"`` no limit),
  cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (a quota of -1 is no limit).
  That is what ``docker run --cpus``, Kubernetes' CPU limits and systemd's ``CPUQuota=``
  set. Where cgroups are mounted is read from ``/proc/self/mountinfo``, and which
  cgroup the process is in from ``/proc/self/cgroup``, so the v1, v2 and hybrid layouts
  all work, inside a container's cgroup namespace too.

``root`` lets the tests point every path at a fake tree of files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path


def available_cpus(root: Path = Path("/"), affinity: set[int] | None = None) -> int:
    """One per CPU the process may run on, bounded by the cgroup CPU quota; at least 1."""
    cpus = len(affinity if affinity is not None else os.sched_getaffinity(0)) or 1
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return max(1, cpus)


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota (in CPUs) on the process's cgroups, or None when unlimited."""
    limits = [limit for directory, v2 in _cgroup_dirs(root) for limit in _limits_up(directory, v2)]
    return min(limits) if limits else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _memberships(root: Path) -> dict[str, str]:
    """controller -> cgroup path, from /proc/self/cgroup (v2's line is keyed '')."""
    text = _read(root / "proc/self/cgroup") or ""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _mounts(root: Path) -> Iterator[tuple[str, str, bool]]:
    """(mount root inside the hierarchy, mount point, is v2) of the cgroup mounts with cpu."""
    for line in (_read(root / "proc/self/mountinfo") or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2":
            yield fields[3], fields[4], True
        elif fstype == "cgroup" and "cpu" in options:
            yield fields[3], fields[4], False


def _cgroup_dirs(root: Path) -> Iterator[tuple[Path, bool]]:
    """The directory of this process's cgroup in each mounted hierarchy with a CPU quota."""
    memberships = _memberships(root)
    for mount_root, mount_point, v2 in _mounts(root):
        path = memberships.get("" if v2 else "cpu")
        if path is None:
            continue
        # Inside a cgroup namespace the path is relative to the namespace's root, which is
        # what is mounted; outside, strip the mount's own root from the path.
        relative = path[len(mount_root) :] if path.startswith(mount_root) else path
        base = root / mount_point.lstrip("/")
        candidate = base / relative.lstrip("/")
        yield (candidate if candidate.is_dir() else base), v2


def _limits_up(directory: Path, v2: bool) -> Iterator[float]:
    """The quota of ``directory`` and of each parent up to the mount point."""
    current = directory
    for _ in range(64):
        limit = _v2_limit(current) if v2 else _v1_limit(current)
        if limit is not None:
            yield limit
        if current.parent == current or not (current.parent / ("cgroup.procs")).exists():
            return
        current = current.parent


def _v2_limit(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(directory: Path) -> float | None:
    quota_text, period_text = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None
