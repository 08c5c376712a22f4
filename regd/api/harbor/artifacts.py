"""``/api/v2.0/projects/{p}/repositories/{r}/artifacts``: list (with tags; signatures are
not listed as artifacts of their own, as in Harbor; ``with_accessory=true`` shows them on
their image), get, delete, ``.../accessories``;
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
    manage_of,
    ok,
    page_of,
    paged,
    project_access,
    timestamp,
)
from regd.api.harbor.repositories import find_repository
from regd.api.harbor.trust import accessory_json
from regd.api.http import json_response
from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage import ProjectAccess
from regd.manage.artifacts import Artifact, Child
from regd.manage.trust import Accessory
from regd.metadata.artifacts import RepositoryView, TagView
from regd.metadata.manifests import ManifestRow


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
    """Harbor's ``Reference``; the platform is the index entry's, with the image spec's
    key names (``os.version``, ``os.features``)."""
    return {
        "parent_id": parent_id,
        "child_id": child.manifest_id or 0,
        "child_digest": child.digest,
        "platform": child.platform,
        "annotations": child.annotations,
        "urls": child.urls,
    }


def artifact_json(
    project_id: int,
    view: RepositoryView,
    artifact: Artifact,
    accessories: dict[int, list[Accessory]] | None = None,
) -> dict[str, Any]:
    row = artifact.row
    references = [reference_json(row.id, child) for child in artifact.children]
    return {
        "id": row.id,
        "type": "IMAGE" if artifact.is_image else "UNKNOWN",
        "media_type": artifact.config_type or row.media_type,
        "manifest_media_type": row.media_type,
        "artifact_type": row.artifact_type or artifact.config_type or row.media_type,
        "project_id": project_id,
        "repository_id": view.id,
        "repository_name": view.name,
        "digest": row.digest,
        "size": artifact.size,
        "push_time": timestamp(row.pushed_at),
        "pull_time": timestamp(artifact.pulled_at),
        "extra_attrs": artifact.extra_attrs,
        "annotations": row.annotations or {},
        "references": references or None,
        "tags": [tag_json(t) for t in artifact.tags] or None,
        "labels": None,
        "accessories": None
        if accessories is None
        else [accessory_json(a, view.name) for a in accessories.get(row.id, [])],
        "icon": "",
    }


async def _located(request: web.Request, permission: Permission) -> tuple[ProjectAccess, RepositoryView]:
    access = await project_access(request, permission)
    return access, await find_repository(request, access)


async def list_artifacts(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.REPOSITORY_READ)
    page = page_of(request)
    listing = await manage_of(request).artifacts.listing(access.actor, access.project, view, page)
    signed = await _accessories(request, access, view, [a.row for a in listing.items])
    items = [artifact_json(access.project.id, view, a, signed) for a in listing.items]
    return paged(request, items, listing.total, page)


async def _accessories(
    request: web.Request, access: ProjectAccess, view: RepositoryView, rows: list[ManifestRow]
) -> dict[int, list[Accessory]] | None:
    """With ``with_accessory=true``: the signatures of each artifact, else None."""
    if request.query.get("with_accessory", "").lower() != "true":
        return None
    return await manage_of(request).trust.accessories(access.actor, access.project, view, rows)


async def get_artifact(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.REPOSITORY_READ)
    reference = request.match_info["reference"]
    artifact = await manage_of(request).artifacts.get(access.actor, access.project, view, reference)
    signed = await _accessories(request, access, view, [artifact.row])
    return json_response(artifact_json(access.project.id, view, artifact, signed))


async def delete_artifact(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.ARTIFACT_DELETE)
    reference = request.match_info["reference"]
    await manage_of(request).artifacts.delete(access.actor, access.project, view, reference)
    return ok()


async def list_tags(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.REPOSITORY_READ)
    service = manage_of(request).artifacts
    reference = request.match_info["reference"]
    await service.resolve(view, reference)  # a missing artifact before a bad page
    page = page_of(request)
    listing = await service.tags(access.actor, access.project, view, reference, page)
    return paged(request, [tag_json(t) for t in listing.items], listing.total, page)


async def create_tag(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.TAG_CREATE)
    service = manage_of(request).artifacts
    reference = request.match_info["reference"]
    await service.resolve(view, reference)  # a missing artifact before a bad body
    name = (await json_body(request)).get("name")
    if not isinstance(name, str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "name is required")
    await service.create_tag(access.actor, access.project, view, reference, name)
    return created(f"{request.path}/{name}")


async def delete_tag(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.TAG_DELETE)
    reference, name = request.match_info["reference"], request.match_info["tag"]
    await manage_of(request).artifacts.delete_tag(access.actor, access.project, view, reference, name)
    return ok()


async def list_accessories(request: web.Request) -> web.Response:
    access, view = await _located(request, Permission.REPOSITORY_READ)
    page = page_of(request)
    reference = request.match_info["reference"]
    listing = await manage_of(request).trust.accessories_of(
        access.actor, access.project, view, reference, page
    )
    return paged(request, [accessory_json(a, view.name) for a in listing.items], listing.total, page)


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/repositories/{{repository}}/artifacts"
    app.router.add_get(base, list_artifacts)
    app.router.add_get(base + "/{reference}", get_artifact)
    app.router.add_delete(base + "/{reference}", delete_artifact)
    app.router.add_get(base + "/{reference}/tags", list_tags)
    app.router.add_post(base + "/{reference}/tags", create_tag)
    app.router.add_delete(base + "/{reference}/tags/{tag}", delete_tag)
    app.router.add_get(base + "/{reference}/accessories", list_accessories)
