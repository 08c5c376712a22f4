"""``/api/v2.0/robots``: create, list, get, update, refresh the secret (PATCH), delete.

Only project-level robots: ``{"name", "level": "project", "duration", "description",
"permissions": [{"kind": "project", "namespace": "<project>", "access":
[{"resource": "repository", "action": "pull"|"push"|"delete"}]}]}``. Other resources in
``access`` are accepted and ignored (regd enforces repository actions only). Project
admins manage their project's robots; maintainers may read them. The secret is in the
creation (and refresh) answer only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    actor,
    created,
    find_project,
    json_body,
    logged_in,
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
from regd.auth.roles import ROBOT_ACTIONS, Permission
from regd.errors import ErrorCode, RegistryError
from regd.metadata.robots import Robot


def robot_json(robot: Robot) -> dict[str, Any]:
    access = [{"resource": "repository", "action": a, "effect": "allow"} for a in sorted(robot.actions)]
    return {
        "id": robot.id,
        "name": robot.name,
        "description": robot.description,
        "level": "project",
        "duration": robot.duration,
        "editable": True,
        "disable": robot.disabled,
        "expires_at": robot.expires_at,
        "permissions": [{"kind": "project", "namespace": robot.project_name, "access": access}],
        "creation_time": timestamp(robot.created_at),
        "update_time": timestamp(robot.updated_at),
    }


def _permission(body: dict[str, Any]) -> tuple[str, frozenset[str]]:
    """The project and the repository actions of a robot request."""
    if body.get("level", "project") != "project":
        raise RegistryError(ErrorCode.BAD_REQUEST, "only project-level robot accounts are supported")
    permissions = body.get("permissions")
    if not isinstance(permissions, list) or len(permissions) != 1 or not isinstance(permissions[0], dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "a project robot needs exactly one permission entry")
    entry = permissions[0]
    namespace, access = entry.get("namespace"), entry.get("access")
    if (
        entry.get("kind", "project") != "project"
        or not isinstance(namespace, str)
        or not isinstance(access, list)
    ):
        raise RegistryError(ErrorCode.BAD_REQUEST, "permissions[0] needs kind project, namespace and access")
    actions: set[str] = set()
    for item in access:
        if (
            isinstance(item, dict)
            and item.get("resource") == "repository"
            and item.get("effect", "allow") == "allow"
        ):
            action = str(item.get("action"))
            actions |= ROBOT_ACTIONS if action == "*" else {action} & ROBOT_ACTIONS
    return namespace, frozenset(actions)


async def create(request: web.Request) -> web.Response:
    await logged_in(request)
    body = await json_body(request)
    namespace, actions = _permission(body)
    access = await project_access(request, Permission.ROBOT_MANAGE, namespace)
    duration = body.get("duration", -1)
    if not isinstance(duration, int) or isinstance(duration, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "duration must be a number of days or -1")
    secret = body.get("secret")
    robot = await manage_of(request).robots.create(
        access.actor,
        access.project,
        body.get("name"),
        actions,
        duration,
        text_field(body, "description"),
        secret if isinstance(secret, str) else None,
    )
    answer = {
        "id": robot.id,
        "name": robot.name,
        "secret": robot.secret,
        "creation_time": timestamp(robot.created_at),
        "expires_at": robot.expires_at,
    }
    return created(f"{PREFIX}/robots/{robot.id}", answer)


async def list_robots(request: web.Request) -> web.Response:
    caller = await logged_in(request)
    page = page_of(request)
    wanted = query_terms(request).get("ProjectID") or query_terms(request).get("project_id")
    project = await find_project(request, wanted) if wanted is not None else None
    listing = await manage_of(request).robots.listing(caller, page, project)
    return paged(request, [robot_json(r) for r in listing.items], listing.total, page)


async def _robot(request: web.Request, permission: Permission) -> Robot:
    caller = await logged_in(request)
    return await manage_of(request).robots.get(caller, request.match_info["robot_id"], permission)


async def get_robot(request: web.Request) -> web.Response:
    return json_response(robot_json(await _robot(request, Permission.ROBOT_READ)))


async def update_robot(request: web.Request) -> web.Response:
    robot = await _robot(request, Permission.ROBOT_MANAGE)
    body = await json_body(request)
    actions = robot.actions
    if "permissions" in body:
        namespace, actions = _permission(body)
        if namespace != robot.project_name:
            raise RegistryError(ErrorCode.BAD_REQUEST, "a robot cannot move to another project")
    disabled = body.get("disable", robot.disabled)
    if not isinstance(disabled, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "disable must be true or false")
    description = text_field(body, "description", robot.description)
    await manage_of(request).robots.update(await actor(request), robot, description, disabled, actions)
    return ok()


async def refresh_secret(request: web.Request) -> web.Response:
    caller = await actor(request)
    raw = request.match_info["robot_id"]
    robots = manage_of(request).robots
    if not robots.owns(caller, raw):
        await _robot(request, Permission.ROBOT_MANAGE)  # refused before the body is read
    given = (await json_body(request)).get("secret")
    secret = await robots.refresh_secret(caller, raw, given if isinstance(given, str) else None)
    return json_response({"secret": secret})


async def delete_robot(request: web.Request) -> web.Response:
    robot = await _robot(request, Permission.ROBOT_MANAGE)
    await manage_of(request).robots.delete(await actor(request), robot)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/robots"
    app.router.add_post(base, create)
    app.router.add_get(base, list_robots)
    app.router.add_get(base + "/{robot_id}", get_robot)
    app.router.add_put(base + "/{robot_id}", update_robot)
    app.router.add_patch(base + "/{robot_id}", refresh_secret)
    app.router.add_delete(base + "/{robot_id}", delete_robot)
