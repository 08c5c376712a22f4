"""Issue 15, findings 9, 10 and 12, against a real ``regd serve``: floods of upload
sessions and of rejected manifests, numbers that are not numbers, and the smaller gaps
(cancelling one's own upload, a robot reading its project, who may list user names)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.regd_process import RegdProcess
from tests.security_support import (
    ADMIN,
    API,
    OCI_MANIFEST,
    Api,
    basic,
    manifest_of,
    session_from,
    sha256,
    start_regd,
)

PER_REPOSITORY = 4
PER_ACCOUNT = 6


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    uploads = {"max_sessions_per_repository": PER_REPOSITORY, "max_sessions_per_account": PER_ACCOUNT}
    process = start_regd(tmp_path, uploads=uploads)
    yield process
    process.close()


async def test_open_upload_sessions_are_capped_per_repository_and_per_account(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        await api.project("demo")
        await api.user("dev")
        await api.member("demo", "dev", 2)  # developer: push, no delete
        dev = basic("dev")

        locations = []
        for _ in range(PER_REPOSITORY):
            _, _, headers = await api.call("POST", "/v2/demo/a/blobs/uploads/", dev)
            locations.append(headers["Location"])
        status, body, headers = await api.call("POST", "/v2/demo/a/blobs/uploads/", dev)
        assert status == 429, body
        assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert f"repository demo/a (at most {PER_REPOSITORY})" in body["errors"][0]["message"]
        # The same account elsewhere, up to its own cap.
        for _ in range(PER_ACCOUNT - PER_REPOSITORY):
            await api.expect(202, "POST", "/v2/demo/b/blobs/uploads/", headers=dev)
        status, body, _ = await api.call("POST", "/v2/demo/c/blobs/uploads/", dev)
        assert status == 429
        assert f"account dev (at most {PER_ACCOUNT})" in body["errors"][0]["message"]
        # Another account is not held back by dev's sessions.
        await api.expect(202, "POST", "/v2/demo/c/blobs/uploads/", headers=ADMIN)

        # A developer may cancel its own upload (push), which makes room again.
        await api.expect(204, "DELETE", locations[0], headers=dev)
        await api.expect(202, "POST", "/v2/demo/a/blobs/uploads/", headers=dev)


async def test_a_manifest_with_missing_references_stores_nothing(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        config, layer = os.urandom(100), os.urandom(4000)
        manifest = manifest_of(config, [layer])
        assert await api.push_blob("library/app", config, ADMIN) == 201  # the layer is never pushed

        status, body, _ = await api.call(
            "PUT",
            "/v2/library/app/manifests/v1",
            {**ADMIN, "Content-Type": OCI_MANIFEST},
            data=manifest,
        )

        assert status == 400 and body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", body
        digest = sha256(manifest).split(":", 1)[1]
        assert not (regd.data_dir / "blobs" / "sha256" / digest[:2] / digest).exists()
        assert os.listdir(regd.data_dir / "tmp") == []


async def test_numbers_that_are_not_numbers_answer_4xx_never_500(regd: RegdProcess) -> None:
    huge = "1" + "0" * 25
    async with session_from() as http:
        api = Api(http, regd)
        await api.project("demo")
        await api.push_image("demo/app", "v1", ADMIN)
        probes = {
            f"{API}/projects/%C2%B2": 404,  # ² is no id: looked up as a name
            f"{API}/projects/%D9%A2": 404,  # nor is an Arabic-Indic 2 (project 2 exists)
            f"{API}/projects/{huge}": 404,
            f"{API}/projects?page={huge}": 400,
            f"{API}/projects?page_size=%C2%B2": 400,
            f"{API}/projects/demo/repositories?page={huge}": 400,
            f"{API}/users/%C2%B2": 404,
            f"{API}/users/{huge}": 404,
            f"{API}/robots/%D9%A2": 404,
            f"{API}/projects/demo/members/%C2%B2": 400,
            f"{API}/projects/demo/members/{huge}": 400,
            f"{API}/system/gc/%C2%B2": 404,
            f"{API}/system/gc/{huge}": 404,
            f"/v2/demo/app/tags/list?n={huge}": 400,
            "/v2/demo/app/tags/list?n=%C2%B2": 400,
            f"/v2/_catalog?n={huge}": 400,
        }
        answers = {}
        for path, _ in probes.items():
            status, body, _ = await api.call("GET", path, ADMIN)
            answers[path] = (status, body)
        assert {p: a[0] for p, a in answers.items()} == probes, answers
        assert all(isinstance(a[1], dict) and "errors" in a[1] for a in answers.values())
        # An anonymous caller reaches the project lookup too.
        status, _, _ = await api.call("GET", f"{API}/projects/%C2%B2")
        assert status == 404
        # A malformed multipart body to the token service.
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        truncated = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb'
        status, body, _ = await api.call("POST", "/service/token", headers, data=truncated)
        assert status == 400, body
        status, _, _ = await api.call(
            "PATCH", "/v2/demo/app/blobs/uploads/x", {**ADMIN, "Content-Range": "0-\u0662"}, data=b"x"
        )
        assert status in (404, 416)

    log = regd.log()
    assert "Traceback" not in log and "access log failed" not in log
    assert " 500 " not in log


async def test_robots_read_their_project_and_only_admins_list_user_names(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        demo = await api.project("demo")
        await api.project("other")
        robot = await api.robot("demo", "ci", ["pull"])
        as_robot = basic(robot["name"], robot["secret"])
        await api.user("alice")
        await api.user("bob")
        await api.member("demo", "alice", 1)  # project admin: adds members
        await api.member("demo", "bob", 2)

        project = await api.expect(200, "GET", f"{API}/projects/demo", headers=as_robot)
        listed = await api.expect(200, "GET", f"{API}/projects", headers=as_robot)
        await api.expect(200, "GET", f"{API}/projects/{demo}/repositories", headers=as_robot)
        await api.expect(403, "GET", f"{API}/projects/other", headers=as_robot)
        assert project["name"] == "demo"
        assert [p["name"] for p in listed] == ["demo", "library"]

        found = await api.expect(200, "GET", f"{API}/users/search?username=b", headers=basic("alice"))
        assert [u["username"] for u in found] == ["bob"]
        await api.expect(200, "GET", f"{API}/users/search?username=b", headers=ADMIN)
        await api.expect(403, "GET", f"{API}/users/search?username=a", headers=basic("bob"))
        await api.expect(403, "GET", f"{API}/users/search?username=a", headers=as_robot)
        await api.expect(401, "GET", f"{API}/users/search?username=a")
