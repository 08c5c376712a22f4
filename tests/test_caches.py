"""Lookup caches never serve what another process's commit made stale."""

from __future__ import annotations

from pathlib import Path

from regd.app import create_app
from tests.conftest import assert_error, make_config, push_blob, push_image


async def test_two_processes_on_one_data_dir_see_each_others_commits(aiohttp_client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(data_dir)
    a = await aiohttp_client(create_app(config))
    b = await aiohttp_client(create_app(config))  # its own connections and caches, like a second worker
    first, first_bytes, _ = await push_image(a, "library/app", "v1")
    for _ in range(2):  # the second GET is served from a's cache
        assert await (await a.get("/v2/library/app/manifests/v1")).read() == first_bytes

    assert (await (await a.get("/v2/library/app/tags/list")).json())["tags"] == ["v1"]
    await push_image(b, "library/app", "v2")
    assert (await (await a.get("/v2/library/app/tags/list")).json())["tags"] == ["v1", "v2"]
    assert (await b.delete("/v2/library/app/manifests/v2")).status == 202
    assert (await (await a.get("/v2/library/app/tags/list")).json())["tags"] == ["v1"]

    second, second_bytes, _ = await push_image(b, "library/app", "v1")  # b moves the tag
    resp = await a.get("/v2/library/app/manifests/v1")
    assert resp.headers["Docker-Content-Digest"] == second
    assert await resp.read() == second_bytes

    assert (await b.delete(f"/v2/library/app/manifests/{first}")).status == 202
    await assert_error(await a.get(f"/v2/library/app/manifests/{first}"), 404, "MANIFEST_UNKNOWN")

    digest = await push_blob(a, "library/app", b"blob")
    assert (await a.head(f"/v2/library/app/blobs/{digest}")).status == 200
    assert (await b.delete(f"/v2/library/app/blobs/{digest}")).status == 202
    await assert_error(await a.get(f"/v2/library/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
