"""The page of one repository: tabs "Artifacts" and "Info", and its deletions.

One URL per repository (``/projects/<p>/repositories/<name>``; the name may hold
slashes); what to show is in the query (``tab=info``, ``edit=1``, ``confirm=...``) and
what to change is the form's ``action`` (``describe``, ``delete-tag``,
``delete-artifact``, ``delete-repository``). Each deletion first shows a confirmation
that names what goes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage import ProjectAccess, descriptions
from regd.metadata.artifacts import RepositoryView
from regd.numbers import parse_uint
from regd.web.markdown import render as render_markdown
from regd.web.render import current, form, manage_of, page, page_of, pager, render, see_other

TAGS_SHOWN = 20  # tags of an artifact in the list; the rest a page of TAG_PAGE at a time
TAG_PAGE = 100


def _tag_page(request: web.Request, digest: str, count: int) -> dict[str, Any]:
    """Which of an artifact's tags the list shows: the first TAGS_SHOWN, or (for the
    artifact named by ``?digest=``) page ``?tags=N`` of TAG_PAGE, with links to more."""
    query = {k: v for k, v in request.query.items() if k not in ("digest", "tags")}
    number = parse_uint(request.query.get("tags"), 10**6, 1)
    if request.query.get("digest") != digest or number is None:
        more = {**query, "digest": digest, "tags": "1"} if count > TAGS_SHOWN else None
        return {
            "start": 0,
            "end": TAGS_SHOWN,
            "more": urlencode(more) if more else "",
            "prev": "",
            "next": "",
        }
    start, end = (number - 1) * TAG_PAGE, number * TAG_PAGE

    def link(page: int) -> str:
        return urlencode({**query, "digest": digest, "tags": str(page)})

    return {
        "start": start,
        "end": end,
        "more": "",
        "prev": link(number - 1) if number > 1 else "",
        "next": link(number + 1) if end < count else "",
    }


def _url(view: RepositoryView, **query: str) -> str:
    project, _, name = view.name.partition("/")
    base = f"/projects/{project}/repositories/{name}"
    return base + ("?" + urlencode(query) if query else "")


async def _located(request: web.Request, permission: Permission) -> tuple[ProjectAccess, RepositoryView]:
    manage = manage_of(request)
    access = await manage.projects.access(
        await current(request), request.match_info["project"], permission, by_name=True
    )
    return access, await manage.repositories.find(access.project, request.match_info["repository"])


def _permissions(access: ProjectAccess) -> dict[str, bool]:
    return {
        "edit": access.may(Permission.REPOSITORY_UPDATE),
        "delete_repository": access.may(Permission.REPOSITORY_DELETE),
        "delete_artifact": access.may(Permission.ARTIFACT_DELETE),
        "delete_tag": access.may(Permission.TAG_DELETE),
    }


async def repository_page(request: web.Request) -> web.StreamResponse:
    access, view = await _located(request, Permission.REPOSITORY_READ)
    tab = "info" if request.query.get("tab") == "info" else "artifacts"
    context: dict[str, Any] = {
        "project": access.project,
        "repository": view,
        "short_name": view.name.partition("/")[2],
        "url": _url(view),
        "tab": tab,
        "may": _permissions(access),
        "confirm": None,
    }
    if (confirm := request.query.get("confirm")) is not None:
        context["confirm"] = _confirmation(confirm, request.query)
    if tab == "info":
        context["description_html"] = render_markdown(view.description)
        context["description_text"] = descriptions.text_of(view.description)
        context["editing"] = request.query.get("edit") == "1" and context["may"]["edit"]
    else:
        paging = page_of(request)
        service = manage_of(request).artifacts
        listing = await service.listing(access.actor, access.project, view, paging)
        context["artifacts"] = listing.items
        context["pager"] = pager(request, paging, listing.total)
        context["tag_pages"] = {
            a.row.id: _tag_page(request, a.row.digest, len(a.tags)) for a in listing.items
        }
    return await render(request, "repository.html", context)


def _confirmation(kind: str, query: Any) -> dict[str, str]:
    """What a confirmation names: the action and what goes."""
    if kind == "delete-tag":
        return {"action": kind, "tag": query.get("tag", ""), "what": f"tag {query.get('tag', '')}"}
    if kind == "delete-artifact":
        digest = query.get("digest", "")
        return {"action": kind, "digest": digest, "what": f"artifact {digest} and all its tags"}
    if kind == "delete-repository":
        return {"action": kind, "what": "this repository, all its artifacts and tags"}
    raise RegistryError(ErrorCode.BAD_REQUEST, "unknown confirmation")


async def repository_post(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    action = fields.get("action", "")
    permission = {
        "describe": Permission.REPOSITORY_UPDATE,
        "delete-tag": Permission.TAG_DELETE,
        "delete-artifact": Permission.ARTIFACT_DELETE,
        "delete-repository": Permission.REPOSITORY_DELETE,
    }.get(action)
    if permission is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "unknown action")
    access, view = await _located(request, permission)
    manage = manage_of(request)
    if action == "describe":
        text = fields.get("description", "").replace("\r\n", "\n")
        await manage.repositories.set_description(access.actor, access.project, view, text)
        return see_other(_url(view, tab="info"))
    if action == "delete-repository":
        await manage.repositories.delete(access.actor, access.project, view)
        return see_other(f"/projects/{access.project.name}")
    if action == "delete-tag":
        tag = fields.get("tag", "")
        await manage.artifacts.delete_tag(access.actor, access.project, view, tag, tag)
    else:
        await manage.artifacts.delete(access.actor, access.project, view, fields.get("digest", ""))
    if await _still_there(request, access, view):
        return see_other(_url(view))
    return see_other(f"/projects/{access.project.name}")


async def _still_there(request: web.Request, access: ProjectAccess, view: RepositoryView) -> bool:
    """A repository whose last artifact went is no longer listed."""
    try:
        await manage_of(request).repositories.find(access.project, view.name.partition("/")[2])
    except RegistryError:
        return False
    return True


def routes(app: web.Application) -> None:
    path = "/projects/{project}/repositories/{repository:.+}"
    app.router.add_get(path, page(repository_page))
    app.router.add_post(path, page(repository_post))
