"""``/api/v2.0/projects/{p}/repositories/{r}/artifacts``: list (with tags), get, delete;
``.../artifacts/{reference}/tags``: list, add (``{"name"}``, 409 if it exists), delete.

``{reference}`` is a tag or a digest. Deleting an artifact deletes the manifest and all
its tags (Harbor deletes the artifact even when named by a tag); deleting a tag leaves
the artifact. Both go through the ``Registry`` service; an index still listing the
artifact makes the deletion fail with 412 ``VIOLATE_FOREIGN_KEY_CONSTRAINT``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    created,
    json_body,
    ok,
    page_of,
    paged,
    project_access,
    services_of,
    timestamp,
)
from regd.api.harbor.repositories import find_repository
from regd.api.http import json_response
from regd.auth.roles import Permission
from regd.details import Child, artifact_details
from regd.errors import ErrorCode, RegistryError
from regd.manifests import IMAGE_CONFIG_TYPES, INDEX_TYPES
from regd.metadata import artifacts
from regd.metadata import manifests as manifest_rows
from regd.metadata.artifacts import RepositoryView, TagView
from regd.metadata.manifests import ManifestRow
from regd.names import check_tag


def tag_json(tag: TagView) -> dict[str, Any]:
    return {
        "id": 0,
        "repository_id": tag.repository_id,
        "artifact_id": tag.manifest_id,
        "name": tag.name,
        "push_time": timestamp(tag.updated_at),
        "pull_time": timestamp(tag.pulled_at),
        "immutable": False,
    }


def reference_json(parent_id: int, child: Child) -> dict[str, Any]:
    """Harbor's ``Reference``. The platform is the index entry's, with the image-spec's
    key names (``os.version``, ``os.features``), as Harbor answers on the wire."""
    return {
        "parent_id": parent_id,
        "child_id": child.child_id or 0,
        "child_digest": child.digest,
        "platform": child.platform,
        "annotations": child.annotations,
        "urls": child.urls,
    }


async def artifact_json(
    request: web.Request, project_id: int, view: RepositoryView, rows: list[ManifestRow]
) -> list[dict[str, Any]]:
    services = services_of(request)
    ids = [row.id for row in rows]
    tags, sizes = await artifacts.tags(services.db, ids), await artifacts.blob_details(services.db, ids)
    details = await artifact_details(services.registry, rows)
    result = []
    for row in rows:
        blob_size, config_type = sizes.get(row.id, (0, None))
        image = row.media_type in INDEX_TYPES or config_type in IMAGE_CONFIG_TYPES
        detail = details[row.id]
        result.append(
            {
                "id": row.id,
                "type": "IMAGE" if image else "UNKNOWN",
                "media_type": config_type or row.media_type,
                "manifest_media_type": row.media_type,
                "artifact_type": row.artifact_type or config_type or row.media_type,
                "project_id": project_id,
                "repository_id": view.id,
                "repository_name": view.name,
                "digest": row.digest,
                "size": row.size + blob_size,
                "push_time": timestamp(row.pushed_at),
                "pull_time": timestamp(detail.pulled_at),
                "extra_attrs": detail.extra_attrs,
                "annotations": row.annotations or {},
                "references": [reference_json(row.id, c) for c in detail.children] or None,
                "tags": [tag_json(t) for t in tags.get(row.id, [])] or None,
                "labels": None,
                "accessories": None,
                "icon": "",
            }
        )
    return result


async def _artifact(request: web.Request, view: RepositoryView) -> ManifestRow:
    reference = request.match_info["reference"]
    try:
        return await services_of(request).registry.resolve(view.name, reference)
    except RegistryError as e:
        if e.code in (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.TAG_INVALID, ErrorCode.DIGEST_INVALID):
            raise RegistryError(
                ErrorCode.NOT_FOUND, f"artifact {view.name}:{reference[:200]} not found"
            ) from None
        raise


async def list_artifacts(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    view = await find_repository(request, access.project.name)
    page = page_of(request)
    total, rows = await artifacts.artifacts(services_of(request).db, view.id, page.offset, page.size)
    return paged(request, await artifact_json(request, access.project.id, view, rows), total, page)


async def get_artifact(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    view = await find_repository(request, access.project.name)
    row = await _artifact(request, view)
    (body,) = await artifact_json(request, access.project.id, view, [row])
    return json_response(body)


async def delete_artifact(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.ARTIFACT_DELETE)
    view = await find_repository(request, access.project.name)
    row = await _artifact(request, view)
    await services_of(request).registry.delete_manifest(view.name, row.digest)
    return ok()


async def list_tags(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    view = await find_repository(request, access.project.name)
    row = await _artifact(request, view)
    page = page_of(request)
    tags = (await artifacts.tags(services_of(request).db, [row.id])).get(row.id, [])
    return paged(request, [tag_json(t) for t in tags[page.offset : page.offset + page.size]], len(tags), page)


async def create_tag(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.TAG_CREATE)
    view = await find_repository(request, access.project.name)
    row = await _artifact(request, view)
    name = (await json_body(request)).get("name")
    if not isinstance(name, str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "name is required")
    check_tag(name)
    registry = services_of(request).registry
    if await manifest_rows.by_tag(registry.db, view.name, name) is not None:
        raise RegistryError(ErrorCode.CONFLICT, f"tag {name} already exists in {view.name}")
    stored = await registry.get_manifest(view.name, row.digest)
    await registry.put_manifest(view.name, name, stored.data, row.media_type)
    location = f"{request.path}/{name}"
    return created(location)


async def delete_tag(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.TAG_DELETE)
    view = await find_repository(request, access.project.name)
    row = await _artifact(request, view)
    name = request.match_info["tag"]
    tagged = await manifest_rows.by_tag(services_of(request).db, view.name, name)
    if tagged is None or tagged.id != row.id:
        raise RegistryError(ErrorCode.NOT_FOUND, f"tag {name[:200]} not found on {row.digest}")
    await services_of(request).registry.delete_manifest(view.name, name)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/repositories/{{repository}}/artifacts"
    app.router.add_get(base, list_artifacts)
    app.router.add_get(base + "/{reference}", get_artifact)
    app.router.add_delete(base + "/{reference}", delete_artifact)
    app.router.add_get(base + "/{reference}/tags", list_tags)
    app.router.add_post(base + "/{reference}/tags", create_tag)
    app.router.add_delete(base + "/{reference}/tags/{tag}", delete_tag)
