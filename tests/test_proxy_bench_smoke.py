"""The proxy-cache benchmark still runs: one round of a 1 MiB image through regd from
CNCF distribution. No timing is asserted; only that every pull worked and the table was
written."""

from __future__ import annotations

from pathlib import Path

from benchmarks import proxy_bench


def test_proxy_bench_runs_every_pull_and_writes_the_table(tmp_path: Path) -> None:
    markdown = tmp_path / "RESULTS-proxy.md"
    status = proxy_bench.main(
        ["--layers", "1", "--layer-mib", "1", "--rounds", "1", "--markdown", str(markdown)]
    )
    assert status == 0
    text = markdown.read_text()
    for kind in proxy_bench.KINDS:
        assert f"| {kind} |" in text
    assert "cold through regd / direct from the upstream" in text
