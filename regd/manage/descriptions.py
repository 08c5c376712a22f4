"""Repository descriptions: how they are stored and read back.

Harbor's API stores a description HTML-escaped (``PUT .../repositories/{r}`` with
``{"description"}``) and answers it so; regd keeps that for API clients. ``text_of`` gives
back what the user wrote (for an edit box, and for the Markdown renderer of the pages,
which must see the user's text, not its escaped form).
"""

from __future__ import annotations

import html

from regd.errors import ErrorCode, RegistryError

MAX_LENGTH = 65536


def stored_form(text: str) -> str:
    if len(text) > MAX_LENGTH:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"description must be at most {MAX_LENGTH} characters")
    return html.escape(text, quote=True)


def text_of(stored: str) -> str:
    return html.unescape(stored)
