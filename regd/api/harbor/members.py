"""``/api/v2.0/projects/{p}/members``: list, add, get, change role, remove.

Body of an addition: ``{"role_id": 2, "member_user": {"username": "alice"}}`` (or
``{"user_id": 3}``). Roles: 1 project admin, 2 developer, 3 guest, 4 maintainer,
5 limited guest. Project admins (and system administrators) manage members; members
other than limited guests list them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import PREFIX, created, json_body, manage_of, ok, page_of, paged, project_access
from regd.api.http import json_response
from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.metadata.projects import Member
from regd.numbers import parse_uint


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
    member_id = parse_uint(request.match_info["member"])
    if member_id is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "the member id must be a number")
    return member_id


async def list_members(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_READ)
    page = page_of(request)
    listing = await manage_of(request).members.listing(
        access.actor, access.project, page, request.query.get("entityname", "")
    )
    return paged(request, [member_json(m) for m in listing.items], listing.total, page)


async def add_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    body = await json_body(request)
    role = _role(body)
    target = body.get("member_user")
    if isinstance(target, dict) and isinstance(target.get("username"), str):
        who: dict[str, Any] = {"username": target["username"]}
    elif isinstance(target, dict) and isinstance(target.get("user_id"), int):
        who = {"user_id": target["user_id"]}
    else:
        raise RegistryError(ErrorCode.BAD_REQUEST, "member_user with a username or user_id is required")
    member_id = await manage_of(request).members.add(access.actor, access.project, role, **who)
    return created(f"{PREFIX}/projects/{request.match_info['project']}/members/{member_id}")


async def get_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_READ)
    member = await manage_of(request).members.get(access.actor, access.project, _member_id(request))
    return json_response(member_json(member))


async def update_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    role = _role(await json_body(request))
    await manage_of(request).members.set_role(access.actor, access.project, _member_id(request), role)
    return ok()


async def remove_member(request: web.Request) -> web.Response:
    access = await project_access(request, Permission.MEMBER_MANAGE)
    await manage_of(request).members.remove(access.actor, access.project, _member_id(request))
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/projects/{{project}}/members"
    app.router.add_get(base, list_members)
    app.router.add_post(base, add_member)
    app.router.add_get(base + "/{member}", get_member)
    app.router.add_put(base + "/{member}", update_member)
    app.router.add_delete(base + "/{member}", remove_member)
