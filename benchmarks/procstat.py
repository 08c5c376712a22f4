"""What a server process costs: CPU seconds and peak RSS of the process and its children.

Read from /proc (proc(5)): utime+stime of every live process in the tree, plus the root's
cutime+cstime (children it has already reaped), and VmRSS of the tree sampled every 50 ms.
The machine's busy time (/proc/stat) is read too, so that CPU used by anything else while
a workload ran shows beside the result: another user's build, say, but also kernel work
that the workload itself causes and /proc charges to no process of its own (writeback of
the server's dirty pages by kworker threads, loopback softirqs).
VmHWM of the root is reset through /proc/PID/clear_refs ("5", Linux 4.0+) at the start of
a measurement so that a peak between two samples is not missed for the main process.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """The root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """utime+stime of the live tree plus what the root's reaped children used."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            # Fields 14-17 of proc(5) are utime stime cutime cstime; index 0 here is field 3.
            ticks += int(fields[11]) + int(fields[12])
            if pid == root:
                ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_bytes(root: int, pids: list[int] | None = None) -> int:
    """Summed VmRSS of the tree (or of `pids`, a tree found earlier)."""
    total = 0
    for pid in process_tree(root) if pids is None else pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            pass
    return total


def _hwm_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat, first line)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int
    machine_busy_seconds: float  # every process's, the server's and the client's included
    start_rss_bytes: int


class Monitor:
    """Measures one server process tree between start() and stop()."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self._peak = 0
        self._start_rss = 0
        self._cpu0 = 0.0
        self._busy0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        try:
            Path(f"/proc/{self.root}/clear_refs").write_text("5")
        except OSError:
            pass  # not root, or an old kernel: the sampled peak still counts
        self._cpu0 = cpu_seconds(self.root)
        self._busy0 = machine_busy_seconds()
        self._peak = self._start_rss = rss_bytes(self.root)
        self._thread.start()

    def _sample(self) -> None:
        # Walking all of /proc is the costly part: find the tree once a second only.
        pids, found = process_tree(self.root), time.monotonic()
        while not self._stop.wait(self.interval):
            if time.monotonic() - found > 1.0:
                pids, found = process_tree(self.root), time.monotonic()
            self._peak = max(self._peak, rss_bytes(self.root, pids))

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, rss_bytes(self.root), _hwm_bytes(self.root))
        busy = machine_busy_seconds() - self._busy0
        return Usage(cpu_seconds(self.root) - self._cpu0, peak, busy, self._start_rss)
