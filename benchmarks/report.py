"""Turning rounds of measurements into medians, a console table, a JSON file, RESULTS.md and a
plot of regd's ratio to distribution (and both registries' share of the null ceiling)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workloads import Measurement, measurement_key

REFERENCE, CANDIDATE, CEILING = "distribution", "regd", "null"
# Workloads plotted against concurrency, in this order.
SCALING = ("push docker", "push chunked", "push monolithic", "push post", "pull whole",
           "pull range", "mixed push+pull")


@dataclass
class Summary:
    """The median over rounds of one workload on one registry."""

    workload: str
    concurrency: int
    unit: str
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_per_unit: float
    cpu_unit: str
    peak_rss_mib: float
    rss_growth_mib: float
    client_cpu_seconds: float
    other_load: float | None  # median share of a core used by other processes meanwhile
    rounds: int
    note: str

    @property
    def key(self) -> str:
        return measurement_key(self.workload, self.concurrency)


def other_load(m: Measurement) -> float | None:
    """CPU used by other processes during `m`, as a share of one core; None when `m` was too
    short for /proc's 10 ms ticks and the client's reaped-children accounting to tell."""
    if m.seconds < 2.0:
        return None
    return m.other_cpu_seconds / m.seconds


def summarize(runs: Sequence[Measurement]) -> Summary:
    med = statistics.median
    first = runs[0]
    return Summary(
        workload=first.workload, concurrency=first.concurrency, unit=first.unit,
        throughput=med(m.throughput for m in runs), p50_ms=med(m.p50_ms for m in runs),
        p99_ms=med(m.p99_ms for m in runs), errors=sum(m.errors for m in runs),
        cpu_per_unit=med(m.server_cpu_per_unit for m in runs), cpu_unit=first.cpu_unit,
        peak_rss_mib=max(m.peak_rss_mib for m in runs),
        rss_growth_mib=max(m.rss_growth_mib for m in runs),
        client_cpu_seconds=med(m.client_cpu_seconds for m in runs),
        other_load=med(loads) if (loads := [x for x in map(other_load, runs) if x is not None]) else None,
        rounds=len(runs),
        note=first.note,
    )


def summaries(results: dict[str, list[Measurement]]) -> dict[str, dict[str, Summary]]:
    """registry -> workload key -> Summary, keys in the order they were first measured."""
    out: dict[str, dict[str, Summary]] = {}
    for registry, measurements in results.items():
        grouped: dict[str, list[Measurement]] = {}
        for m in measurements:
            grouped.setdefault(m.key, []).append(m)
        out[registry] = {k: summarize(v) for k, v in grouped.items()}
    return out


def all_keys(summ: dict[str, dict[str, Summary]]) -> list[str]:
    """Every workload key, grouped by workload in the order run, then by concurrency."""
    order: dict[str, int] = {}
    found: dict[str, Summary] = {}
    for per in summ.values():
        for key, s in per.items():
            order.setdefault(s.workload, len(order))
            found.setdefault(key, s)
    return sorted(found, key=lambda k: (order[found[k].workload], found[k].concurrency))


def _fmt(s: Summary | None) -> str:
    if s is None:
        return "-"
    if s.note.startswith("not supported"):
        return "n/a"
    return f"{s.throughput:,.0f}" if s.throughput >= 100 else f"{s.throughput:,.1f}"


def comparison_rows(summ: dict[str, dict[str, Summary]]) -> list[list[str]]:
    rows = []
    for key in all_keys(summ):
        ref, cand, ceil = (summ.get(r, {}).get(key) for r in (REFERENCE, CANDIDATE, CEILING))
        unit = next(s.unit for s in (ref, cand, ceil) if s is not None)
        ratio = "-"
        if ref and cand and ref.throughput > 0 and cand.throughput > 0:
            ratio = f"{cand.throughput / ref.throughput:.2f}x"
        rows.append([key, unit, _fmt(ref), _fmt(cand), ratio, _fmt(ceil)])
    return rows


COMPARISON_HEADER = ["workload", "unit", REFERENCE, CANDIDATE, "regd/distribution", "null ceiling"]
DETAIL_HEADER = ["workload", "throughput", "p50 ms", "p99 ms", "errors", "server CPU",
                 "peak RSS MiB", "RSS growth MiB", "client CPU s", "other CPU", "rounds"]


def detail_rows(per: dict[str, Summary]) -> list[list[str]]:
    rows = []
    for key, s in per.items():
        if s.note.startswith("not supported"):
            rows.append([key, s.note, "", "", "", "", "", "", "", "", ""])
            continue
        rows.append([
            key, f"{s.throughput:,.1f} {s.unit}", f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}",
            str(s.errors), f"{s.cpu_per_unit:.3f} {s.cpu_unit}", f"{s.peak_rss_mib:.0f}",
            f"{s.rss_growth_mib:.0f}", f"{s.client_cpu_seconds:.2f}",
            "-" if s.other_load is None else f"{s.other_load:.0%}", str(s.rounds),
        ])
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def failures(results: dict[str, list[Measurement]]) -> list[str]:
    return [f"{reg}: {m.key}: {m.errors} errors, e.g. {m.error_samples[:2]}"
            for reg, ms in results.items() for m in ms if m.errors]


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_kib / (1 << 20):.1f} GiB",
        "kernel": platform.release(), "python": platform.python_version(),
    }


def versions(regd: str) -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    out = {
        "distribution": _cmd(["docker-registry", "--version"]),
        "regd": regd,
        "suite commit": _cmd(["git", "-C", str(root), "rev-parse", "--short", "HEAD"]),
        "rustc (regbench)": _cmd(["rustc", "--version"]),
    }
    for package in ("aiohttp", "uvloop", "aiosqlite"):
        try:
            from importlib.metadata import version
            out[package] = version(package)
        except Exception:
            out[package] = "not installed"
    return out


def _ratio(a: Summary | None, b: Summary | None) -> float | None:
    if a is None or b is None or not a.throughput or not b.throughput:
        return None
    return a.throughput / b.throughput


def plot(summ: dict[str, dict[str, Summary]], path: Path) -> bool:
    """How much faster, where: regd / distribution per workload against concurrency, each
    registry's share of the null ceiling, and the ratio of the one-level workloads (small
    requests, auth, memory, docker) as bars; the absolute figures are in the tables.
    False without matplotlib or without both registries."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ref, cand, ceil = (summ.get(r, {}) for r in (REFERENCE, CANDIDATE, CEILING))
    if not ref or not cand:
        return False
    scaling = [w for w in SCALING if any(s.workload == w and s.concurrency > 0 for s in cand.values())]
    single = [k for k in all_keys(summ) if k in cand and k in ref and cand[k].workload not in SCALING]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    colors = plt.get_cmap("tab10")
    levels: set[int] = set()
    for i, workload in enumerate(scaling):
        mine = sorted(((s.concurrency, s) for s in cand.values() if s.workload == workload and s.concurrency),
                      key=lambda pair: pair[0])
        ratios = [(c, _ratio(s, ref.get(s.key))) for c, s in mine]
        shares = [(c, _ratio(s, ceil.get(s.key))) for c, s in mine]
        theirs = [(s.concurrency, _ratio(s, ceil.get(s.key))) for _c, m in mine if (s := ref.get(m.key))]
        for ax, points, style, label in ((axes[0], ratios, "-", workload), (axes[1], shares, "-", workload),
                                         (axes[1], theirs, ":", "_")):
            pts = [(c, v) for c, v in points if v is not None]
            if pts:
                levels.update(c for c, _ in pts)
                ax.plot([c for c, _ in pts], [v for _, v in pts], marker="o", linestyle=style,
                        color=colors(i), label=label)
    for ax, title, ylabel in ((axes[0], "regd / distribution (throughput)", "ratio"),
                              (axes[1], "share of the null ceiling: regd solid, distribution dotted",
                               "share")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(levels), [str(c) for c in sorted(levels)])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="black", linewidth=1)
    axes[0].axhline(1.6, color="gray", linewidth=1, linestyle="--", label="1.6x (issue 13's push target)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    bars = [(k, r) for k in single if (r := _ratio(cand[k], ref[k])) is not None]
    axes[2].barh([k for k, _ in bars], [r for _, r in bars], color="tab:orange")
    axes[2].axvline(1.0, color="black", linewidth=1)
    axes[2].invert_yaxis()
    axes[2].tick_params(axis="y", labelsize=7)
    axes[2].set_title("regd / distribution, one level each", fontsize=10)
    axes[2].set_xlabel("ratio")
    axes[2].grid(alpha=0.3, axis="x")
    for y, (_k, r) in enumerate(bars):
        axes[2].text(r, y, f" {r:.2f}x", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_json(path: Path, meta: dict[str, Any], results: dict[str, list[Measurement]]) -> None:
    summ = summaries(results)
    doc = {
        "meta": meta,
        "summary": {r: {k: vars(s) for k, s in per.items()} for r, per in summ.items()},
        "measurements": {r: [m.as_dict() for m in ms] for r, ms in results.items()},
        "failures": failures(results),
    }
    path.write_text(json.dumps(doc, indent=1))


def write_markdown(path: Path, meta: dict[str, Any], results: dict[str, list[Measurement]],
                   plot_name: str | None, notes: str = "", json_name: str = "") -> None:
    summ = summaries(results)
    bad = failures(results)
    parts = ["# Benchmark results", ""]
    if bad:
        parts += ["> **INVALID RUN: some requests failed.** A run with any error does not count.", ""]
        parts += [f"> - {b}" for b in bad] + [""]
    parts += [f"Produced by `{meta['command']}` on {meta['date']} ({meta['rounds']} round(s), "
              f"registries started one at a time, in the order {', '.join(meta['order'])} "
              "each round, each with a fresh data directory)"
              + (f"; every measurement is in `results/{json_name}`." if json_name else "."), ""]
    parts += ["## Machine and versions", ""]
    parts += [f"- {k}: {v}" for k, v in {**meta["machine"], **meta["versions"]}.items()]
    parts += ["", "## Medians over rounds", "",
              "Throughput in MiB/s for blob workloads, requests/s for small requests. "
              "The ratio is regd / distribution; the null ceiling is the same load generator "
              "against a registry that does nothing (benchmarks/README.md).", "",
              md_table(COMPARISON_HEADER, comparison_rows(summ)), ""]
    if plot_name:
        parts += [f"![regd / distribution and shares of the null ceiling]({plot_name})", ""]
    for registry, per in summ.items():
        parts += [f"### {registry}", "", md_table(DETAIL_HEADER, detail_rows(per)), ""]
    if notes:
        parts += ["## Notes", "", notes.strip(), ""]
    kept = foreign_sections(path.read_text()) if path.exists() else []
    path.write_text("\n".join(parts + kept).rstrip("\n") + "\n")


# The "## " sections this module writes; any other (gc_bench.py's "## Garbage collection",
# say) is kept as it was when RESULTS.md is rewritten.
OWN_SECTIONS = ("## Machine and versions", "## Medians over rounds", "## Notes")


def foreign_sections(text: str) -> list[str]:
    chunks = text.split("\n## ")
    return ["## " + c.rstrip("\n") + "\n" for c in chunks[1:]
            if not ("## " + c).startswith(OWN_SECTIONS)]
