"""``/api/v2.0/users``: create, list, search, get, current user, profile, password,
sysadmin flag, delete.

Self-registration is off (as Harbor's default): system administrators create users.
Passwords follow Harbor's rule (8-128 characters, upper, lower, digit). A user changes
their own password with the old one; an administrator sets anyone's without it.
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
    sysadmin,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError
from regd.manage.users import check_password, check_username
from regd.metadata.users import User


def user_json(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "realname": user.realname,
        "comment": user.comment,
        "sysadmin_flag": user.sysadmin,
        "admin_role_in_auth": False,
        "oidc_user_meta": None,
        "creation_time": timestamp(user.created_at),
        "update_time": timestamp(user.updated_at),
    }


async def _target(request: web.Request, self_allowed: bool = True) -> User:
    """The user of ``{user_id}``, if the caller is an administrator or (when allowed) that user."""
    caller = await logged_in(request)
    return await manage_of(request).users.get(caller, request.match_info["user_id"], self_allowed)


async def create_user(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    body = await json_body(request)
    username = check_username(body.get("username"))
    password = check_password(body.get("password"))
    email, realname, comment = (text_field(body, k, limit=255) for k in ("email", "realname", "comment"))
    user_id = await manage_of(request).users.create(
        caller, username, password, email=email, realname=realname, comment=comment
    )
    return created(f"{PREFIX}/users/{user_id}")


async def list_users(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    page = page_of(request)
    listing = await manage_of(request).users.listing(caller, page, request.query.get("username", ""))
    return paged(request, [user_json(u) for u in listing.items], listing.total, page)


async def search_users(request: web.Request) -> web.Response:
    caller = await logged_in(request)
    page = page_of(request)
    listing = await manage_of(request).users.search(caller, page, request.query.get("username", ""))
    items = [{"user_id": u.id, "username": u.username} for u in listing.items]
    return paged(request, items, listing.total, page)


async def current_user(request: web.Request) -> web.Response:
    return json_response(user_json(await manage_of(request).users.current(await actor(request))))


async def get_user(request: web.Request) -> web.Response:
    return json_response(user_json(await _target(request)))


async def update_user(request: web.Request) -> web.Response:
    user = await _target(request)
    body = await json_body(request)
    await manage_of(request).users.set_profile(
        await actor(request),
        user,
        text_field(body, "email", user.email, 255),
        text_field(body, "realname", user.realname, 255),
        text_field(body, "comment", user.comment, 255),
    )
    return ok()


async def change_password(request: web.Request) -> web.Response:
    user = await _target(request)
    body = await json_body(request)
    new = check_password(body.get("new_password"))
    old = body.get("old_password")
    await manage_of(request).users.change_password(
        await actor(request), user, new, old if isinstance(old, str) else None
    )
    return ok()


async def set_sysadmin(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    user = await _target(request)
    flag = (await json_body(request)).get("sysadmin_flag")
    if not isinstance(flag, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "sysadmin_flag must be true or false")
    await manage_of(request).users.set_sysadmin(caller, user, flag)
    return ok()


async def delete_user(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    user = await _target(request)
    await manage_of(request).users.delete(caller, user)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/users"
    app.router.add_post(base, create_user)
    app.router.add_get(base, list_users)
    app.router.add_get(base + "/search", search_users)
    app.router.add_get(base + "/current", current_user)
    app.router.add_get(base + "/{user_id}", get_user)
    app.router.add_put(base + "/{user_id}", update_user)
    app.router.add_delete(base + "/{user_id}", delete_user)
    app.router.add_put(base + "/{user_id}/password", change_password)
    app.router.add_put(base + "/{user_id}/sysadmin", set_sysadmin)
