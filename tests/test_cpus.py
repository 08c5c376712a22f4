"""``[server] workers = "auto"``: the CPU count from the affinity mask and the cgroup
quota (regd/cpus.py), on fake /proc and /sys/fs/cgroup trees of each layout."""

from __future__ import annotations

from pathlib import Path

from regd.cpus import available_cpus, cgroup_cpu_limit

V2_MOUNT = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNT = "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
HYBRID = (
    "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    "33 25 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    "34 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)


def _tree(root: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "cgroup.procs").write_text("")
        path.write_text(text)
    return root


def test_v2_quota_of_two_and_a_half_cpus_rounds_up_to_three(tmp_path: Path) -> None:
    root = _tree(tmp_path, V2_MOUNT, "0::/system.slice/regd.service\n", {
        "/sys/fs/cgroup/system.slice/regd.service/cpu.max": "250000 100000\n",
    })
    assert cgroup_cpu_limit(root) == 2.5
    assert available_cpus(root, affinity=set(range(8))) == 3


def test_v2_unlimited_leaves_the_affinity_mask(tmp_path: Path) -> None:
    limits = {"/sys/fs/cgroup/user.slice/cpu.max": "max 100000\n"}
    root = _tree(tmp_path, V2_MOUNT, "0::/user.slice\n", limits)
    assert cgroup_cpu_limit(root) is None
    assert available_cpus(root, affinity={0, 1, 2, 3}) == 4


def test_v2_parent_limit_binds_a_child_without_one(tmp_path: Path) -> None:
    root = _tree(tmp_path, V2_MOUNT, "0::/kubepods/pod1/ctr\n", {
        "/sys/fs/cgroup/kubepods/cpu.max": "max 100000\n",
        "/sys/fs/cgroup/kubepods/pod1/cpu.max": "100000 100000\n",
        "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
    })
    assert available_cpus(root, affinity=set(range(16))) == 1


def test_v2_inside_a_cgroup_namespace_reads_the_mounted_root(tmp_path: Path) -> None:
    # docker run --cpus 1.5: /proc/self/cgroup says "/", the container's cgroup is mounted
    root = _tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert available_cpus(root, affinity=set(range(4))) == 2


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = _tree(tmp_path, V1_MOUNT, "4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n", {
        "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
        "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_limit(root) == 3.0
    assert available_cpus(root, affinity=set(range(8))) == 3
    assert available_cpus(root, affinity={5, 6}) == 2  # the affinity mask is smaller


def test_v1_quota_minus_one_is_no_limit(tmp_path: Path) -> None:
    root = _tree(tmp_path, V1_MOUNT, "4:cpu,cpuacct:/\n", {
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert available_cpus(root, affinity={0, 1}) == 2


def test_hybrid_layout_takes_the_tighter_of_v1_and_v2(tmp_path: Path) -> None:
    root = _tree(tmp_path, HYBRID, "4:memory:/x\n1:cpu:/svc\n0::/svc\n", {
        "/sys/fs/cgroup/cpu/svc/cpu.cfs_quota_us": "400000\n",
        "/sys/fs/cgroup/cpu/svc/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/unified/svc/cpu.max": "200000 100000\n",
    })
    assert available_cpus(root, affinity=set(range(8))) == 2


def test_no_cgroup_files_and_tiny_quota_still_give_one(tmp_path: Path) -> None:
    assert available_cpus(tmp_path, affinity={0, 1, 2}) == 3  # nothing mounted at all
    root = _tree(tmp_path / "t", V2_MOUNT, "0::/a\n", {"/sys/fs/cgroup/a/cpu.max": "10000 100000\n"})
    assert available_cpus(root, affinity={0, 1}) == 1


def test_this_machine_matches_its_affinity_mask_at_most() -> None:
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
