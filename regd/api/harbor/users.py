"""``/api/v2.0/users``: create, list, search, get, current user, profile, password,
sysadmin flag, delete.

Self-registration is off (as Harbor's default): system administrators create users.
Passwords follow Harbor's rule (8-128 characters, upper, lower, digit). A user changes
their own password with the old one; an administrator sets anyone's without it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    created,
    id_param,
    json_body,
    logged_in,
    ok,
    page_of,
    paged,
    services_of,
    sysadmin,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.auth import passwords
from regd.auth.accounts import ROBOT_PREFIX, Account, Kind
from regd.errors import ErrorCode, RegistryError
from regd.metadata import projects, users
from regd.metadata.users import User

# Harbor refuses these characters in user names (``validateUserName``).
_ILLEGAL = re.compile(r'[,"~#$%\s:/\\]')


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


def check_username(name: object) -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 255
        or _ILLEGAL.search(name)
        or name.startswith(ROBOT_PREFIX)
    ):
        raise RegistryError(
            ErrorCode.BAD_REQUEST, 'username must be 1-255 characters without ,"~#$%:/\\ or spaces'
        )
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "password is required")
    problem = passwords.password_problem(password)
    if problem is not None:
        raise RegistryError(ErrorCode.BAD_REQUEST, problem)
    return password


async def _target(request: web.Request, account: Account, self_allowed: bool = True) -> User:
    """The user of ``{user_id}``, if the caller is an administrator or (when allowed) that user."""
    raw = request.match_info["user_id"]
    user_id = id_param(request, "user_id")
    user = await users.by_id(services_of(request).db, user_id) if user_id is not None else None
    is_self = user is not None and account.kind is Kind.USER and account.id == user.id
    if not account.is_admin and not (self_allowed and is_self):
        raise RegistryError(ErrorCode.FORBIDDEN, "only system administrators may do this")
    if user is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"user {raw[:50]} not found")
    return user


async def create_user(request: web.Request) -> web.Response:
    await sysadmin(request)
    body = await json_body(request)
    username = check_username(body.get("username"))
    password = check_password(body.get("password"))
    email, realname, comment = (text_field(body, k, limit=255) for k in ("email", "realname", "comment"))
    accounts = services_of(request).accounts
    hashed = await accounts.hash_password(password)
    async with services_of(request).db.transaction() as conn:
        if await users.exists(conn, username):
            raise RegistryError(ErrorCode.CONFLICT, f"username {username} is already used")
        user_id = await users.insert(conn, username, hashed, email=email, realname=realname, comment=comment)
    return created(f"{PREFIX}/users/{user_id}")


async def list_users(request: web.Request) -> web.Response:
    await sysadmin(request)
    page = page_of(request)
    total, rows = await users.page(
        services_of(request).db, request.query.get("username", ""), page.offset, page.size
    )
    return paged(request, [user_json(u) for u in rows], total, page)


async def search_users(request: web.Request) -> web.Response:
    """User names for the member dialog: system administrators and project admins only
    (Harbor lists them to any logged-in account; robots and plain members do not need them)."""
    account = await logged_in(request)
    if not account.is_admin and not (
        account.kind is Kind.USER and await projects.administers_any(services_of(request).db, account.id)
    ):
        raise RegistryError(ErrorCode.FORBIDDEN, "only administrators and project admins may search users")
    page = page_of(request)
    total, rows = await users.page(
        services_of(request).db, request.query.get("username", ""), page.offset, page.size
    )
    return paged(request, [{"user_id": u.id, "username": u.username} for u in rows], total, page)


async def current_user(request: web.Request) -> web.Response:
    account = await logged_in(request)
    user = await users.by_id(services_of(request).db, account.id) if account.kind is Kind.USER else None
    if user is None:
        raise RegistryError(ErrorCode.FORBIDDEN, "only users have a profile")
    return json_response(user_json(user))


async def get_user(request: web.Request) -> web.Response:
    user = await _target(request, await logged_in(request))
    return json_response(user_json(user))


async def update_user(request: web.Request) -> web.Response:
    user = await _target(request, await logged_in(request))
    body = await json_body(request)
    async with services_of(request).db.transaction() as conn:
        await users.set_profile(
            conn,
            user.id,
            text_field(body, "email", user.email, 255),
            text_field(body, "realname", user.realname, 255),
            text_field(body, "comment", user.comment, 255),
        )
    return ok()


async def change_password(request: web.Request) -> web.Response:
    account = await logged_in(request)
    user = await _target(request, account)
    body = await json_body(request)
    new = check_password(body.get("new_password"))
    accounts = services_of(request).accounts
    if not account.is_admin or account.id == user.id:
        old = body.get("old_password")
        if not isinstance(old, str) or not await accounts.verify_password(old, user.password_hash):
            raise RegistryError(ErrorCode.FORBIDDEN, "the old password is not correct")
        if old == new:
            raise RegistryError(ErrorCode.BAD_REQUEST, "the new password must differ from the old one")
    hashed = await accounts.hash_password(new)
    async with services_of(request).db.transaction() as conn:
        await users.set_password(conn, user.id, hashed)
    return ok()


async def set_sysadmin(request: web.Request) -> web.Response:
    account = await sysadmin(request)
    user = await _target(request, account)
    flag = (await json_body(request)).get("sysadmin_flag")
    if not isinstance(flag, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "sysadmin_flag must be true or false")
    if user.id == account.id and not flag:
        raise RegistryError(ErrorCode.FORBIDDEN, "you cannot take away your own administrator role")
    async with services_of(request).db.transaction() as conn:
        await users.set_sysadmin(conn, user.id, flag)
    return ok()


async def delete_user(request: web.Request) -> web.Response:
    account = await sysadmin(request)
    user = await _target(request, account)
    if user.id == account.id:
        raise RegistryError(ErrorCode.FORBIDDEN, "you cannot delete yourself")
    async with services_of(request).db.transaction() as conn:
        await users.delete(conn, user.id)
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
