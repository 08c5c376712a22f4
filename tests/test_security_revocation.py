"""Issue 15, findings 4 and 8, against a real ``regd serve``: tokens that outlive what
they were issued on (a password, a membership, a robot, a user, a project), and a
deleted project's blobs reachable through a project re-created under its name.

Revocation runs with two worker processes: each keeps cached account and permission
lookups, and a change made through one worker must hold in the other at once. Requests
go on fresh connections, which the kernel spreads over both."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.regd_process import RegdProcess
from tests.security_support import ADMIN, API, Api, basic, bearer, session_from, start_regd

TRIES = 6  # requests per check, on fresh connections (both workers)
PUSH = ["repository:demo/app:pull,push"]


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = start_regd(tmp_path, server={"workers": 2})
    yield process
    process.close()


async def _statuses(api: Api, token: str) -> set[int]:
    """What a push with ``token`` answers (starting an upload session, then cancelling it)."""
    seen = set()
    for _ in range(TRIES):
        status, _, headers = await api.call("POST", "/v2/demo/app/blobs/uploads/", bearer(token))
        seen.add(status)
        if status == 202:
            await api.call("DELETE", headers["Location"], bearer(token))
    return seen


async def test_tokens_stop_working_when_what_they_were_issued_on_changes(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        await api.project("demo")
        bob_id = await api.user("bob")
        member = await api.member("demo", "bob", 2)

        token = await api.token(PUSH, basic("bob"))
        assert await _statuses(api, token) == {202}

        # A new password ends the tokens issued on the old one.
        new_password = "N3wPassword"
        body = {"new_password": new_password}
        await api.expect(200, "PUT", f"{API}/users/{bob_id}/password", headers=ADMIN, json=body)
        assert await _statuses(api, token) == {401}
        token = await api.token(PUSH, basic("bob", new_password))
        assert await _statuses(api, token) == {202}

        # A member removed, or demoted, loses what the token says.
        await api.expect(200, "DELETE", f"{API}/projects/demo/members/{member}", headers=ADMIN)
        assert await _statuses(api, token) == {403}
        await api.member("demo", "bob", 3)  # guest: pull only
        assert await _statuses(api, token) == {403}

        # A deleted user's token is dead.
        await api.expect(200, "DELETE", f"{API}/users/{bob_id}", headers=ADMIN)
        assert await _statuses(api, token) == {401}

        # Robots: disabled, secret refreshed, deleted.
        robot = await api.robot("demo", "ci", ["push"])
        path = f"{API}/robots/{robot['id']}"
        token = await api.token(PUSH, basic(robot["name"], robot["secret"]))
        assert await _statuses(api, token) == {202}
        await api.expect(200, "PUT", path, headers=ADMIN, json={"disable": True})
        assert await _statuses(api, token) == {401}
        await api.expect(200, "PUT", path, headers=ADMIN, json={"disable": False})
        assert await _statuses(api, token) == {202}
        await api.expect(200, "PATCH", path, headers=ADMIN, json={})
        assert await _statuses(api, token) == {401}
        refreshed = await api.expect(200, "PATCH", path, headers=ADMIN, json={})
        token = await api.token(PUSH, basic(robot["name"], refreshed["secret"]))
        assert await _statuses(api, token) == {202}
        await api.expect(200, "DELETE", path, headers=ADMIN)
        assert await _statuses(api, token) == {401}


async def test_a_deleted_project_leaves_nothing_to_whoever_recreates_its_name(tmp_path: Path) -> None:
    regd = start_regd(tmp_path)  # the default: any user may create projects
    try:
        async with session_from() as http:
            api = Api(http, regd)
            await api.project("secret")
            await api.user("alice")
            await api.user("mallory")
            await api.member("secret", "alice", 2)
            alice = basic("alice")
            manifest, (config, layer) = await api.push_image("secret/app", "v1", alice)
            _, _, headers = await api.call("POST", "/v2/secret/app/blobs/uploads/", alice)
            upload = headers["Location"]
            await api.expect(202, "PATCH", upload, headers=alice, data=b"half a layer")
            old_token = await api.token(["repository:secret/app:pull,push"], alice)

            # Only the artifacts go; their blob links and the session stay behind.
            await api.expect(202, "DELETE", f"/v2/secret/app/manifests/{manifest}", headers=ADMIN)
            await api.expect(200, "DELETE", f"{API}/projects/secret", headers=ADMIN)

            db = sqlite3.connect(regd.data_dir / "regd.db")
            try:
                assert db.execute(
                    "SELECT count(*) FROM repositories WHERE project = 'secret'"
                ).fetchone() == (0,)
                assert db.execute("SELECT count(*) FROM uploads").fetchone() == (0,)
            finally:
                db.close()
            assert list((regd.data_dir / "uploads").iterdir()) == []

            # Mallory takes the name and looks for the old layers.
            await api.project("secret", headers=basic("mallory"))
            mallory = basic("mallory")
            for digest in (config, layer):
                status, body, _ = await api.call("GET", f"/v2/secret/app/blobs/{digest}", mallory)
                assert status == 404 and body["errors"][0]["code"] == "BLOB_UNKNOWN"
            mount = {"mount": layer, "from": "secret/app"}
            status, _, headers = await api.call("POST", "/v2/secret/x/blobs/uploads/", mallory, params=mount)
            assert status == 202  # not mounted: a fresh session instead
            await api.call("DELETE", headers["Location"], mallory)
            status, _, _ = await api.call("GET", upload, alice)
            assert status in (403, 404)

            # Alice's token for the old project does not open the new one.
            status, body, _ = await api.call("POST", "/v2/secret/app/blobs/uploads/", bearer(old_token))
            assert status == 403, body
    finally:
        regd.close()
