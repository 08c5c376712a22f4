"""Web sessions: /c/login and /c/log_out, the cookie, the server-side session row, the
shared login throttle, CSRF on cookie requests (pages and API), security headers."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from regd.app import create_app
from tests.auth_support import (
    ADMIN,
    ADMIN_PASSWORD,
    API,
    PASSWORD,
    Starter,
    basic,
    create_project,
    create_robot,
    create_user,
)
from tests.conftest import Client, make_config
from tests.web_support import csrf_of, page, post_form, sign_in


def session_rows(data_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(data_dir / "regd.db") as db:
        return [(str(r[0]), int(r[1])) for r in db.execute("SELECT id, user_id FROM web_sessions")]


async def test_login_sets_an_httponly_lax_cookie_bound_to_a_stored_session(
    auth_start: Starter, data_dir: Path
) -> None:
    client = await auth_start()

    resp = await client.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})

    assert resp.status == 200  # Harbor's answer to a script
    cookie = resp.cookies["sid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here
    # Stored by hash: the database never holds the cookie itself.
    assert session_rows(data_dir) == [(hashlib.sha256(cookie.value.encode()).hexdigest(), 1)]
    current = await client.get(f"{API}/users/current")
    assert (await current.json())["username"] == "admin"


async def test_login_cookie_is_secure_when_regd_is_reached_over_https(auth_start: Starter) -> None:
    client = await auth_start(server={"external_url": "https://registry.example"})

    resp = await client.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})

    assert resp.status == 200 and resp.cookies["sid"]["secure"]


async def test_sign_in_form_redirects_back_and_wrong_password_is_shown_in_the_page(
    auth_start: Starter
) -> None:
    client = await auth_start()
    form = {"principal": "admin", "password": "wrong", "next": "/projects/library"}

    wrong = await client.post("/c/login", data=form, allow_redirects=False)
    form["password"] = ADMIN_PASSWORD
    right = await client.post("/c/login", data=form, allow_redirects=False)

    assert wrong.status == 401 and "invalid username or password" in await wrong.text()
    assert 'id="sign-in-error"' in await wrong.text()
    assert right.status == 303 and right.headers["Location"] == "/projects/library"


async def test_sign_in_never_redirects_to_another_site(auth_start: Starter) -> None:
    client = await auth_start()
    form = {"principal": "admin", "password": ADMIN_PASSWORD, "next": "//evil.example/x"}

    resp = await client.post("/c/login", data=form, allow_redirects=False)

    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_login_throttle_is_shared_with_the_api(auth_start: Starter) -> None:
    client = await auth_start(auth={"max_failed_logins": 2, "lockout_seconds": 600})
    await create_user(client, "alice")
    for _ in range(2):
        resp = await client.post("/c/login", data={"principal": "alice", "password": "nope"})
        assert resp.status == 401

    page_login = await client.post("/c/login", data={"principal": "alice", "password": PASSWORD})
    api_login = await client.get(f"{API}/users/current", headers=basic("alice"))

    assert page_login.status == 429 and "Retry-After" in page_login.headers
    assert api_login.status == 429


async def test_robot_accounts_cannot_sign_in(auth_start: Starter) -> None:
    client = await auth_start()
    await create_project(client, "demo")
    robot = await create_robot(client, "demo", "ci", ["pull"])

    resp = await client.post("/c/login", data={"principal": robot["name"], "password": robot["secret"]})

    assert resp.status == 403 and "sid" not in resp.cookies


async def test_log_out_ends_the_session_everywhere(auth_start: Starter, data_dir: Path) -> None:
    client = await auth_start()
    await sign_in(client, "admin", ADMIN_PASSWORD)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["sid"].value

    resp = await client.get("/c/log_out", headers={"Accept": "text/html"}, allow_redirects=False)
    client.session.cookie_jar.update_cookies({"sid": cookie})  # a copy of the old cookie
    after = await client.get(f"{API}/users/current")

    assert resp.status == 303 and resp.headers["Location"] == "/"
    assert session_rows(data_dir) == []
    assert after.status == 401


async def test_a_session_started_by_one_process_is_known_to_another(
    auth_start: Starter, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await auth_start()
    await sign_in(first, "admin", ADMIN_PASSWORD)
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))["sid"].value
    # A second app on the same data directory: what a second worker process is.
    second_app = create_app(make_config(data_dir, auth={"enabled": True}))
    async with TestClient(TestServer(second_app)) as second:
        second.session.cookie_jar.update_cookies({"sid": cookie})
        resp = await second.get(f"{API}/users/current")
        assert resp.status == 200 and (await resp.json())["username"] == "admin"


async def test_an_idle_or_old_session_ends(auth_start: Starter, data_dir: Path) -> None:
    client = await auth_start(web={"session_idle_timeout": 600, "session_lifetime": 3600})
    await sign_in(client, "admin", ADMIN_PASSWORD)
    with sqlite3.connect(data_dir / "regd.db") as db:
        db.execute("UPDATE web_sessions SET last_seen = last_seen - 601")

    resp = await client.get(f"{API}/users/current")

    assert resp.status == 401 and session_rows(data_dir) == []


async def test_a_new_password_ends_the_users_sessions(auth_start: Starter, data_dir: Path) -> None:
    client = await auth_start()
    user_id = await create_user(client, "alice")
    await sign_in(client, "alice", PASSWORD)

    body = {"new_password": "Another123"}
    resp = await client.put(f"{API}/users/{user_id}/password", json=body, headers=ADMIN)

    assert resp.status == 200 and session_rows(data_dir) == []


async def test_api_requests_with_the_session_cookie_need_the_csrf_token(auth_start: Starter) -> None:
    client = await auth_start()
    csrf = await sign_in(client, "admin", ADMIN_PASSWORD)
    body = {"project_name": "demo", "metadata": {"public": "false"}}

    without = await client.post(f"{API}/projects", json=body)
    wrong = await client.post(f"{API}/projects", json=body, headers={"X-Harbor-CSRF-Token": "x" * 43})
    right = await client.post(f"{API}/projects", json=body, headers={"X-Harbor-CSRF-Token": csrf})

    assert without.status == 403 and "CSRF" in await without.text()
    assert wrong.status == 403
    assert right.status == 201


async def test_basic_credentials_are_not_affected_by_csrf_even_beside_a_cookie(auth_start: Starter) -> None:
    client = await auth_start()
    await sign_in(client, "admin", ADMIN_PASSWORD)
    body = {"project_name": "demo", "metadata": {"public": "false"}}

    resp = await client.post(f"{API}/projects", json=body, headers=ADMIN)

    assert resp.status == 201


async def test_page_posts_without_or_with_a_wrong_token_are_refused(auth_start: Starter) -> None:
    client = await auth_start()
    csrf = await sign_in(client, "admin", ADMIN_PASSWORD)

    _, missing = await post_form(client, "/projects", {"name": "demo"}, None, status=403)
    _, wrong = await post_form(client, "/projects", {"name": "demo"}, "y" * 43, status=403)
    location, _ = await post_form(client, "/projects", {"name": "demo"}, csrf)

    assert "CSRF token missing or invalid" in missing and "CSRF" in wrong
    assert location == "/projects/demo"


async def test_a_form_of_another_site_cannot_use_a_signed_in_browser(auth_start: Starter) -> None:
    """Another site's page can make the browser POST with the cookie, not read the token."""
    client = await auth_start()
    await sign_in(client, "admin", ADMIN_PASSWORD)
    form = {"action": "delete-repository"}

    resp = await client.post("/projects/library/repositories/app", data=form, allow_redirects=False)

    assert resp.status == 403 and "CSRF" in await resp.text()


async def test_without_access_control_pages_use_a_double_submit_token(
    aiohttp_client: Callable[..., Awaitable[Client]], data_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(data_dir)))
    html = await page(client, "/")
    csrf = csrf_of(html)

    _, refused = await post_form(client, "/projects", {"name": "demo"}, "z" * 43, status=403)
    location, _ = await post_form(client, "/projects", {"name": "demo"}, csrf)

    assert "Sign in" not in html and "CSRF" in refused
    assert location == "/projects/demo"


async def test_every_page_carries_the_security_headers_and_no_inline_script(auth_start: Starter) -> None:
    client = await auth_start()
    await sign_in(client, "admin", ADMIN_PASSWORD)

    for path in ("/", "/sign-in", "/projects/library", "/admin/gc", "/admin/users", "/projects/nope"):
        resp = await client.get(path)
        html = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
        assert not re.search(r"\son[a-z]+=", html) and "style=" not in html and "<style" not in html


async def test_a_browser_gets_an_error_page_for_an_unknown_page_and_scripts_get_json(
    auth_start: Starter
) -> None:
    client = await auth_start()

    browser = await client.get("/no/such/page", headers={"Accept": "text/html,*/*"})
    script = await client.get("/no/such/page")
    api = await client.get(f"{API}/nothing", headers={"Accept": "text/html"})

    assert browser.status == 404 and "there is no page at /no/such/page" in await browser.text()
    assert (
        browser.headers["Content-Type"].startswith("text/html")
        and "Content-Security-Policy" in browser.headers
    )
    assert script.status == 404 and script.headers["Content-Type"].startswith("application/json")
    assert api.status == 404 and api.headers["Content-Type"].startswith("application/json")


async def test_static_files_are_served_with_htmx_and_its_license(auth_start: Starter) -> None:
    client = await auth_start()

    htmx = await client.get("/static/htmx-2.0.11.min.js")
    license_ = await client.get("/static/htmx-2.0.11.LICENSE")
    css = await client.get("/static/regd.css")

    assert htmx.status == 200 and "javascript" in htmx.headers["Content-Type"]
    assert "htmx" in await htmx.text() and "Zero-Clause BSD" in await license_.text()
    assert css.status == 200 and "prefers-color-scheme: dark" in await css.text()


async def test_pages_can_be_turned_off(auth_start: Starter) -> None:
    client = await auth_start(web={"enabled": False})

    index = await client.get("/")
    login = await client.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})

    assert index.status == 404 and login.status == 200
