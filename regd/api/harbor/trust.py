"""Content trust in the management API:

- ``/projects/{p}/trust-anchors``: GET (list), POST ``{"name", "kind", "pem"}`` (201,
  409 on a taken name), ``DELETE .../trust-anchors/{name}``; regd's, not Harbor's;
- ``/projects/{p}/metadatas[/{key}]``: Harbor's per-key project metadata (GET, POST,
  PUT ``{"key": "value"}``, DELETE), where the content-trust switches live;
- accessories (``.../artifacts/{reference}/accessories``, ``with_accessory=true``) are
  served by ``artifacts.py`` in ``accessory_json``'s shape: Harbor's, plus ``verified``
  and ``reason`` (regd verifies; Harbor does not).

Handlers translate; the rules are ``regd/manage/trust.py``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import PREFIX, created, json_body, manage_of, ok, project_access, timestamp
from regd.api.http import json_response
from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage import trust
from regd.manage.trust import Accessory
from regd.metadata.trust_anchors import AnchorRow

ICON = "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06"


def accessory_json(accessory: Accessory, repository: str) -> dict[str, Any]:
    signature = accessory.signature
    return {
        "id": signature.id,
        "artifact_id": signature.id,
        "subject_artifact_id": accessory.subject.id,
        "subject_artifact_repo": repository,
        "subject_artifact_digest": accessory.subject.digest,
        "size": accessory.size,
        "digest": signature.digest,
        "type": signature.kind.value,
        "icon": ICON,
        "creation_time": timestamp(signature.pushed_at),
        "verified": accessory.verified,
        "reason": accessory.reason,
    }


def anchor_json(row: AnchorRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "name": row.anchor.name,
        "kind": row.anchor.kind.value,
        "pem": row.anchor.pem,
        "description": trust.describe(row.anchor),
        "fingerprint": trust.fingerprint(row.anchor),
        "creation_time": timestamp(row.created_at),
    }


async def list_anchors(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    rows = await manage_of(request).trust.anchors(access.actor, access.project)
    return json_response([anchor_json(r) for r in rows])


async def add_anchor(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_UPDATE)
    body = await json_body(request)
    anchor = trust.parse_anchor(body.get("name"), body.get("kind"), body.get("pem"))
    await manage_of(request).trust.add_anchor(access.actor, access.project, anchor)
    return created(f"{request.path}/{anchor.name}")


async def remove_anchor(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_UPDATE)
    await manage_of(request).trust.remove_anchor(access.actor, access.project, request.match_info["name"])
    return ok()


async def get_metadatas(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    metadata = manage_of(request).trust.metadata(access.actor, access.project)
    key = request.match_info.get("key")
    if key is None:
        return json_response(metadata)
    if key not in metadata:
        raise RegistryError(ErrorCode.NOT_FOUND, f"metadata {key[:100]} not found")
    return json_response({key: metadata[key]})


async def set_metadatas(request: web.Request) -> web.Response:
    """POST (add) and PUT ``/metadatas/{key}`` (update): ``{"key": "value", ...}``."""
    access = await project_access(request, Permission.PROJECT_UPDATE)
    body = await json_body(request)
    key = request.match_info.get("key")
    if key is not None and set(body) != {key}:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"the body must hold exactly the key {key[:100]}")
    await manage_of(request).trust.set_metadata(access.actor, access.project, body)
    return ok()


async def delete_metadata(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_UPDATE)
    await manage_of(request).trust.delete_metadata(access.actor, access.project, request.match_info["key"])
    return ok()


def routes(app: web.Application) -> None:
    project = f"{PREFIX}/projects/{{project}}"
    app.router.add_get(f"{project}/trust-anchors", list_anchors)
    app.router.add_post(f"{project}/trust-anchors", add_anchor)
    app.router.add_delete(f"{project}/trust-anchors/{{name}}", remove_anchor)
    app.router.add_get(f"{project}/metadatas", get_metadatas)
    app.router.add_post(f"{project}/metadatas", set_metadatas)
    app.router.add_get(f"{project}/metadatas/{{key}}", get_metadatas)
    app.router.add_put(f"{project}/metadatas/{{key}}", set_metadatas)
    app.router.add_delete(f"{project}/metadatas/{{key}}", delete_metadata)
