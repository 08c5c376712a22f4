"""Pages of projects: the list with "New Project", one project's repositories, its
members and its robot accounts (for those who may see them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.auth.roles import ROBOT_ACTIONS, Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.manage import Listing, Page, ProjectAccess
from regd.manage.robots import CreatedRobot
from regd.numbers import parse_uint
from regd.web.render import (
    current,
    form,
    manage_of,
    or_form_error,
    page,
    page_of,
    pager,
    render,
    see_other,
)

MAX_DAYS = 36500  # a robot account expires within a hundred years, or never


async def projects_page(
    request: web.Request, error: str = "", status: int = 200, name: str = ""
) -> web.Response:
    me = await current(request)
    q = request.query.get("q", "").strip()
    paging = page_of(request)
    listing = await manage_of(request).projects.listing(me, paging, name=q)
    try:
        manage_of(request).projects.check_create(me)
        may_create = True
    except RegistryError:
        may_create = False
    context: dict[str, Any] = {
        "projects": listing.items,
        "pager": pager(request, paging, listing.total),
        "q": q,
        "may_create": may_create,
        "name_error": error,
        "name_value": name,
    }
    return await render(request, "projects.html", context, status=status)


async def create_project(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    name = fields.get("name", "").strip()

    async def create() -> web.StreamResponse:
        public = "true" if fields.get("public") else "false"
        await manage_of(request).projects.create(await current(request), name, {"public": public})
        return see_other(f"/projects/{name}")

    async def shown(error: str, status: int) -> web.StreamResponse:
        return await projects_page(request, error, status, name)

    return await or_form_error(create(), shown)


async def _access(request: web.Request, permission: Permission = Permission.PROJECT_READ) -> ProjectAccess:
    me = await current(request)
    return await manage_of(request).projects.access(
        me, request.match_info["project"], permission, by_name=True
    )


async def _project_page(
    request: web.Request, access: ProjectAccess, tab: str, listing: Listing[Any], paging: Page, **more: Any
) -> web.Response:
    """One tab of a project's page (repositories, members, robots) with its listing."""
    status = more.pop("status", 200)
    context = {
        "project": access.project,
        "role": access.role,
        "tabs": {"members": access.may(Permission.MEMBER_READ), "robots": access.may(Permission.ROBOT_READ)},
        "tab": tab,
        "items": listing.items,
        "pager": pager(request, paging, listing.total),
        "error": "",
        **more,
    }
    return await render(request, f"{tab}.html", context, status=status)


async def project_page(request: web.Request) -> web.StreamResponse:
    access = await _access(request)
    q = request.query.get("q", "").strip()
    paging = page_of(request)
    listing = await manage_of(request).repositories.listing(access.actor, access.project, paging, q)
    return await _project_page(request, access, "repositories", listing, paging, q=q)


async def members_page(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    access = await _access(request, Permission.MEMBER_READ)
    paging = page_of(request)
    listing = await manage_of(request).members.listing(access.actor, access.project, paging)
    may_manage = access.may(Permission.MEMBER_MANAGE)
    return await _project_page(
        request,
        access,
        "members",
        listing,
        paging,
        roles=list(Role),
        may_manage=may_manage,
        error=error,
        status=status,
    )


async def members_post(request: web.Request) -> web.StreamResponse:
    """Add a member, change a member's role, remove a member."""
    access = await _access(request, Permission.MEMBER_MANAGE)
    fields = await form(request)
    members = manage_of(request).members
    raw_role = fields.get("role", "")
    role = Role.parse(parse_uint(raw_role) or raw_role)
    member = parse_uint(fields.get("member", ""))

    async def change() -> web.StreamResponse:
        action = fields.get("action", "add")
        if action == "add" and role is not None:
            await members.add(access.actor, access.project, role, username=fields.get("username", "").strip())
        elif action == "role" and role is not None and member is not None:
            await members.set_role(access.actor, access.project, member, role)
        elif action == "remove" and member is not None:
            await members.remove(access.actor, access.project, member)
        else:
            raise RegistryError(ErrorCode.BAD_REQUEST, "choose a user and a role")
        return see_other(f"/projects/{access.project.name}/members")

    return await or_form_error(change(), lambda error, status: members_page(request, error, status))


async def robots_page(
    request: web.Request, created: CreatedRobot | None = None, error: str = "", status: int = 200
) -> web.StreamResponse:
    access = await _access(request, Permission.ROBOT_READ)
    paging = page_of(request)
    listing = await manage_of(request).robots.listing(access.actor, paging, access.project)
    more = {"may_manage": access.may(Permission.ROBOT_MANAGE), "actions": sorted(ROBOT_ACTIONS)}
    return await _project_page(
        request, access, "robots", listing, paging, created=created, error=error, status=status, **more
    )


async def robots_post(request: web.Request) -> web.StreamResponse:
    """Create a robot account (the answer shows its secret, the only time) or delete one."""
    access = await _access(request, Permission.ROBOT_MANAGE)
    fields = await form(request)
    robots = manage_of(request).robots
    if fields.get("action") == "delete":
        robot = await robots.get(access.actor, fields.get("robot", ""), Permission.ROBOT_MANAGE)
        if robot.project_id != access.project.id:
            raise RegistryError(ErrorCode.NOT_FOUND, "no such robot account in this project")
        await robots.delete(access.actor, robot)
        return see_other(f"/projects/{access.project.name}/robots")
    chosen = (await request.post()).getall("actions", [])
    actions = frozenset(a for a in chosen if isinstance(a, str) and a in ROBOT_ACTIONS)
    days = fields.get("days", "").strip()

    async def create() -> web.StreamResponse:
        if days and parse_uint(days, MAX_DAYS, 1) is None:
            raise RegistryError(
                ErrorCode.BAD_REQUEST, f"expires after: 1 to {MAX_DAYS} days, or empty for never"
            )
        created = await robots.create(
            access.actor,
            access.project,
            fields.get("name", "").strip(),
            actions,
            int(days) if days else -1,
            fields.get("description", "")[:1024],
        )
        return await robots_page(request, created=created)

    return await or_form_error(
        create(), lambda error, status: robots_page(request, error=error, status=status)
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/", page(projects_page))
    app.router.add_get("/projects", page(projects_page))
    app.router.add_post("/projects", page(create_project))
    app.router.add_get("/projects/{project}", page(project_page))
    app.router.add_get("/projects/{project}/members", page(members_page))
    app.router.add_post("/projects/{project}/members", page(members_post))
    app.router.add_get("/projects/{project}/robots", page(robots_page))
    app.router.add_post("/projects/{project}/robots", page(robots_post))
