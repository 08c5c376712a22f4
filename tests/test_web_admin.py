"""The administration pages: Garbage Collection and Users, for system administrators."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from tests.auth_support import (
    ADMIN,
    ADMIN_PASSWORD,
    API,
    PASSWORD,
    Starter,
    basic,
    create_user,
    push_image_as,
)
from tests.conftest import Client
from tests.web_support import page, post_form, sign_in, texts


@pytest.fixture
async def admin(auth_start: Starter) -> tuple[Client, str]:
    client = await auth_start(gc={"grace_period": 0})
    return client, await sign_in(client, "admin", ADMIN_PASSWORD)


async def finished_runs(client: Client) -> list[tuple[str, str]]:
    """(id, status) of the history's runs once none is pending or running."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = await page(client, "/admin/gc")
        runs = re.findall(r'data-run="(\d+)" data-status="(\w+)"', html)
        if runs and all(status not in ("Pending", "Running") for _, status in runs):
            return runs
        await asyncio.sleep(0.05)
    raise AssertionError("the collection did not finish within a minute")


async def test_only_system_administrators_open_the_administration(auth_start: Starter) -> None:
    client = await auth_start()
    await create_user(client, "alice")
    anonymous_gc = await page(client, "/admin/gc", status=401)
    csrf = await sign_in(client, "alice", PASSWORD)

    html = await page(client, "/")
    await page(client, "/admin/gc", status=403)
    await page(client, "/admin/users", status=403)
    _, refused = await post_form(client, "/admin/gc", {"action": "run"}, csrf, status=403)

    assert "Sign in" in anonymous_gc
    assert "Garbage Collection" not in html and "/admin/users" not in html
    assert "only system administrators may do this" in refused


async def test_gc_now_frees_a_deleted_tag_and_shows_the_run_with_its_log(admin: tuple[Client, str]) -> None:
    client, csrf = admin
    await push_image_as(client, "library/app", "v1", ADMIN)
    resp = await client.delete(f"{API}/projects/library/repositories/app", headers=ADMIN)
    assert resp.status == 200

    location, _ = await post_form(client, "/admin/gc", {"action": "run", "delete_untagged": "true"}, csrf)
    runs = await finished_runs(client)
    html = await page(client, "/admin/gc")
    row = html[html.index(f'data-run="{runs[0][0]}"') :]
    log = await page(client, f"/admin/gc/{runs[0][0]}/log")

    assert location == f"/admin/gc?started={runs[0][0]}"
    assert runs[0][1] == "Success"
    freed = re.search(r'class="num freed">([^<]+)<', row)
    assert freed is not None and freed.group(1) not in ("0 B", "")
    assert "<td>No</td>" in row[:400]  # not a dry run
    assert texts(log, "gc-log")  # the run's log, in the page


async def test_dry_run_is_recorded_as_such_and_frees_nothing(
    admin: tuple[Client, str], data_dir: Path
) -> None:
    client, csrf = admin
    await push_image_as(client, "library/app", "v1", ADMIN)
    await client.delete(f"{API}/projects/library/repositories/app", headers=ADMIN)
    blobs_before = sorted(p.name for p in (data_dir / "blobs").rglob("*") if p.is_file())

    await post_form(client, "/admin/gc", {"action": "dry-run"}, csrf)
    runs = await finished_runs(client)
    html = await page(client, "/admin/gc")

    assert runs[0][1] == "Success"
    assert "<td>Yes</td>" in html[html.index(f'data-run="{runs[0][0]}"') :][:400]
    assert sorted(p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()) == blobs_before


async def test_gc_schedule_is_set_and_shown(admin: tuple[Client, str]) -> None:
    client, csrf = admin

    await post_form(
        client, "/admin/gc", {"action": "schedule", "type": "Custom", "cron": "0 30 4 * * *"}, csrf
    )
    html = await page(client, "/admin/gc")
    resp = await client.get(f"{API}/system/gc/schedule", headers=ADMIN)

    assert '<option value="Custom" selected>' in html and "(0 30 4 * * *)" in texts(html, "gc-next")
    assert (await resp.json())["schedule"]["cron"] == "0 30 4 * * *"
    await post_form(client, "/admin/gc", {"action": "schedule", "type": "None"}, csrf)
    assert texts(await page(client, "/admin/gc"), "gc-next") == "No scheduled collection."


async def test_a_bad_cron_is_shown_in_the_page(admin: tuple[Client, str]) -> None:
    client, csrf = admin

    _, html = await post_form(
        client, "/admin/gc", {"action": "schedule", "type": "Custom", "cron": "every day"}, csrf, status=400
    )

    assert "cron" in texts(html, "form-error").lower()


async def test_users_are_added_and_errors_shown(admin: tuple[Client, str]) -> None:
    client, csrf = admin

    _, added = await post_form(
        client, "/admin/users", {"action": "add", "username": "bob", "password": PASSWORD}, csrf, status=200
    )
    _, weak = await post_form(
        client, "/admin/users", {"action": "add", "username": "eve", "password": "weak"}, csrf, status=400
    )
    _, taken = await post_form(
        client, "/admin/users", {"action": "add", "username": "bob", "password": PASSWORD}, csrf, status=409
    )

    assert texts(added, "form-done") == "Added user bob." and 'data-user="bob"' in added
    assert "uppercase" in texts(weak, "form-error")
    assert texts(taken, "form-error") == "username bob is already used"
    assert (await client.get(f"{API}/users/current", headers=basic("bob"))).status == 200


async def test_an_administrator_resets_a_password_and_makes_an_administrator(
    admin: tuple[Client, str],
) -> None:
    client, csrf = admin
    user_id = await create_user(client, "bob")

    await post_form(
        client,
        "/admin/users",
        {"action": "reset-password", "user": str(user_id), "password": "Fresh1234"},
        csrf,
        200,
    )
    await post_form(client, "/admin/users", {"action": "make-admin", "user": str(user_id)}, csrf)
    resp = await client.get(f"{API}/users/current", headers=basic("bob", "Fresh1234"))

    assert resp.status == 200 and (await resp.json())["sysadmin_flag"] is True
    html = await page(client, "/admin/users")
    assert "Revoke Admin" in html[html.index('data-user="bob"') :]


async def test_users_are_searched_and_paged(admin: tuple[Client, str]) -> None:
    client, _ = admin
    for i in range(16):
        await create_user(client, f"user{i:02d}")

    first = await page(client, "/admin/users")
    second = await page(client, "/admin/users?page=2")
    found = await page(client, "/admin/users?q=user1")

    assert 'data-user="user13"' in first and 'data-user="user14"' not in first
    assert 'data-user="user15"' in second
    assert 'data-user="user10"' in found and 'data-user="admin"' not in found
