"""Repository descriptions as HTML: Markdown by markdown-it-py with raw HTML off (so a
``<script>`` written in a description is text, not a tag), then the nh3 sanitiser
(ammonia) as a second wall: only its allowed tags and attributes remain, links keep
only safe schemes (``javascript:`` goes) and get ``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

from regd.manage import descriptions

_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render(stored: str) -> str:
    """Safe HTML for a stored (HTML-escaped, as the API keeps it) description."""
    html = _PARSER.render(descriptions.text_of(stored))
    return nh3.clean(html, link_rel="noopener noreferrer nofollow")
