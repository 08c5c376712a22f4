"""The web pages over the real app and SQLite: what each role sees and may do, forged
requests refused, errors shown in the page, paging and search, Markdown sanitising."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import orjson
import pytest

from tests.auth_support import (
    ADMIN,
    ADMIN_PASSWORD,
    API,
    PASSWORD,
    Starter,
    basic,
    create_project,
    create_user,
    push_image_as,
    setup_roles,
)
from tests.conftest import Client, image_manifest, sha256
from tests.web_support import page, post_form, sign_in, texts

REPO = "/projects/demo/repositories/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
async def demo(auth_start: Starter) -> Client:
    """Project demo with one user per role (pa, dev, gu, ma, lg), ``out``, and demo/app:v1."""
    client = await auth_start(server={"external_url": "http://registry.example:5000"})
    await setup_roles(client)
    return client


def shown(first: int, last: int, total: int) -> str:
    """The pager's count, as the page writes it."""
    return f"{first}\u2013{last} of {total}"


async def tags_of(client: Client, repository: str = "demo/app") -> list[str]:
    resp = await client.get(f"/v2/{repository}/tags/list", headers=ADMIN)
    return list(orjson.loads(await resp.read()).get("tags") or []) if resp.status == 200 else []


# -- projects ----------------------------------------------------------------------------


async def test_anonymous_visitors_see_public_projects_read_only_and_a_sign_in_form(demo: Client) -> None:
    html = await page(demo, "/")

    assert "library" in html and "/projects/demo" not in html
    assert 'id="sign-in-form"' in html and "New Project" not in html
    assert 'name="principal"' in html and 'action="/c/login"' in html


async def test_members_see_their_private_projects_with_their_role(demo: Client) -> None:
    await sign_in(demo, "gu", PASSWORD)

    html = await page(demo, "/")

    assert "/projects/demo" in html and "guest" in html and "Log out" in html


async def test_new_project_creates_it_owned_by_the_creator(demo: Client) -> None:
    csrf = await sign_in(demo, "dev", PASSWORD)

    location, _ = await post_form(demo, "/projects", {"name": "team", "public": "true"}, csrf)

    assert location == "/projects/team"
    html = await page(demo, "/projects/team")
    assert "Public" in html and "projectAdmin" in html


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("demo", 409, "The project named demo already exists"),
        ("Bad Name", 400, "project name is not in lower case or contains illegal characters"),
    ],
)
async def test_new_project_errors_are_shown_next_to_the_name(
    demo: Client, name: str, status: int, message: str
) -> None:
    csrf = await sign_in(demo, "dev", PASSWORD)

    _, html = await post_form(demo, "/projects", {"name": name}, csrf, status=status)

    assert texts(html, "name-error") == message
    assert 'aria-invalid="true"' in html and f'value="{name}"' in html
    assert not html.lstrip().startswith("{")  # a page, not a JSON body


async def test_new_project_is_refused_where_only_admins_may_create(auth_start: Starter) -> None:
    client = await auth_start(auth={"project_creation_restriction": "adminonly"})
    await create_user(client, "alice")
    csrf = await sign_in(client, "alice", PASSWORD)

    html = await page(client, "/")
    _, refused = await post_form(client, "/projects", {"name": "mine"}, csrf, status=403)

    assert "New Project" not in html and "Only system admin can create project" in refused


async def test_projects_are_searched_and_paged(auth_start: Starter) -> None:
    client = await auth_start()
    for i in range(20):
        await create_project(client, f"p{i:02d}")
    await sign_in(client, "admin", ADMIN_PASSWORD)

    first = await page(client, "/")
    second = await page(client, "/?page=2")
    found = await page(client, "/?q=p1")

    assert shown(1, 15, 21) in first and "/projects/p13" in first and "/projects/p14" not in first
    assert shown(16, 21, 21) in second and "/projects/p19" in second and 'rel="prev"' in second
    assert "/projects/p10" in found and "/projects/p19" in found and "/projects/p02" not in found
    assert "No project matches" in await page(client, "/?q=zzz")


# -- a project ---------------------------------------------------------------------------


async def test_a_projects_repositories_with_counts_and_push_hint(demo: Client) -> None:
    await push_image_as(demo, "demo/app", "v2", ADMIN)
    await sign_in(demo, "gu", PASSWORD)

    html = await page(demo, "/projects/demo")

    row = re.search(r'href="/projects/demo/repositories/app">demo/app</a></td>\s*<td class="num">(\d+)', html)
    assert row is not None and row.group(1) == "2"
    assert "docker push registry.example:5000/demo/REPOSITORY[:TAG]" in html


async def test_an_empty_project_says_how_to_push(demo: Client) -> None:
    await create_project(demo, "empty")
    await sign_in(demo, "admin", ADMIN_PASSWORD)

    html = await page(demo, "/projects/empty")

    assert texts(html, "no-repositories").startswith(
        "No repositories yet: docker push registry.example:5000/empty/<name>:<tag>"
    )


async def test_repositories_are_searched_and_paged(demo: Client) -> None:
    for i in range(16):
        await push_image_as(demo, f"demo/svc{i:02d}", "v1", ADMIN)
    await sign_in(demo, "gu", PASSWORD)

    first = await page(demo, "/projects/demo")
    second = await page(demo, "/projects/demo?page=2")
    found = await page(demo, "/projects/demo?q=svc1")

    assert shown(1, 15, 17) in first and shown(16, 17, 17) in second
    assert "demo/svc15" in second and "demo/svc15" not in first
    assert "demo/svc10" in found and "demo/app" not in found


async def test_registry_certificate_button_only_under_https_with_a_ca(
    auth_start: Starter, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    plain = await auth_start(server={"ca_cert": str(ca)})
    html_plain = await page(plain, "/projects/library")
    tls = await auth_start(server={"ca_cert": str(ca), "external_url": "https://registry.example"})
    html_tls = await page(tls, "/projects/library")

    assert "Registry Certificate" not in html_plain
    assert 'href="/api/v2.0/systeminfo/getcert" download="ca.crt">Registry Certificate</a>' in html_tls


@pytest.mark.parametrize(
    ("user", "members", "robots"),
    [("pa", True, True), ("ma", True, True), ("dev", True, False), ("gu", True, False)],
)
async def test_member_and_robot_tabs_follow_the_role(
    demo: Client, user: str, members: bool, robots: bool
) -> None:
    await sign_in(demo, user, PASSWORD)

    html = await page(demo, "/projects/demo")

    assert ('href="/projects/demo/members"' in html) is members
    assert ('href="/projects/demo/robots"' in html) is robots


async def test_limited_guests_and_outsiders_cannot_open_members(demo: Client) -> None:
    await sign_in(demo, "lg", PASSWORD)
    await page(demo, "/projects/demo/members", status=403)
    await sign_in(demo, "out", PASSWORD)
    await page(demo, "/projects/demo", status=403)
    demo.session.cookie_jar.clear()
    html = await page(demo, "/projects/demo", status=401)
    assert "Sign in" in html


async def test_project_admins_add_change_and_remove_members(demo: Client) -> None:
    await create_user(demo, "newbie")
    csrf = await sign_in(demo, "pa", PASSWORD)

    await post_form(
        demo, "/projects/demo/members", {"action": "add", "username": "newbie", "role": "3"}, csrf
    )
    html = await page(demo, "/projects/demo/members")
    member = re.search(
        r'name="member" value="(\d+)">\s*<select name="role" aria-label="Role of newbie"', html
    )
    assert member is not None
    await post_form(
        demo, "/projects/demo/members", {"action": "role", "member": member.group(1), "role": "2"}, csrf
    )
    resp = await demo.get(f"{API}/projects/demo/members/{member.group(1)}", headers=ADMIN)
    assert (await resp.json())["role_name"] == "developer"
    await post_form(demo, "/projects/demo/members", {"action": "remove", "member": member.group(1)}, csrf)
    assert "newbie" not in await page(demo, "/projects/demo/members")


async def test_member_errors_are_shown_in_the_page(demo: Client) -> None:
    csrf = await sign_in(demo, "pa", PASSWORD)

    _, unknown = await post_form(
        demo, "/projects/demo/members", {"action": "add", "username": "ghost", "role": "2"}, csrf, status=404
    )
    _, twice = await post_form(
        demo, "/projects/demo/members", {"action": "add", "username": "gu", "role": "2"}, csrf, status=409
    )

    assert texts(unknown, "form-error") == "user ghost not found"
    assert texts(twice, "form-error") == "gu is already a member of demo"


async def test_guests_see_members_without_controls_and_a_forged_add_is_refused(demo: Client) -> None:
    csrf = await sign_in(demo, "gu", PASSWORD)

    html = await page(demo, "/projects/demo/members")
    _, refused = await post_form(
        demo, "/projects/demo/members", {"action": "add", "username": "out", "role": "1"}, csrf, status=403
    )

    assert "pa" in html and 'id="add-member"' not in html and "Remove" not in html
    assert "not allowed to member manage in project demo" in refused


async def test_a_robot_secret_is_shown_once_and_works(demo: Client) -> None:
    csrf = await sign_in(demo, "pa", PASSWORD)

    _, created = await post_form(
        demo,
        "/projects/demo/robots",
        {"name": "ci", "description": "CI", "actions": "push"},
        csrf,
        status=200,
    )
    secret = texts(created, "robot-secret-value")
    listed = await page(demo, "/projects/demo/robots")

    assert "robot$demo+ci" in created and 'data-copy="' + secret + '"' in created
    assert secret not in listed and "robot$demo+ci" in listed and "pull, push" in listed
    token = await demo.get(
        "/service/token",
        params={"service": "regd", "scope": "repository:demo/app:push"},
        headers=basic("robot$demo+ci", secret),
    )
    assert token.status == 200


async def test_robot_errors_are_shown_and_deletion_works(demo: Client) -> None:
    csrf = await sign_in(demo, "pa", PASSWORD)
    await post_form(demo, "/projects/demo/robots", {"name": "ci", "actions": "pull"}, csrf, status=200)

    _, again = await post_form(
        demo, "/projects/demo/robots", {"name": "ci", "actions": "pull"}, csrf, status=409
    )
    robot_id = re.search(r'name="robot" value="(\d+)"', again)
    assert robot_id is not None
    await post_form(demo, "/projects/demo/robots", {"action": "delete", "robot": robot_id.group(1)}, csrf)

    assert texts(again, "form-error") == "robot account robot$demo+ci already exists"
    assert "robot$demo+ci" not in await page(demo, "/projects/demo/robots")


async def test_maintainers_see_robots_but_cannot_create_them(demo: Client) -> None:
    csrf = await sign_in(demo, "ma", PASSWORD)

    html = await page(demo, "/projects/demo/robots")
    _, refused = await post_form(
        demo, "/projects/demo/robots", {"name": "x", "actions": "pull"}, csrf, status=403
    )

    assert "New Robot Account" not in html and "not allowed" in refused


# -- a repository ------------------------------------------------------------------------


async def test_artifacts_tab_lists_digest_tags_size_and_pull_commands(demo: Client) -> None:
    await sign_in(demo, "gu", PASSWORD)

    html = await page(demo, REPO)

    digest = (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).headers["Docker-Content-Digest"]
    assert f'data-copy="{digest}"' in html and digest[:19] in html
    assert 'data-copy="docker pull registry.example:5000/demo/app:v1"' in html
    assert "Copy pull command" in html and re.search(r'class="num">\d+(\.\d)? (B|KiB)<', html)
    assert "Delete" not in html  # a guest deletes nothing


async def _put(client: Client, path: str, data: bytes, media_type: str) -> str:
    resp = await client.put(path, data=data, headers={**ADMIN, "Content-Type": media_type})
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"]


async def push_multi_arch(client: Client, repository: str, tag: str) -> list[str]:
    """An index of a linux/amd64 and a linux/arm64/v8 image; the children's digests."""
    children = []
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        config = orjson.dumps({"os": "linux", "architecture": arch, "variant": variant, "rootfs": {}})
        layer = arch.encode() * 100
        for blob in (config, layer):
            resp = await client.post(
                f"/v2/{repository}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob, headers=ADMIN
            )
            assert resp.status == 201
        manifest = image_manifest((sha256(config), len(config)), [(sha256(layer), len(layer))])
        children.append(
            (
                await _put(client, f"/v2/{repository}/manifests/{sha256(manifest)}", manifest, OCI_MANIFEST),
                len(manifest),
                arch,
                variant,
            )
        )
    index = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": d,
                    "size": n,
                    "platform": {"os": "linux", "architecture": a, **({"variant": v} if v else {})},
                }
                for d, n, a, v in children
            ],
        }
    )
    await _put(client, f"/v2/{repository}/manifests/{tag}", index, OCI_INDEX)
    return [d for d, *_ in children]


async def test_artifacts_show_platforms_and_index_children(demo: Client, data_dir: Path) -> None:
    amd64, arm64 = await push_multi_arch(demo, "demo/multi", "latest")
    await sign_in(demo, "gu", PASSWORD)

    html = await page(demo, "/projects/demo/repositories/multi")

    assert f'title="{amd64}">{amd64[:19]}</code> <span class="platform">linux/amd64</span>' in html
    assert f'title="{arm64}">{arm64[:19]}</code> <span class="platform">linux/arm64/v8</span>' in html
    assert ">linux/amd64</td>" in html and ">linux/arm64</td>" in html and ">index</td>" in html
    # Recorded in SQLite at push (the images' configs, the index's entries): listed from there.
    with sqlite3.connect(data_dir / "regd.db") as db:
        stored = [
            r[0] for r in db.execute("SELECT extra_attrs FROM manifests WHERE extra_attrs LIKE '%arm64%'")
        ]
    assert len(stored) == 1


async def test_description_markdown_is_rendered_and_made_inert(demo: Client) -> None:
    csrf = await sign_in(demo, "dev", PASSWORD)
    text = (
        "# Title\n\n**bold** and `a < b`\n\n<script>alert(1)</script>\n\n"
        "[click](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n[docs](https://example.com/)"
    )

    location, _ = await post_form(demo, REPO, {"action": "describe", "description": text}, csrf)
    html = await page(demo, location)
    view = html[html.index('id="description-view"') :]
    view = view[: view.index("</section>")]

    assert location == REPO + "?tab=info"
    assert "<h1>Title</h1>" in view and "<strong>bold</strong>" in view and "<code>a &lt; b</code>" in view
    assert "<script" not in view and "&lt;script&gt;" in view
    assert 'href="javascript' not in view and "<img" not in view
    assert not re.search(r"<[^>]*\son[a-z]+=", view)  # no event attribute on any element
    assert 'href="https://example.com/"' in view and 'rel="noopener noreferrer nofollow"' in view
    # The API answers the description HTML-escaped, as Harbor stores it.
    resp = await demo.get(f"{API}/projects/demo/repositories/app", headers=ADMIN)
    assert (await resp.json())["description"].startswith("# Title\n\n**bold** and `a &lt; b`")
    # The edit box gives back exactly what was written.
    edit = await page(demo, REPO + "?tab=info&edit=1")
    assert "`a &lt; b`" in edit and "Save" in edit and "Cancel" in edit


@pytest.mark.parametrize(
    ("user", "may_edit"), [("dev", True), ("ma", True), ("pa", True), ("gu", False), ("lg", False)]
)
async def test_edit_is_offered_to_developers_and_up_and_enforced(
    demo: Client, user: str, may_edit: bool
) -> None:
    csrf = await sign_in(demo, user, PASSWORD)

    html = await page(demo, REPO + "?tab=info")
    _, body = await post_form(
        demo, REPO, {"action": "describe", "description": "x"}, csrf, status=303 if may_edit else 403
    )

    assert ('id="description-edit"' in html) is may_edit
    assert ">Edit<" in html if may_edit else "not allowed to repository update" in body


async def test_deleting_a_tag_asks_first_and_naming_what_goes(demo: Client) -> None:
    await push_image_as(demo, "demo/app", "v2", ADMIN)
    csrf = await sign_in(demo, "ma", PASSWORD)

    confirm = await page(demo, REPO + "?confirm=delete-tag&tag=v1")
    location, _ = await post_form(demo, REPO, {"action": "delete-tag", "tag": "v1"}, csrf)

    assert texts(confirm, "confirm-title") == "Delete tag v1?"
    assert 'id="confirm-delete"' in confirm and 'id="confirm-cancel"' in confirm
    assert location == REPO and await tags_of(demo) == ["v2"]


async def test_a_guest_forging_the_tag_delete_post_gets_403(demo: Client) -> None:
    csrf = await sign_in(demo, "gu", PASSWORD)

    _, body = await post_form(demo, REPO, {"action": "delete-tag", "tag": "v1"}, csrf, status=403)

    assert "not allowed to tag delete in project demo" in body and 'id="page-error"' in body
    assert await tags_of(demo) == ["v1"]


async def test_a_developer_cannot_delete_an_artifact_or_the_repository(demo: Client) -> None:
    digest = (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).headers["Docker-Content-Digest"]
    csrf = await sign_in(demo, "dev", PASSWORD)

    await post_form(demo, REPO, {"action": "delete-artifact", "digest": digest}, csrf, status=403)
    await post_form(demo, REPO, {"action": "delete-repository"}, csrf, status=403)

    assert await tags_of(demo) == ["v1"]


async def test_deleting_an_artifact_removes_it_with_its_tags(demo: Client) -> None:
    await push_image_as(demo, "demo/app", "v2", ADMIN)
    digest = (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).headers["Docker-Content-Digest"]
    csrf = await sign_in(demo, "ma", PASSWORD)

    confirm = await page(demo, REPO + f"?confirm=delete-artifact&digest={digest}")
    await post_form(demo, REPO, {"action": "delete-artifact", "digest": digest}, csrf)

    assert texts(confirm, "confirm-title") == f"Delete artifact {digest} and all its tags?"
    assert await tags_of(demo) == ["v2"]


async def test_deleting_the_repository_goes_back_to_the_project(demo: Client) -> None:
    csrf = await sign_in(demo, "pa", PASSWORD)

    confirm = await page(demo, REPO + "?confirm=delete-repository")
    location, _ = await post_form(demo, REPO, {"action": "delete-repository"}, csrf)

    assert "this repository, all its artifacts and tags" in confirm
    assert location == "/projects/demo"
    assert (await demo.get(f"{API}/projects/demo/repositories/app", headers=ADMIN)).status == 404
    await page(demo, REPO, status=404)


async def test_artifacts_are_paged_newest_first(demo: Client) -> None:
    for i in range(16):
        await push_image_as(demo, "demo/app", f"t{i:02d}", ADMIN)
    await sign_in(demo, "gu", PASSWORD)

    first = await page(demo, REPO)
    second = await page(demo, REPO + "?page=2")

    assert shown(1, 15, 17) in first and shown(16, 17, 17) in second
    assert 'data-tag="t15"' in first and 'data-tag="v1"' in second and 'data-tag="v1"' not in first


async def test_an_artifacts_many_tags_are_shown_twenty_then_a_hundred_a_page(demo: Client) -> None:
    digest = (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).headers["Docker-Content-Digest"]
    manifest = await (await demo.get("/v2/demo/app/manifests/v1", headers=ADMIN)).read()
    for i in range(120):
        await _put(demo, f"/v2/demo/app/manifests/x{i:03d}", manifest, OCI_MANIFEST)
    await sign_in(demo, "gu", PASSWORD)

    listed = await page(demo, REPO)
    first = await page(demo, f"{REPO}?digest={digest}&tags=1")
    second = await page(demo, f"{REPO}?digest={digest}&tags=2")

    assert listed.count('class="tag"') == 20 and "101 more tags" in listed
    assert first.count('class="tag"') == 100 and shown(1, 100, 121) in first
    assert second.count('class="tag"') == 21 and "Previous tags" in second and "Next tags" not in second
    assert 'data-tag="x119"' in second and 'data-tag="x119"' not in first


async def test_hostile_numbers_in_queries_and_forms_are_no_server_errors(demo: Client) -> None:
    csrf = await sign_in(demo, "pa", PASSWORD)
    huge = "9" * 30

    for path in (f"/?page={huge}", f"{REPO}?page={huge}&page_size={huge}", f"{REPO}?digest=x&tags={huge}"):
        await page(demo, path)
    await page(demo, "/?page=\u00b2")  # a Unicode digit is no number
    _, body = await post_form(
        demo, "/projects/demo/members", {"action": "remove", "member": huge}, csrf, status=400
    )
    _, robot = await post_form(
        demo, "/projects/demo/robots", {"name": "x", "actions": "pull", "days": huge}, csrf, status=400
    )

    assert "choose a user and a role" in body and "expires after" in robot


async def test_unknown_repository_and_project_are_shown_as_errors_in_the_page(demo: Client) -> None:
    await sign_in(demo, "admin", ADMIN_PASSWORD)

    missing_repo = await page(demo, "/projects/demo/repositories/nope", status=404)
    missing_project = await page(demo, "/projects/nope", status=404)

    assert "repository demo/nope not found" in missing_repo and 'id="page-error"' in missing_repo
    assert "project nope not found" in missing_project
