"""``/api/v2.0/projects``: list, exists (HEAD), create, get, update, delete, summary.

Harbor's rules (``handler/project.go``): names match ``^[a-z0-9]+(?:[._-][a-z0-9]+)*$``
(1-255 characters); ``metadata.public`` is the string "true" or "false" (missing:
"false"); the deprecated top-level ``public`` is copied into it; duplicates get 409; a
project that holds repositories cannot be deleted (412). The creator becomes the
project's project admin. Anonymous callers list public projects only.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    ProjectAccess,
    caller,
    created,
    json_body,
    logged_in,
    ok,
    page_of,
    paged,
    project_access,
    query_terms,
    services_of,
    timestamp,
)
from regd.api.http import json_response
from regd.auth.accounts import Account, Kind
from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.manage import registries
from regd.metadata import projects
from regd.metadata import registries as registry_rows
from regd.metadata.projects import Project

PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Metadata keys kept as given (strings); regd enforces only ``public``.
METADATA_KEYS = frozenset(
    {
        "public",
        "enable_content_trust",
        "enable_content_trust_cosign",
        "prevent_vul",
        "severity",
        "auto_scan",
        "auto_sbom_generation",
        "reuse_sys_cve_allowlist",
    }
)


def project_json(project: Project, repo_count: int, role: Role | None) -> dict[str, Any]:
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
        "repo_count": repo_count,
        "metadata": {**project.metadata, "public": "true" if project.public else "false"},
        "cve_allowlist": {"id": 0, "project_id": project.id, "items": [], "expires_at": None},
    }


async def _json(request: web.Request, project: Project, account: Account) -> dict[str, Any]:
    services = services_of(request)
    role = await services.accounts.role(account, project)
    return project_json(project, await projects.repository_count(services.db, project.name), role)


def _metadata(body: dict[str, Any], current: dict[str, str]) -> tuple[bool, dict[str, str]]:
    raw = body.get("metadata") or {}
    if not isinstance(raw, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "metadata must be an object of strings")
    metadata = dict(current)
    if isinstance(body.get("public"), bool) and "public" not in raw:  # deprecated top-level flag
        raw = {**raw, "public": "true" if body["public"] else "false"}
    for key, value in raw.items():
        if key not in METADATA_KEYS:
            continue
        if not isinstance(value, str):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be a string")
        metadata[key] = value
    public = metadata.setdefault("public", "false").lower()
    if public not in ("true", "false"):
        raise RegistryError(ErrorCode.BAD_REQUEST, 'metadata.public must be "true" or "false"')
    metadata["public"] = public
    return public == "true", metadata


def check_project_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not PROJECT_NAME.match(name):
        raise RegistryError(
            ErrorCode.BAD_REQUEST, "project name is not in lower case or contains illegal characters"
        )
    return name


async def list_projects(request: web.Request) -> web.Response:
    account = await caller(request)
    page = page_of(request)
    terms = query_terms(request)
    name = request.query.get("name") or terms.get("name", "")
    exact = "name" not in request.query and bool(name) and not name.startswith("~")
    public_text = request.query.get("public") or terms.get("public")
    public = None if public_text is None else public_text.lower() == "true"
    total, rows = await projects.page(
        services_of(request).db,
        visible_to=account.id if account.kind is Kind.USER else None,
        all_projects=account.is_admin,
        name=name.lstrip("~"),
        exact_name=exact,
        public=public,
        offset=page.offset,
        limit=page.size,
    )
    return paged(request, [await _json(request, p, account) for p in rows], total, page)


async def head_project(request: web.Request) -> web.Response:
    await logged_in(request)
    name = request.query.get("project_name", "")
    found = await projects.by_name(services_of(request).db, name) if name else None
    if found is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"project {name[:100]} not found")
    return ok()


async def create_project(request: web.Request) -> web.Response:
    account = await logged_in(request)
    services = services_of(request)
    if account.kind is Kind.ROBOT:
        raise RegistryError(ErrorCode.FORBIDDEN, "robot accounts cannot create projects")
    if services.config.auth.project_creation_restriction == "adminonly" and not account.is_admin:
        raise RegistryError(ErrorCode.FORBIDDEN, "Only system admin can create project")
    body = await json_body(request)
    name = check_project_name(body.get("project_name"))
    public, metadata = _metadata(body, {})
    registry_id = await _proxy_registry(request, account, body.get("registry_id"))
    if registry_id is not None:
        metadata = registries.proxy_metadata(metadata, body.get("metadata") or {})
    async with services.db.transaction() as conn:
        if await projects.exists(conn, name):
            raise RegistryError(ErrorCode.CONFLICT, f"The project named {name} already exists")
        project_id = await projects.insert(conn, name, account.id or None, public, metadata, registry_id)
    by_name = request.headers.get("X-Resource-Name-In-Location", "").lower() == "true"
    return created(f"{PREFIX}/projects/{name if by_name else project_id}")


async def _proxy_registry(request: web.Request, account: Account, raw: object) -> int | None:
    """The endpoint a new project is a proxy cache of (None: a normal project)."""
    if raw is None or raw == 0:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise RegistryError(ErrorCode.BAD_REQUEST, "registry_id must be a positive integer")
    if not account.is_admin:
        raise RegistryError(ErrorCode.FORBIDDEN, "Only system admin can create proxy cache project")
    endpoint = await registry_rows.by_id(services_of(request).db, raw)
    if endpoint is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"registry {raw} not found")
    return endpoint.id


async def get_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    return json_response(await _json(request, access.project, access.account))


async def update_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_UPDATE)
    body = await json_body(request)
    public, metadata = _metadata(body, access.project.metadata)
    if access.project.registry_id is not None:
        metadata = registries.proxy_metadata(metadata, body.get("metadata") or {})
    async with services_of(request).db.transaction() as conn:
        await projects.update(conn, access.project.id, public, metadata)
    return ok()


async def _deletable(request: web.Request, access: ProjectAccess) -> str | None:
    count = await projects.repository_count(services_of(request).db, access.project.name)
    return "the project contains repositories, can not be deleted" if count else None


async def delete_project(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_DELETE)
    problem = await _deletable(request, access)
    if problem is not None:
        raise RegistryError(ErrorCode.PRECONDITION, problem)
    async with services_of(request).db.transaction() as conn:
        await projects.delete(conn, access.project.id)
    return ok()


async def project_deletable(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_DELETE)
    problem = await _deletable(request, access)
    return json_response({"deletable": problem is None, "message": problem or ""})


async def project_summary(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.PROJECT_READ)
    db = services_of(request).db
    summary: dict[str, Any] = {"repo_count": await projects.repository_count(db, access.project.name)}
    if access.may(Permission.MEMBER_READ):
        counts = await projects.role_counts(db, access.project.id)
        for role in Role:
            key = {Role.PROJECT_ADMIN: "project_admin_count", Role.LIMITED_GUEST: "limited_guest_count"}.get(
                role, f"{role.harbor_name}_count"
            )
            summary[key] = counts.get(int(role), 0)
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
