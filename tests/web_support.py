"""Helpers for the web interface's app tests: sign in through /c/login as a browser
does, read the CSRF token and what a page shows."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from tests.conftest import Client

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def page(client: Client, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text
    assert resp.headers["Content-Type"].startswith("text/html")
    return text


def csrf_of(html: str) -> str:
    found = CSRF_META.search(html)
    assert found is not None, html[:500]
    return found.group(1)


async def sign_in(client: Client, username: str, password: str) -> str:
    """Sign in with the Sign in form (ending any session first); the new CSRF token."""
    client.session.cookie_jar.clear()
    resp = await client.post(
        "/c/login", data={"principal": username, "password": password, "next": "/"}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    return csrf_of(await page(client, "/"))


async def post_form(
    client: Client, path: str, data: dict[str, Any], csrf: str | None, status: int = 303
) -> tuple[str, str]:
    """POST a form (with ``_csrf`` unless None); (Location or "", body)."""
    body = dict(data)
    if csrf is not None:
        body["_csrf"] = csrf
    resp = await client.post(path, data=body, allow_redirects=False)
    text = await resp.text()
    assert resp.status == status, text
    return resp.headers.get("Location", ""), text


def texts(html: str, element_id: str) -> str:
    """The text inside the element with ``id`` (up to its closing tag), tags removed."""
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', html, re.S)
    assert found is not None, f"no #{element_id} in page"
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()
