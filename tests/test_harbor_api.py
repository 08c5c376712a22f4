"""The management API under /api/v2.0 over the real app and a real SQLite file: every
endpoint, with each role, including refusals; Harbor's JSON shapes and pagination."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.auth_support import (
    ADMIN,
    API,
    PASSWORD,
    Starter,
    add_member,
    basic,
    create_project,
    create_robot,
    create_user,
    push_image_as,
    setup_roles,
    token,
)
from tests.conftest import Client, assert_error, image_manifest, sha512

AiohttpClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def demo(auth_client: Client) -> Client:
    """``auth_client`` with project demo (private), a user per role and demo/app:v1."""
    await setup_roles(auth_client)
    return auth_client


async def body_of(resp: Any) -> Any:
    return orjson.loads(await resp.read())


# -- system --------------------------------------------------------------------------


async def test_ping_answers_pong(auth_client: Client) -> None:
    resp = await auth_client.get(f"{API}/ping")

    assert resp.status == 200
    assert await resp.text() == "Pong"


async def test_systeminfo_tells_anonymous_callers_only_the_public_part(auth_client: Client) -> None:
    anonymous = await body_of(await auth_client.get(f"{API}/systeminfo"))
    admin = await body_of(await auth_client.get(f"{API}/systeminfo", headers=ADMIN))

    assert anonymous == {
        "auth_mode": "db_auth",
        "primary_auth_mode": False,
        "self_registration": False,
        "banner_message": "",
        "oidc_provider_name": "",
    }
    assert admin["external_url"] == "http://127.0.0.1:5000"
    assert admin["registry_url"] == "127.0.0.1:5000"
    assert admin["has_ca_root"] is False
    assert admin["project_creation_restriction"] == "everyone"


async def test_getcert_is_404_without_a_ca(auth_client: Client) -> None:
    await assert_error(await auth_client.get(f"{API}/systeminfo/getcert"), 404, "NOT_FOUND")


async def test_getcert_answers_the_ca_as_ca_crt_without_login(auth_start: Starter, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    client = await auth_start(server={"ca_cert": str(ca), "external_url": "https://reg.example.com"})

    resp = await client.get(f"{API}/systeminfo/getcert")
    info = await body_of(await client.get(f"{API}/systeminfo", headers=ADMIN))

    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == "attachment; filename=ca.crt"
    assert await resp.read() == ca.read_bytes()
    assert info["has_ca_root"] is True


async def test_wrong_basic_credentials_on_the_api_are_401(auth_client: Client) -> None:
    await assert_error(
        await auth_client.get(f"{API}/projects", headers=basic("admin", "Nope12345")), 401, "UNAUTHORIZED"
    )


# -- projects ------------------------------------------------------------------------


async def test_create_project_answers_201_with_location(auth_client: Client) -> None:
    resp = await auth_client.post(
        f"{API}/projects", json={"project_name": "demo", "metadata": {"public": "false"}}, headers=ADMIN
    )
    by_name = await auth_client.post(
        f"{API}/projects",
        json={"project_name": "named"},
        headers={**ADMIN, "X-Resource-Name-In-Location": "true"},
    )

    assert resp.status == 201
    assert resp.headers["Location"].startswith(f"{API}/projects/")
    assert by_name.headers["Location"] == f"{API}/projects/named"


async def test_created_project_has_harbor_shape_and_defaults_to_private(auth_client: Client) -> None:
    await create_user(auth_client, "alice")
    resp = await auth_client.post(f"{API}/projects", json={"project_name": "mine"}, headers=basic("alice"))
    assert resp.status == 201

    project = await body_of(
        await auth_client.get(
            f"{API}/projects/mine", headers={**basic("alice"), "X-Is-Resource-Name": "true"}
        )
    )

    assert project["name"] == "mine"
    assert project["owner_name"] == "alice"
    assert project["metadata"]["public"] == "false"
    assert project["current_user_role_id"] == 1
    assert project["repo_count"] == 0
    for key in ("project_id", "owner_id", "creation_time", "update_time", "deleted", "cve_allowlist"):
        assert key in project


@pytest.mark.parametrize("name", ["Demo", "-demo", "demo_", "de mo", "", "a" * 256])
async def test_create_project_refuses_bad_names(auth_client: Client, name: str) -> None:
    resp = await auth_client.post(f"{API}/projects", json={"project_name": name}, headers=ADMIN)

    body = await assert_error(resp, 400, "BAD_REQUEST")
    assert "lower case" in body["errors"][0]["message"]


async def test_create_project_refuses_a_non_string_public(auth_client: Client) -> None:
    resp = await auth_client.post(
        f"{API}/projects", json={"project_name": "p", "metadata": {"public": True}}, headers=ADMIN
    )

    await assert_error(resp, 400, "BAD_REQUEST")


async def test_deprecated_top_level_public_is_honoured(auth_client: Client) -> None:
    await auth_client.post(f"{API}/projects", json={"project_name": "p", "public": True}, headers=ADMIN)

    by_name = {"X-Is-Resource-Name": "true"}
    project = await body_of(await auth_client.get(f"{API}/projects/p", headers=by_name))

    assert project["metadata"]["public"] == "true"


async def test_duplicate_project_is_409(auth_client: Client) -> None:
    resp = await auth_client.post(f"{API}/projects", json={"project_name": "library"}, headers=ADMIN)

    body = await assert_error(resp, 409, "CONFLICT")
    assert body["errors"][0]["message"] == "The project named library already exists"


async def test_anonymous_cannot_create_projects(auth_client: Client) -> None:
    anonymous = await auth_client.post(f"{API}/projects", json={"project_name": "p"})
    await assert_error(anonymous, 401, "UNAUTHORIZED")


async def test_adminonly_restriction_refuses_users(auth_start: Starter) -> None:
    client = await auth_start(auth={"project_creation_restriction": "adminonly"})
    await create_user(client, "alice")

    resp = await client.post(f"{API}/projects", json={"project_name": "p"}, headers=basic("alice"))

    await assert_error(resp, 403, "FORBIDDEN")


async def test_robots_cannot_create_projects(demo: Client) -> None:
    robot = await create_robot(demo, "demo", "ci", ["push"])

    resp = await demo.post(
        f"{API}/projects", json={"project_name": "p"}, headers=basic(robot["name"], robot["secret"])
    )

    await assert_error(resp, 403, "FORBIDDEN")


async def test_head_project_tells_whether_it_exists(auth_client: Client) -> None:
    found = await auth_client.head(f"{API}/projects", params={"project_name": "library"}, headers=ADMIN)
    missing = await auth_client.head(f"{API}/projects", params={"project_name": "nope"}, headers=ADMIN)
    anonymous = await auth_client.head(f"{API}/projects", params={"project_name": "library"})

    assert (found.status, missing.status, anonymous.status) == (200, 404, 401)


async def test_project_list_shows_each_caller_what_they_may_see(demo: Client) -> None:
    await create_project(demo, "hidden")

    def names(body: list[dict[str, Any]]) -> list[str]:
        return [p["name"] for p in body]

    anonymous = names(await body_of(await demo.get(f"{API}/projects")))
    guest = names(await body_of(await demo.get(f"{API}/projects", headers=basic("gu"))))
    outsider = names(await body_of(await demo.get(f"{API}/projects", headers=basic("out"))))
    admin = names(await body_of(await demo.get(f"{API}/projects", headers=ADMIN)))

    assert anonymous == ["library"]
    assert guest == ["demo", "library"]
    assert outsider == ["library"]
    assert admin == ["demo", "hidden", "library"]


async def test_project_list_filters_by_name_and_public(demo: Client) -> None:
    fuzzy = await body_of(await demo.get(f"{API}/projects", params={"name": "em"}, headers=ADMIN))
    exact = await body_of(await demo.get(f"{API}/projects", params={"q": "name=demo"}, headers=ADMIN))
    public = await body_of(await demo.get(f"{API}/projects", params={"public": "true"}, headers=ADMIN))

    assert [p["name"] for p in fuzzy] == ["demo"]
    assert [p["name"] for p in exact] == ["demo"]
    assert [p["name"] for p in public] == ["library"]


async def test_project_list_pages_with_total_count_and_link(auth_client: Client) -> None:
    for name in ("a1", "a2", "a3"):
        await create_project(auth_client, name)

    first = await auth_client.get(f"{API}/projects", params={"page": "1", "page_size": "2"}, headers=ADMIN)
    second = await auth_client.get(f"{API}/projects", params={"page": "2", "page_size": "2"}, headers=ADMIN)

    assert first.headers["X-Total-Count"] == "4"
    assert [p["name"] for p in await body_of(first)] == ["a1", "a2"]
    assert first.headers["Link"] == f'<{API}/projects?page=2&page_size=2>; rel="next"'
    assert [p["name"] for p in await body_of(second)] == ["a3", "library"]
    assert second.headers["Link"] == f'<{API}/projects?page=1&page_size=2>; rel="prev"'


@pytest.mark.parametrize("params", [{"page_size": "101"}, {"page": "0"}, {"page_size": "x"}])
async def test_bad_pagination_is_400(auth_client: Client, params: dict[str, str]) -> None:
    await assert_error(await auth_client.get(f"{API}/projects", params=params), 400, "BAD_REQUEST")


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("lg", 200), ("out", 403), (None, 401)])
async def test_get_private_project_by_role(demo: Client, user: str | None, status: int) -> None:
    headers = basic(user) if user else {}

    resp = await demo.get(f"{API}/projects/demo", headers=headers)

    assert resp.status == status


async def test_get_project_by_id_and_missing_project(demo: Client) -> None:
    listed = await body_of(await demo.get(f"{API}/projects", params={"name": "demo"}, headers=ADMIN))

    by_id = await body_of(await demo.get(f"{API}/projects/{listed[0]['project_id']}", headers=ADMIN))

    assert by_id["name"] == "demo"
    await assert_error(await demo.get(f"{API}/projects/nope", headers=ADMIN), 404, "NOT_FOUND")


async def test_anonymous_gets_a_public_project(auth_client: Client) -> None:
    assert (await auth_client.get(f"{API}/projects/library")).status == 200


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("ma", 403), ("dev", 403), ("out", 403)])
async def test_update_project_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.put(f"{API}/projects/demo", json={"metadata": {"public": "true"}}, headers=basic(user))

    assert resp.status == status
    project = await body_of(await demo.get(f"{API}/projects/demo", headers=ADMIN))
    assert project["metadata"]["public"] == ("true" if status == 200 else "false")


async def test_delete_project_with_repositories_is_412(demo: Client) -> None:
    deletable = await body_of(await demo.get(f"{API}/projects/demo/_deletable", headers=ADMIN))

    resp = await demo.delete(f"{API}/projects/demo", headers=ADMIN)

    await assert_error(resp, 412, "PRECONDITION")
    assert deletable == {
        "deletable": False,
        "message": "the project contains repositories, can not be deleted",
    }


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("ma", 403), (None, 401)])
async def test_delete_empty_project_by_role(auth_client: Client, user: str | None, status: int) -> None:
    await create_project(auth_client, "empty")
    await create_user(auth_client, "pa")
    await auth_client.post(
        f"{API}/projects/empty/members", json={"role_id": 1, "member_user": {"username": "pa"}}, headers=ADMIN
    )
    await create_user(auth_client, "ma")
    await auth_client.post(
        f"{API}/projects/empty/members", json={"role_id": 4, "member_user": {"username": "ma"}}, headers=ADMIN
    )

    resp = await auth_client.delete(f"{API}/projects/empty", headers=basic(user) if user else {})

    assert resp.status == status
    remaining = await auth_client.get(f"{API}/projects/empty", headers=ADMIN)
    assert remaining.status == (404 if status == 200 else 200)


async def test_project_summary_counts_repositories_and_members(demo: Client) -> None:
    summary = await body_of(await demo.get(f"{API}/projects/demo/summary", headers=basic("gu")))

    assert summary == {
        "repo_count": 1,
        "project_admin_count": 2,  # pa and admin, the creator
        "developer_count": 1,
        "guest_count": 1,
        "maintainer_count": 1,
        "limited_guest_count": 1,
    }


# -- members -------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("gu", 200), ("lg", 403), ("out", 403)])
async def test_list_members_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.get(f"{API}/projects/demo/members", headers=basic(user))

    assert resp.status == status
    if status == 200:
        members = await body_of(resp)
        assert resp.headers["X-Total-Count"] == "6"
        dev = next(m for m in members if m["entity_name"] == "dev")
        assert dev["role_id"] == 2 and dev["role_name"] == "developer" and dev["entity_type"] == "u"


@pytest.mark.parametrize(("user", "status"), [("pa", 201), ("ma", 403), ("dev", 403)])
async def test_add_member_by_role(demo: Client, user: str, status: int) -> None:
    body = {"role_id": 3, "member_user": {"username": "out"}}

    resp = await demo.post(f"{API}/projects/demo/members", json=body, headers=basic(user))

    assert resp.status == status
    members = await body_of(await demo.get(f"{API}/projects/demo/members", headers=ADMIN))
    added = [m for m in members if m["entity_name"] == "out"]
    assert [m["role_id"] for m in added] == ([3] if status == 201 else [])


async def test_add_member_refusals(demo: Client) -> None:
    def add(body: dict[str, Any]) -> Any:
        return demo.post(f"{API}/projects/demo/members", json=body, headers=ADMIN)

    await assert_error(await add({"role_id": 3, "member_user": {"username": "gu"}}), 409, "CONFLICT")
    await assert_error(await add({"role_id": 9, "member_user": {"username": "out"}}), 400, "BAD_REQUEST")
    await assert_error(await add({"role_id": 3, "member_user": {"username": "ghost"}}), 404, "NOT_FOUND")
    await assert_error(await add({"role_id": 3}), 400, "BAD_REQUEST")


async def test_change_member_role_then_remove(demo: Client) -> None:
    members = await body_of(await demo.get(f"{API}/projects/demo/members?entityname=gu", headers=ADMIN))
    member_id = members[0]["id"]
    url = f"{API}/projects/demo/members/{member_id}"

    refused = await demo.put(url, json={"role_id": 1}, headers=basic("dev"))
    changed = await demo.put(url, json={"role_id": 2}, headers=basic("pa"))
    now = await body_of(await demo.get(url, headers=basic("gu")))
    pushed = await demo.post("/v2/demo/app/blobs/uploads/", headers=basic("gu"))
    removed = await demo.delete(url, headers=basic("pa"))
    gone = await demo.get(url, headers=ADMIN)

    await assert_error(refused, 403, "FORBIDDEN")
    assert changed.status == 200
    assert now["role_name"] == "developer"
    assert pushed.status == 202
    assert removed.status == 200
    await assert_error(gone, 404, "NOT_FOUND")


# -- repositories --------------------------------------------------------------------


@pytest.mark.parametrize(("user", "status"), [("lg", 200), ("out", 403), (None, 401)])
async def test_list_repositories_by_role(demo: Client, user: str | None, status: int) -> None:
    resp = await demo.get(f"{API}/projects/demo/repositories", headers=basic(user) if user else {})

    assert resp.status == status
    if status == 200:
        (repository,) = await body_of(resp)
        assert repository["name"] == "demo/app"
        assert repository["artifact_count"] == 1
        assert set(repository) >= {"id", "project_id", "description", "pull_count", "creation_time"}


async def test_anonymous_lists_repositories_of_a_public_project(auth_client: Client) -> None:
    await push_image_as(auth_client, "library/app", "v1", ADMIN)

    resp = await auth_client.get(f"{API}/projects/library/repositories")

    assert [r["name"] for r in await body_of(resp)] == ["library/app"]


async def test_repository_query_and_all_repositories(demo: Client) -> None:
    await push_image_as(demo, "demo/other", "v1", ADMIN)
    await push_image_as(demo, "library/pub", "v1", ADMIN)

    fuzzy = await body_of(await demo.get(f"{API}/projects/demo/repositories?q=name%3D~oth", headers=ADMIN))
    everything = await body_of(await demo.get(f"{API}/repositories", headers=ADMIN))
    outsider = await body_of(await demo.get(f"{API}/repositories", headers=basic("out")))

    assert [r["name"] for r in fuzzy] == ["demo/other"]
    assert [r["name"] for r in everything] == ["demo/app", "demo/other", "library/pub"]
    assert [r["name"] for r in outsider] == ["library/pub"]


async def test_repository_name_with_a_slash_is_url_encoded_twice(demo: Client) -> None:
    await push_image_as(demo, "demo/team/app", "v1", ADMIN)

    resp = await demo.get(f"{API}/projects/demo/repositories/team%252Fapp", headers=ADMIN)
    artifacts = await demo.get(f"{API}/projects/demo/repositories/team%252Fapp/artifacts", headers=ADMIN)

    assert (await body_of(resp))["name"] == "demo/team/app"
    assert artifacts.status == 200


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("ma", 200), ("dev", 200), ("gu", 403)])
async def test_update_repository_description_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.put(
        f"{API}/projects/demo/repositories/app", json={"description": "<b>nightly</b>"}, headers=basic(user)
    )

    assert resp.status == status
    repository = await body_of(await demo.get(f"{API}/projects/demo/repositories/app", headers=basic("gu")))
    assert repository["description"] == ("&lt;b&gt;nightly&lt;/b&gt;" if status == 200 else "")


async def test_missing_repository_is_404(demo: Client) -> None:
    await assert_error(
        await demo.get(f"{API}/projects/demo/repositories/nope", headers=ADMIN), 404, "NOT_FOUND"
    )


@pytest.mark.parametrize(("user", "status"), [("ma", 200), ("dev", 403)])
async def test_delete_repository_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.delete(f"{API}/projects/demo/repositories/app", headers=basic(user))

    assert resp.status == status
    after = await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)
    assert after.status == (404 if status == 200 else 200)


async def test_deleting_the_last_repository_makes_the_project_deletable(demo: Client) -> None:
    await demo.delete(f"{API}/projects/demo/repositories/app", headers=ADMIN)

    assert (await demo.delete(f"{API}/projects/demo", headers=ADMIN)).status == 200


# -- artifacts and tags --------------------------------------------------------------


async def test_list_artifacts_with_tags(demo: Client) -> None:
    resp = await demo.get(f"{API}/projects/demo/repositories/app/artifacts", headers=basic("lg"))

    (artifact,) = await body_of(resp)
    assert resp.headers["X-Total-Count"] == "1"
    assert artifact["type"] == "IMAGE"
    assert artifact["manifest_media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert artifact["media_type"] == "application/vnd.oci.image.config.v1+json"
    assert artifact["repository_name"] == "demo/app"
    assert artifact["digest"].startswith("sha256:")
    assert [t["name"] for t in artifact["tags"]] == ["v1"]
    assert artifact["size"] > 1000


async def test_get_artifact_by_tag_and_by_digest(demo: Client) -> None:
    by_tag = await body_of(
        await demo.get(f"{API}/projects/demo/repositories/app/artifacts/v1", headers=ADMIN)
    )
    by_digest = await demo.get(
        f"{API}/projects/demo/repositories/app/artifacts/{by_tag['digest']}", headers=ADMIN
    )
    missing = await demo.get(f"{API}/projects/demo/repositories/app/artifacts/v9", headers=ADMIN)
    outsider = await demo.get(f"{API}/projects/demo/repositories/app/artifacts/v1", headers=basic("out"))

    assert (await body_of(by_digest))["id"] == by_tag["id"]
    await assert_error(missing, 404, "NOT_FOUND")
    await assert_error(outsider, 403, "FORBIDDEN")


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("ma", 200), ("dev", 403), ("gu", 403)])
async def test_delete_artifact_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.delete(f"{API}/projects/demo/repositories/app/artifacts/v1", headers=basic(user))

    assert resp.status == status
    after = await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)
    assert after.status == (404 if status == 200 else 200)


@pytest.mark.parametrize(("user", "status"), [("dev", 201), ("gu", 403)])
async def test_add_tag_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.post(
        f"{API}/projects/demo/repositories/app/artifacts/v1/tags",
        json={"name": "stable"},
        headers=basic(user),
    )

    assert resp.status == status
    pulled = await demo.get("/v2/demo/app/manifests/stable", headers=ADMIN)
    assert pulled.status == (200 if status == 201 else 404)


async def test_add_tag_to_a_sha512_artifact_tags_that_artifact(demo: Client) -> None:
    config = b"{}"
    resp = await demo.post(
        "/v2/demo/app/blobs/uploads/", params={"digest": sha512(config)}, data=config, headers=ADMIN
    )
    assert resp.status == 201, await resp.text()
    manifest = image_manifest((sha512(config), 2), [])
    headers = {**ADMIN, "Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    resp = await demo.put(f"/v2/demo/app/manifests/{sha512(manifest)}", data=manifest, headers=headers)
    assert resp.status == 201, await resp.text()

    resp = await demo.post(
        f"{API}/projects/demo/repositories/app/artifacts/{sha512(manifest)}/tags",
        json={"name": "five-twelve"},
        headers=ADMIN,
    )

    assert resp.status == 201, await resp.text()
    pulled = await demo.head("/v2/demo/app/manifests/five-twelve", headers=ADMIN)
    assert pulled.headers["Docker-Content-Digest"] == sha512(manifest)


async def test_add_existing_tag_is_409_and_tags_list(demo: Client) -> None:
    url = f"{API}/projects/demo/repositories/app/artifacts/v1/tags"
    await demo.post(url, json={"name": "stable"}, headers=ADMIN)

    again = await demo.post(url, json={"name": "stable"}, headers=ADMIN)
    tags = await body_of(await demo.get(url, headers=basic("gu")))

    await assert_error(again, 409, "CONFLICT")
    assert [t["name"] for t in tags] == ["stable", "v1"]


@pytest.mark.parametrize(("user", "status"), [("ma", 200), ("dev", 403)])
async def test_delete_tag_by_role(demo: Client, user: str, status: int) -> None:
    url = f"{API}/projects/demo/repositories/app/artifacts/v1/tags"
    await demo.post(url, json={"name": "stable"}, headers=ADMIN)

    resp = await demo.delete(f"{url}/stable", headers=basic(user))

    assert resp.status == status
    assert (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).status == 200
    stable = await demo.get("/v2/demo/app/manifests/stable", headers=ADMIN)
    assert stable.status == (404 if status == 200 else 200)


async def test_delete_a_tag_the_artifact_does_not_have_is_404(demo: Client) -> None:
    resp = await demo.delete(f"{API}/projects/demo/repositories/app/artifacts/v1/tags/nope", headers=ADMIN)

    await assert_error(resp, 404, "NOT_FOUND")


# -- users ---------------------------------------------------------------------------


async def test_create_user_and_log_in(auth_client: Client) -> None:
    body = {"username": "alice", "email": "a@example.com", "realname": "Alice", "password": PASSWORD}

    resp = await auth_client.post(f"{API}/users", json=body, headers=ADMIN)
    current = await body_of(await auth_client.get(f"{API}/users/current", headers=basic("alice")))

    assert resp.status == 201
    assert resp.headers["Location"] == f"{API}/users/{current['user_id']}"
    assert current["username"] == "alice"
    assert current["email"] == "a@example.com"
    assert current["sysadmin_flag"] is False
    assert "password" not in orjson.dumps(current).decode()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "bob", "password": "password1"}, 400),
        ({"username": "bob", "password": "Sh0rt"}, 400),
        ({"username": "b,ob", "password": PASSWORD}, 400),
        ({"username": "robot$x", "password": PASSWORD}, 400),
        ({"username": "admin", "password": PASSWORD}, 409),
    ],
)
async def test_create_user_refusals(auth_client: Client, body: dict[str, str], status: int) -> None:
    before = await body_of(await auth_client.get(f"{API}/users", headers=ADMIN))

    resp = await auth_client.post(f"{API}/users", json=body, headers=ADMIN)

    await assert_error(resp, status, "CONFLICT" if status == 409 else "BAD_REQUEST")
    after = await body_of(await auth_client.get(f"{API}/users", headers=ADMIN))
    assert after == before


async def test_only_admins_create_and_list_users(auth_client: Client) -> None:
    await create_user(auth_client, "alice")

    created = await auth_client.post(
        f"{API}/users", json={"username": "x", "password": PASSWORD}, headers=basic("alice")
    )
    anonymous = await auth_client.post(f"{API}/users", json={"username": "x", "password": PASSWORD})
    listed = await auth_client.get(f"{API}/users", headers=basic("alice"))
    admin_list = await auth_client.get(f"{API}/users", headers=ADMIN)

    await assert_error(created, 403, "FORBIDDEN")
    await assert_error(anonymous, 401, "UNAUTHORIZED")
    await assert_error(listed, 403, "FORBIDDEN")
    assert [u["username"] for u in await body_of(admin_list)] == ["admin", "alice"]


async def test_search_users_is_for_admins_and_project_admins(auth_client: Client) -> None:
    await create_user(auth_client, "alice")
    await create_user(auth_client, "bob")
    await create_project(auth_client, "demo")
    await add_member(auth_client, "demo", "alice", 1)

    found = await body_of(await auth_client.get(f"{API}/users/search?username=ali", headers=basic("alice")))
    by_admin = await body_of(await auth_client.get(f"{API}/users/search?username=bo", headers=ADMIN))

    assert found == [{"user_id": 2, "username": "alice"}]
    assert by_admin == [{"user_id": 3, "username": "bob"}]
    await assert_error(
        await auth_client.get(f"{API}/users/search?username=ali", headers=basic("bob")), 403, "FORBIDDEN"
    )
    await assert_error(await auth_client.get(f"{API}/users/search?username=ali"), 401, "UNAUTHORIZED")


async def test_users_see_themselves_not_others(auth_client: Client) -> None:
    alice = await create_user(auth_client, "alice")
    bob = await create_user(auth_client, "bob")

    own = await auth_client.get(f"{API}/users/{alice}", headers=basic("alice"))
    other = await auth_client.get(f"{API}/users/{bob}", headers=basic("alice"))
    admin = await auth_client.get(f"{API}/users/{bob}", headers=ADMIN)
    profile = await auth_client.put(
        f"{API}/users/{alice}", json={"realname": "Alice A."}, headers=basic("alice")
    )

    assert own.status == 200
    await assert_error(other, 403, "FORBIDDEN")
    assert admin.status == 200
    assert profile.status == 200
    assert (await body_of(await auth_client.get(f"{API}/users/current", headers=basic("alice"))))[
        "realname"
    ] == "Alice A."


async def test_change_own_password_needs_the_old_one(auth_client: Client) -> None:
    alice = await create_user(auth_client, "alice")
    url = f"{API}/users/{alice}/password"

    wrong = await auth_client.put(
        url, json={"old_password": "Wrong1234", "new_password": "Newpass12"}, headers=basic("alice")
    )
    weak = await auth_client.put(
        url, json={"old_password": PASSWORD, "new_password": "weak"}, headers=basic("alice")
    )
    changed = await auth_client.put(
        url, json={"old_password": PASSWORD, "new_password": "Newpass12"}, headers=basic("alice")
    )

    await assert_error(wrong, 403, "FORBIDDEN")
    await assert_error(weak, 400, "BAD_REQUEST")
    assert changed.status == 200
    old = await auth_client.get(f"{API}/users/current", headers=basic("alice"))
    await assert_error(old, 401, "UNAUTHORIZED")
    assert (await auth_client.get(f"{API}/users/current", headers=basic("alice", "Newpass12"))).status == 200


async def test_admin_sets_another_users_password_without_the_old_one(auth_client: Client) -> None:
    alice = await create_user(auth_client, "alice")

    resp = await auth_client.put(
        f"{API}/users/{alice}/password", json={"new_password": "Reset1234"}, headers=ADMIN
    )

    assert resp.status == 200
    assert (await auth_client.get("/v2/", headers=basic("alice", "Reset1234"))).status == 200


async def test_sysadmin_flag_and_delete_user(auth_client: Client) -> None:
    alice = await create_user(auth_client, "alice")
    bob = await create_user(auth_client, "bob")

    refused = await auth_client.put(
        f"{API}/users/{bob}/sysadmin", json={"sysadmin_flag": True}, headers=basic("alice")
    )
    granted = await auth_client.put(
        f"{API}/users/{alice}/sysadmin", json={"sysadmin_flag": True}, headers=ADMIN
    )
    alice_lists = await auth_client.get(f"{API}/users", headers=basic("alice"))
    self_delete = await auth_client.delete(f"{API}/users/{alice}", headers=basic("alice"))
    deleted = await auth_client.delete(f"{API}/users/{bob}", headers=basic("alice"))

    await assert_error(refused, 403, "FORBIDDEN")
    assert granted.status == 200
    assert alice_lists.status == 200
    await assert_error(self_delete, 403, "FORBIDDEN")
    assert deleted.status == 200
    await assert_error(await auth_client.get("/v2/", headers=basic("bob")), 401, "UNAUTHORIZED")


# -- robots --------------------------------------------------------------------------


async def test_create_robot_answers_its_secret_once(demo: Client) -> None:
    created = await create_robot(demo, "demo", "k8s", ["pull"], description="pull only")

    shown = await body_of(await demo.get(f"{API}/robots/{created['id']}", headers=ADMIN))

    assert created["name"] == "robot$demo+k8s"
    assert created["expires_at"] == -1
    assert len(created["secret"]) >= 8
    assert "secret" not in shown
    assert shown["permissions"] == [
        {
            "kind": "project",
            "namespace": "demo",
            "access": [{"resource": "repository", "action": "pull", "effect": "allow"}],
        }
    ]
    assert shown["description"] == "pull only"


def robot_body(name: str, project: str = "demo", **extra: Any) -> dict[str, Any]:
    access = [{"resource": "repository", "action": "pull"}]
    return {
        "name": name,
        "level": "project",
        "duration": -1,
        "permissions": [{"kind": "project", "namespace": project, "access": access}],
        **extra,
    }


@pytest.mark.parametrize(("user", "status"), [("pa", 201), ("ma", 403), ("dev", 403), ("out", 403)])
async def test_create_robot_by_role(demo: Client, user: str, status: int) -> None:
    resp = await demo.post(f"{API}/robots", json=robot_body("ci"), headers=basic(user))

    assert resp.status == status
    names = [r["name"] for r in await body_of(await demo.get(f"{API}/robots", headers=ADMIN))]
    assert names == (["robot$demo+ci"] if status == 201 else [])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (robot_body("ci", level="system"), 400),
        (robot_body("Bad Name"), 400),
        (robot_body("ci", duration=0), 400),
        (robot_body("ci", project="nope"), 404),
        ({**robot_body("ci"), "permissions": []}, 400),
    ],
)
async def test_create_robot_refusals(demo: Client, body: dict[str, Any], status: int) -> None:
    resp = await demo.post(f"{API}/robots", json=body, headers=ADMIN)

    await assert_error(resp, status, "NOT_FOUND" if status == 404 else "BAD_REQUEST")
    assert await body_of(await demo.get(f"{API}/robots", headers=ADMIN)) == []


async def test_duplicate_robot_is_409(demo: Client) -> None:
    await create_robot(demo, "demo", "ci", ["pull"])

    await assert_error(
        await demo.post(f"{API}/robots", json=robot_body("ci"), headers=ADMIN), 409, "CONFLICT"
    )


async def test_list_robots_by_role(demo: Client) -> None:
    await create_project(demo, "other")
    await create_robot(demo, "demo", "a", ["pull"])
    await create_robot(demo, "other", "b", ["pull"])

    admin = await body_of(await demo.get(f"{API}/robots", headers=ADMIN))
    maintainer = await body_of(await demo.get(f"{API}/robots", headers=basic("ma")))
    developer = await body_of(await demo.get(f"{API}/robots", headers=basic("dev")))
    filtered = await demo.get(f"{API}/robots?q=Level%3Dproject,ProjectID%3D1", headers=basic("ma"))

    assert [r["name"] for r in admin] == ["robot$demo+a", "robot$other+b"]
    assert [r["name"] for r in maintainer] == ["robot$demo+a"]
    assert developer == []
    await assert_error(filtered, 403, "FORBIDDEN")
    await assert_error(await demo.get(f"{API}/robots"), 401, "UNAUTHORIZED")


async def test_get_robot_by_role(demo: Client) -> None:
    robot = await create_robot(demo, "demo", "ci", ["pull"])

    assert (await demo.get(f"{API}/robots/{robot['id']}", headers=basic("ma"))).status == 200
    await assert_error(await demo.get(f"{API}/robots/{robot['id']}", headers=basic("dev")), 403, "FORBIDDEN")
    await assert_error(await demo.get(f"{API}/robots/999", headers=ADMIN), 404, "NOT_FOUND")


async def test_update_robot_permissions(demo: Client) -> None:
    robot = await create_robot(demo, "demo", "ci", ["pull"])
    push = {
        **robot_body("ci"),
        "permissions": [
            {"kind": "project", "namespace": "demo", "access": [{"resource": "repository", "action": "push"}]}
        ],
    }

    refused = await demo.put(f"{API}/robots/{robot['id']}", json=push, headers=basic("ma"))
    updated = await demo.put(f"{API}/robots/{robot['id']}", json=push, headers=basic("pa"))
    pushed = await demo.post("/v2/demo/app/blobs/uploads/", headers=basic(robot["name"], robot["secret"]))

    await assert_error(refused, 403, "FORBIDDEN")
    assert updated.status == 200
    assert pushed.status == 202


async def test_refresh_robot_secret(demo: Client) -> None:
    robot = await create_robot(demo, "demo", "ci", ["pull"])

    refused = await demo.patch(f"{API}/robots/{robot['id']}", json={}, headers=basic("dev"))
    weak = await demo.patch(f"{API}/robots/{robot['id']}", json={"secret": "weak"}, headers=ADMIN)
    resp = await demo.patch(f"{API}/robots/{robot['id']}", json={}, headers=basic("pa"))
    secret = (await body_of(resp))["secret"]

    await assert_error(refused, 403, "FORBIDDEN")
    await assert_error(weak, 400, "BAD_REQUEST")
    assert resp.status == 200
    await assert_error(
        await demo.get("/v2/", headers=basic(robot["name"], robot["secret"])), 401, "UNAUTHORIZED"
    )
    assert (await demo.get("/v2/", headers=basic(robot["name"], secret))).status == 200


async def test_robot_refreshes_its_own_secret_to_a_chosen_one(demo: Client) -> None:
    robot = await create_robot(demo, "demo", "ci", ["pull"])

    resp = await demo.patch(
        f"{API}/robots/{robot['id']}",
        json={"secret": "Chosen123"},
        headers=basic(robot["name"], robot["secret"]),
    )

    assert (await body_of(resp)) == {"secret": "Chosen123"}
    assert await token(demo, ["repository:demo/app:pull"], basic(robot["name"], "Chosen123"))


@pytest.mark.parametrize(("user", "status"), [("pa", 200), ("ma", 403)])
async def test_delete_robot_by_role(demo: Client, user: str, status: int) -> None:
    robot = await create_robot(demo, "demo", "ci", ["pull"])

    resp = await demo.delete(f"{API}/robots/{robot['id']}", headers=basic(user))

    assert resp.status == status
    login = await demo.get("/v2/", headers=basic(robot["name"], robot["secret"]))
    assert login.status == (401 if status == 200 else 200)


async def test_unknown_api_path_is_harbor_shaped_404(auth_client: Client) -> None:
    await assert_error(await auth_client.get(f"{API}/nothing-here"), 404, "NOT_FOUND")
