"""``/api/v2.0/projects``: list, exists (HEAD), create, get, update, delete, summary.

The rules are ``regd.manage.projects``'s. Here: Harbor's JSON; ``metadata.public`` is
the string "true" or "false", and the deprecated top-level boolean ``public`` is copied
into it; ``X-Resource-Name-In-Location: true`` puts the name in ``Location``; anonymous
callers list public projects only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    actor,
    created,
    json_body,
    logged_in,
    manage_of,
    ok,
    page_of,
    paged,
    project_access,
    query_terms,
    timestamp,
)
from regd.api.http import json_response
from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.manage.projects import ProjectView, check_project_name


def project_json(view: ProjectView) -> dict[str, Any]:
    project, role = view.project, view.role
    return {
        "project_id": project.id,
        "owner_id": project.owner_id or 0,
        "owner_name": project.owner_name,
        "name": project.name,
        "registry_id": project.registry_id or 0,
        "creation_time": timestamp(project.created_at),
        "update_time": timestamp(project.updated_at),
        "deleted": False,
        "togglable": role is Role.PROJECT_ADMIN,
        "current_user_role_id": int(role) if role is not None else 0,
        "current_user_role_ids": [int(role)] if role is not None else None,
        "repo_count": view.repo_count,
        "metadata": {**project.metadata, "public": "true" if project.public else "false"},
        "cve_allowlist": {"id": 0, "project_id": project.id, "items": [], "expires_at": None},
    }


def _metadata(body: dict[str, Any]) -> dict[str, Any]:
    """The body's ``metadata``, with the deprecated top-level ``public`` folded in."""
    raw = body.get("metadata") or {}
    if not isinstance(raw, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "metadata must be an object of strings")
    if isinstance(body.get("public"), bool) and "public" not in raw:
        raw = {**raw, "public": "true" if body["public"] else "false"}
    return raw


async def list_projects(request: web.Request) -> web.Response:
    page = page_of(request)
    terms = query_terms(request)
    name = request.query.get("name") or terms.get("name", "")
    exact = "name" not in request.query and bool(name) and not name.startswith("~")
    public_text = request.query.get("public") or terms.get("public")
    public = None if public_text is None else public_text.lower() == "true"
    listing = await manage_of(request).projects.listing(
        await actor(request), page, name=name.lstrip("~"), exact=exact, public=public
    )
    return paged(request, [project_json(v) for v in listing.items], listing.total, page)


async def head_project(request: web.Request) -> web.Response:
    name = request.query.get("project_name", "")
    if not await manage_of(request).projects.exists(await actor(request), name):
        raise RegistryError(ErrorCode.NOT_FOUND, f"project {name[:100]} not found")
    return ok()


async def create_project(request: web.Request) -> web.Response:
    service = manage_of(request).projects
    caller = await logged_in(request)
    service.check_create(caller)  # before reading the body, as Harbor answers
    body = await json_body(request)
    name = check_project_name(body.get("project_name"))
    registry_id = body.get("registry_id")
    if registry_id is not None and (not isinstance(registry_id, int) or isinstance(registry_id, bool)):
        raise RegistryError(ErrorCode.BAD_REQUEST, "registry_id must be an integer")
    project_id = await service.create(caller, name, _metadata(body), registry_id or None)
    by_name = request.headers.get("X-Resource-Name-In-Location", "").lower() == "true"
    return created(f"{PREFIX}/projects/{name if by_name else project_id}")


async def get_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    return json_response(project_json(await manage_of(request).projects.view(access.actor, access.project)))


async def update_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_UPDATE)
    body = await json_body(request)
    await manage_of(request).projects.update(access.actor, access.project, _metadata(body))
    return ok()


async def delete_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_DELETE)
    await manage_of(request).projects.delete(access.actor, access.project)
    return ok()


async def project_deletable(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_DELETE)
    problem = await manage_of(request).projects.deletable(access.actor, access.project)
    return json_response({"deletable": problem is None, "message": problem or ""})


async def project_summary(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    service = manage_of(request).projects
    summary: dict[str, Any] = {"repo_count": await service.repository_count(access.project)}
    counts = await service.role_counts(access.actor, access.project)
    for role, count in (counts or {}).items():
        key = {Role.PROJECT_ADMIN: "project_admin_count", Role.LIMITED_GUEST: "limited_guest_count"}.get(
            role, f"{role.harbor_name}_count"
        )
        summary[key] = count
    return json_response(summary)


def routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/projects", list_projects, allow_head=False)
    app.router.add_route("HEAD", f"{PREFIX}/projects", head_project)
    app.router.add_post(f"{PREFIX}/projects", create_project)
    app.router.add_get(f"{PREFIX}/projects/{{project}}", get_project)
    app.router.add_put(f"{PREFIX}/projects/{{project}}", update_project)
    app.router.add_delete(f"{PREFIX}/projects/{{project}}", delete_project)
    app.router.add_get(f"{PREFIX}/projects/{{project}}/_deletable", project_deletable)
    app.router.add_get(f"{PREFIX}/projects/{{project}}/summary", project_summary)
