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

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    actor,
    json_body,
    manage_of,
    ok,
    page_of,
    paged,
    project_access,
    query_terms,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.auth.roles import Permission
from regd.manage import ProjectAccess, descriptions
from regd.metadata.artifacts import RepositoryView


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


def repository_name(request: web.Request) -> str:
    """``{repository}`` without the project, decoded a second time."""
    return unquote(request.match_info["repository"])


async def find_repository(request: web.Request, access: ProjectAccess) -> RepositoryView:
    return await manage_of(request).repositories.find(access.project, repository_name(request))


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
    listing = await manage_of(request).repositories.listing(access.actor, access.project, page, name, exact)
    return paged(request, [repository_json(r, access.project.id) for r in listing.items], listing.total, page)


async def list_all_repositories(request: web.Request) -> web.Response:
    """Repositories of every project the caller may read."""
    page = page_of(request)
    name, exact = _name_filter(request)
    listing = await manage_of(request).repositories.list_all(await actor(request), page, name, exact)
    items = [repository_json(r.repository, r.project_id) for r in listing.items]
    return paged(request, items, listing.total, page)


async def get_repository(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_READ)
    view = await find_repository(request, access)
    return json_response(repository_json(view, access.project.id))


async def update_repository(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.REPOSITORY_UPDATE)
    view = await find_repository(request, access)
    text = text_field(await json_body(request), "description", limit=descriptions.MAX_LENGTH)
    await manage_of(request).repositories.set_description(access.actor, access.project, view, text)
    return ok()


async def delete_repository(request: web.Request) -> web.Response:
    """Every manifest, tag and blob link of the repository, in one transaction
    (``Registry.delete_repository``); the bytes go at the next collection."""
    access = await project_access(request, Permission.REPOSITORY_DELETE)
    view = await find_repository(request, access)
    await manage_of(request).repositories.delete(access.actor, access.project, view)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/repositories"
    app.router.add_get(f"{PREFIX}/repositories", list_all_repositories)
    app.router.add_get(base, list_repositories)
    app.router.add_get(base + "/{repository}", get_repository)
    app.router.add_put(base + "/{repository}", update_repository)
    app.router.add_delete(base + "/{repository}", delete_repository)
