"""Descriptions as HTML (markdown-it-py without raw HTML, then nh3), and the pages'
human sizes and times."""

from __future__ import annotations

import html

import pytest

from regd.web.markdown import render
from regd.web.render import ago, human_size


def rendered(text: str) -> str:
    return render(html.escape(text, quote=True))  # stored as the API stores it


@pytest.mark.parametrize(
    ("text", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<img src="x" onerror="alert(1)">', "<img"),
        ("[x](javascript:alert(1))", 'href="javascript'),
        ('<a href="javascript:alert(1)">x</a>', "<a "),
        ("[x](JaVaScRiPt:alert(1))", 'href="JaVaScRiPt'),
        ("<iframe src=//evil></iframe>", "<iframe"),
        ('<div style="position:fixed">x</div>', "<div"),
    ],
)
def test_html_written_into_a_description_comes_out_inert(text: str, forbidden: str) -> None:
    assert forbidden not in rendered(text)


def test_markdown_renders_headings_emphasis_code_lists_tables_and_links() -> None:
    out = rendered("# Hi\n\n*a* **b** `x < y`\n\n- one\n\n| h |\n|---|\n| c |\n\n[d](https://d.example/)")

    assert "<h1>Hi</h1>" in out and "<em>a</em>" in out and "<strong>b</strong>" in out
    assert "<code>x &lt; y</code>" in out and "<li>one</li>" in out and "<td>c</td>" in out
    assert '<a href="https://d.example/" rel="noopener noreferrer nofollow">d</a>' in out


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**2 + 1, "5.0 MiB"), (3 * 1024**3, "3.0 GiB")],
)
def test_sizes_are_human(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [(5, "just now"), (60, "1 minute ago"), (7200, "2 hours ago"), (3 * 86400, "3 days ago")],
)
def test_times_are_human(delta: float, text: str) -> None:
    assert ago(1_000_000.0 - delta, now=1_000_000.0) == text
    assert ago(None) == "never"
