"""``/api/v2.0/projects/{p}/members``: list, add, get, change role, remove.

Body of an addition: ``{"role_id": 2, "member_user": {"username": "alice"}}`` (or
``{"user_id": 3}``). Roles: 1 project admin, 2 developer, 3 guest, 4 maintainer,
5 limited guest. Project admins (and system administrators) manage members; members
other than limited guests list them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    created,
    id_param,
    json_body,
    ok,
    page_of,
    paged,
    project_access,
    services_of,
)
from regd.api.http import json_response
from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.metadata import projects, users
from regd.metadata.projects import Member


def member_json(member: Member) -> dict[str, Any]:
    role = Role(member.role)
    return {
        "id": member.id,
        "project_id": member.project_id,
        "entity_name": member.username,
        "role_name": role.harbor_name,
        "role_id": int(role),
        "entity_id": member.user_id,
        "entity_type": "u",
    }


def _role(body: dict[str, Any]) -> Role:
    role = Role.parse(body.get("role_id"))
    if role is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "role_id must be 1 to 5")
    return role


def _member_id(request: web.Request) -> int:
    member_id = id_param(request, "member")
    if member_id is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "the member id must be a number")
    return member_id


async def list_members(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_READ)
    page = page_of(request)
    total, rows = await projects.members(
        services_of(request).db,
        access.project.id,
        request.query.get("entityname", ""),
        page.offset,
        page.size,
    )
    return paged(request, [member_json(m) for m in rows], total, page)


async def add_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    body = await json_body(request)
    role = _role(body)
    db = services_of(request).db
    target = body.get("member_user")
    user = None
    if isinstance(target, dict) and isinstance(target.get("username"), str):
        user = await users.by_name(db, target["username"])
    elif isinstance(target, dict) and isinstance(target.get("user_id"), int):
        user = await users.by_id(db, target["user_id"])
    else:
        raise RegistryError(ErrorCode.BAD_REQUEST, "member_user with a username or user_id is required")
    if user is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "user not found")
    async with db.transaction() as conn:
        member_id = await projects.add_member(conn, access.project.id, user.id, int(role))
    if member_id is None:
        raise RegistryError(
            ErrorCode.CONFLICT, f"{user.username} is already a member of {access.project.name}"
        )
    return created(f"{PREFIX}/projects/{request.match_info['project']}/members/{member_id}")


async def get_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_READ)
    member = await projects.member(services_of(request).db, access.project.id, _member_id(request))
    if member is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "member not found")
    return json_response(member_json(member))


async def update_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    role = _role(await json_body(request))
    async with services_of(request).db.transaction() as conn:
        found = await projects.set_role(conn, access.project.id, _member_id(request), int(role))
    if not found:
        raise RegistryError(ErrorCode.NOT_FOUND, "member not found")
    return ok()


async def remove_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    async with services_of(request).db.transaction() as conn:
        found = await projects.remove_member(conn, access.project.id, _member_id(request))
    if not found:
        raise RegistryError(ErrorCode.NOT_FOUND, "member not found")
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/members"
    app.router.add_get(base, list_members)
    app.router.add_post(base, add_member)
    app.router.add_get(base + "/{member}", get_member)
    app.router.add_put(base + "/{member}", update_member)
    app.router.add_delete(base + "/{member}", remove_member)
