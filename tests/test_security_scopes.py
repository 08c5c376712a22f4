"""Issue 15, finding 1: one token request with a flood of scopes must not freeze the
daemon. The attack is mounted against a real ``regd serve`` with auth on, as any
logged-in account can (here a pull-only robot): 40,000 scopes on one resource with
distinct actions (quadratic to merge before the fix: 33 s on the event loop), and
24,000 distinct repositories (24,000 SQLite lookups and a 4.4 MB token)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from regd.auth import Access
from regd.auth.scopes import MAX_SCOPES, parse_scopes
from regd.errors import RegistryError
from tests.auth_support import ADMIN_PASSWORD
from tests.regd_process import RegdProcess


def test_parse_scopes_is_bounded_and_keeps_only_known_actions() -> None:
    # One scope whose action list is huge: linear to parse, only known actions kept.
    actions = ",".join(f"a{i}" for i in range(100_000))
    parsed = parse_scopes([f"repository:a/b:{actions},push,pull,pull", "unknown:x:pull"])

    assert parsed == [Access("repository", "a/b", ("pull", "push"))]


def test_parse_scopes_refuses_more_than_the_cap() -> None:
    at_cap = ["repository:a/b:pull"] * MAX_SCOPES

    assert parse_scopes(at_cap) == [Access("repository", "a/b", ("pull",))]
    with pytest.raises(RegistryError, match=f"at most {MAX_SCOPES}"):
        parse_scopes([" ".join([*at_cap, "repository:a/b:pull"])])


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(
        tmp_path,
        {"auth": {"enabled": True}},
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    process.start()
    yield process
    process.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_a_scope_flood_is_refused_and_the_daemon_keeps_serving(regd: RegdProcess) -> None:
    base = f"http://127.0.0.1:{regd.port}"
    admin = {"Authorization": _basic("admin", ADMIN_PASSWORD)}
    robot_body = {
        "name": "reader",
        "level": "project",
        "duration": -1,
        "permissions": [
            {
                "kind": "project",
                "namespace": "library",
                "access": [{"resource": "repository", "action": "pull"}],
            }
        ],
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v2.0/robots", json=robot_body, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
            robot = await resp.json()
        auth = {"Authorization": _basic(robot["name"], robot["secret"])}

        floods = {
            "one resource, distinct actions": [f"repository:x:{i}" for i in range(40_000)],
            "distinct repositories": [f"repository:library/r{i}:pull" for i in range(24_000)],
            "unknown resource types": [f"thing:x{i}:pull" for i in range(40_000)],
        }
        for what, scopes in floods.items():
            form = {"grant_type": "password", "username": robot["name"], "password": robot["secret"]}
            form["scope"] = " ".join(scopes)
            async with http.post(f"{base}/service/token", data=form) as resp:
                body = await resp.json()
                assert resp.status == 400, (what, body)
                assert body["errors"][0]["code"] == "BAD_REQUEST"
                assert f"at most {MAX_SCOPES}" in body["errors"][0]["message"], what
            # The same flood through GET (repeated scope parameters), as many as fit in
            # a request line (longer ones are refused by the HTTP parser with 431).
            query = [("scope", s) for s in scopes[:200]]
            async with http.get(f"{base}/service/token", params=query, headers=auth) as resp:
                assert resp.status == 400, what
                assert f"at most {MAX_SCOPES}" in (await resp.json())["errors"][0]["message"], what

        # At the cap, a token is issued and carries only what the robot holds.
        query = [("scope", f"repository:library/r{i}:pull,push,a{i}") for i in range(MAX_SCOPES)]
        async with http.get(f"{base}/service/token", params=query, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert len(claims["access"]) == MAX_SCOPES
        assert {tuple(a["actions"]) for a in claims["access"]} == {("pull",)}

        async with http.get(f"{base}/v2/", headers=auth) as resp:
            assert resp.status == 200
