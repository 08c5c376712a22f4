"""The web pages benchmark still runs (tiny sizes; no timing is asserted): every page
answers 200 and a render reads no blob or manifest from disk once warmed up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks import web_pages


def test_tiny_web_pages_benchmark_renders_every_page_from_sqlite(tmp_path: Path) -> None:
    _, results = asyncio.run(web_pages.measure(repositories=17, tags=20, rounds=2, data_dir=tmp_path))

    assert [r["page"] for r in results] == [name for name, _ in web_pages.pages(17, 20)]
    assert all(r["bytes"] > 0 and r["reads_per_render"] == 0 for r in results)
    table = web_pages.table(17, 20, 2, 1.0, results)
    assert table.startswith("## Web pages") and table.count("\n| ") == len(results) + 1
