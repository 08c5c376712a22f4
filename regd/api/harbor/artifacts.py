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
from regd.errors import ErrorCode, RegistryError, proxy_push_denied
from regd.metadata import artifacts
from regd.metadata import manifests as manifest_rows
from regd.metadata.artifacts import RepositoryView, TagView
from regd.metadata.manifests import ManifestRow
from regd.names import check_tag

_IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def tag_json(tag: TagView) -> dict[str, Any]:
    return {
        "id": 0,
        "repository_id": tag.repository_id,
        "artifact_id": tag.manifest_id,
        "name": tag.name,
        "push_time": timestamp(tag.updated_at),
        "pull_time": None,
        "immutable": False,
    }


async def artifact_json(
    request: web.Request, project_id: int, view: RepositoryView, rows: list[ManifestRow]
) -> list[dict[str, Any]]:
    db = services_of(request).db
    ids = [row.id for row in rows]
    tags, details, children = (
        await artifacts.tags(db, ids),
        await artifacts.blob_details(db, ids),
        await artifacts.children(db, ids),
    )
    result = []
    for row in rows:
        blob_size, config_type = details.get(row.id, (0, None))
        image = row.media_type in _INDEXES or config_type in _IMAGE_CONFIGS
        references = [
            {"parent_id": row.id, "child_id": child_id or 0, "child_digest": digest}
            for child_id, digest in children.get(row.id, [])
        ]
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
                "pull_time": None,
                "extra_attrs": {},
                "annotations": row.annotations or {},
                "references": references or None,
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
    if access.project.registry_id is not None:
        raise proxy_push_denied(access.project.name)
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
