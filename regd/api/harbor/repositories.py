"""``/api/v2.0/projects/{p}/repositories`` and ``/api/v2.0/repositories``.

``{repository}`` is the name without the project, URL-encoded twice when it holds a
slash (``a/b`` -> ``a%252Fb``, as in Harbor): aiohttp decodes the path once, and
``repository_name`` decodes the second time (a once-encoded name works too). Only
repositories that hold a manifest are listed, as in ``/v2/_catalog``. A description
(``PUT {"description"}``, HTML-escaped as Harbor does) may be set by project admins,
maintainers and developers; deleting a repository removes its manifests, tags and blob
links in one transaction (``Registry.delete_repository``).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    caller,
    json_body,
    ok,
    page_of,
    paged,
    project_access,
    query_terms,
    services_of,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.auth.accounts import Kind
from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.metadata import artifacts, projects
from regd.metadata.artifacts import RepositoryView
from regd.names import is_valid_name


def repository_json(view: RepositoryView, project_id: int) -> dict[str, Any]:
    return {
        "id": view.id,
        "project_id": project_id,
        "name": view.name,
        "description": view.description,
        "artifact_count": view.artifact_count,
        "pull_count": view.pull_count,
        "creation_time": timestamp(view.created_at),
        "update_time": timestamp(view.updated_at),
    }


def repository_name(request: web.Request, project: str) -> str:
    """The full repository name from ``{repository}`` (decoded a second time)."""
    name = f"{project}/{unquote(request.match_info['repository'])}"
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.BAD_REQUEST, f"invalid repository name {name[:300]!r}")
    return name


async def find_repository(request: web.Request, project: str) -> RepositoryView:
    name = repository_name(request, project)
    view = await artifacts.repository(services_of(request).db, name)
    if view is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"repository {name} not found")
    return view


def _name_filter(request: web.Request) -> tuple[str, bool]:
    """Harbor's ``q=name=~x`` (contains) or ``q=name=x`` (exact)."""
    name = query_terms(request).get("name", "")
    return (name[1:], False) if name.startswith("~") else (name, bool(name))


async def list_repositories(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    page = page_of(request)
    name, exact = _name_filter(request)
    if exact and "/" not in name:
        name = f"{access.project.name}/{name}"
    total, rows = await artifacts.repositories(
        services_of(request).db, [access.project.name], name, exact, page.offset, page.size
    )
    return paged(request, [repository_json(r, access.project.id) for r in rows], total, page)


async def list_all_repositories(request: web.Request) -> web.Response:
    """Repositories of every project the caller may read."""
    account = await caller(request)
    db = services_of(request).db
    page = page_of(request)
    visible = None
    if not account.is_admin:
        member_of = account.id if account.kind is Kind.USER else None
        _, listed = await projects.page(
            db, visible_to=member_of, all_projects=False, offset=0, limit=1_000_000
        )
        visible = [p.name for p in listed]
    name, exact = _name_filter(request)
    total, rows = await artifacts.repositories(db, visible, name, exact, page.offset, page.size)
    ids = {}
    for row in rows:
        if row.project not in ids:
            found = await projects.by_name(db, row.project)
            ids[row.project] = found.id if found else 0
    return paged(request, [repository_json(r, ids[r.project]) for r in rows], total, page)


async def get_repository(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    view = await find_repository(request, access.project.name)
    return json_response(repository_json(view, access.project.id))


async def update_repository(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_UPDATE)
    view = await find_repository(request, access.project.name)
    description = html.escape(text_field(await json_body(request), "description", limit=65536), quote=True)
    async with services_of(request).db.transaction() as conn:
        await artifacts.set_description(conn, view.id, description)
    return ok()


async def delete_repository(request: web.Request) -> web.Response:
    """Every manifest, tag and blob link of the repository, in one transaction
    (``Registry.delete_repository``); the bytes go at the next collection."""
    access = await project_access(request, Permission.REPOSITORY_DELETE)
    view = await find_repository(request, access.project.name)
    await services_of(request).registry.delete_repository(view.name)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/repositories"
    app.router.add_get(f"{PREFIX}/repositories", list_all_repositories)
    app.router.add_get(base, list_repositories)
    app.router.add_get(base + "/{repository}", get_repository)
    app.router.add_put(base + "/{repository}", update_repository)
    app.router.add_delete(base + "/{repository}", delete_repository)
