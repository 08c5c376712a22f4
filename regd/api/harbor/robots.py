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
    ProjectAccess,
    caller,
    check_access,
    created,
    find_project,
    id_param,
    json_body,
    logged_in,
    ok,
    page_of,
    paged,
    project_access,
    query_terms,
    refuse,
    services_of,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.auth import passwords
from regd.auth.accounts import Kind
from regd.auth.robots import check_secret, create_robot
from regd.auth.roles import ROBOT_ACTIONS, Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.metadata import projects, robots
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


async def _robot(request: web.Request, permission: Permission) -> tuple[Robot, ProjectAccess]:
    await logged_in(request)
    db = services_of(request).db
    raw = request.match_info["robot_id"]
    robot_id = id_param(request, "robot_id")
    robot = await robots.by_id(db, robot_id) if robot_id is not None else None
    project = await projects.by_id(db, robot.project_id) if robot is not None else None
    if robot is None or project is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"robot {raw[:50]} not found")
    return robot, await check_access(request, project, permission)


async def create(request: web.Request) -> web.Response:
    await logged_in(request)
    body = await json_body(request)
    namespace, actions = _permission(body)
    access = await project_access(request, Permission.ROBOT_MANAGE, namespace)
    duration = body.get("duration", -1)
    if not isinstance(duration, int) or isinstance(duration, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "duration must be a number of days or -1")
    secret = body.get("secret")
    robot = await create_robot(
        services_of(request).db,
        access.project,
        body.get("name"),  # type: ignore[arg-type]  # checked by create_robot
        actions,
        duration,
        text_field(body, "description"),
        secret if isinstance(secret, str) else None,
    )
    stored = await robots.by_id(services_of(request).db, robot.id)
    answer = {
        "id": robot.id,
        "name": robot.name,
        "secret": robot.secret,
        "creation_time": timestamp(stored.created_at if stored else None),
        "expires_at": robot.expires_at,
    }
    return created(f"{PREFIX}/robots/{robot.id}", answer)


async def list_robots(request: web.Request) -> web.Response:
    account = await logged_in(request)
    db = services_of(request).db
    page = page_of(request)
    wanted = query_terms(request).get("ProjectID") or query_terms(request).get("project_id")
    project_ids: list[int] | None = None
    if wanted is not None:
        project = await find_project(request, wanted)
        project_ids = [project.id]
    if not account.is_admin:
        if account.kind is not Kind.USER:
            raise refuse(account)
        _, mine = await projects.page(
            db, visible_to=account.id, all_projects=False, offset=0, limit=1_000_000
        )
        readable = []
        for project in mine:
            role = await services_of(request).accounts.role(account, project)
            if role in (Role.PROJECT_ADMIN, Role.MAINTAINER):
                readable.append(project.id)
        if project_ids is not None and not set(project_ids) <= set(readable):
            raise refuse(account, "not allowed to list the robots of this project")
        project_ids = readable if project_ids is None else project_ids
    total, rows = await robots.page(db, project_ids, page.offset, page.size)
    return paged(request, [robot_json(r) for r in rows], total, page)


async def get_robot(request: web.Request) -> web.Response:
    robot, _ = await _robot(request, Permission.ROBOT_READ)
    return json_response(robot_json(robot))


async def update_robot(request: web.Request) -> web.Response:
    robot, _ = await _robot(request, Permission.ROBOT_MANAGE)
    body = await json_body(request)
    actions = robot.actions
    if "permissions" in body:
        namespace, actions = _permission(body)
        if namespace != robot.project_name:
            raise RegistryError(ErrorCode.BAD_REQUEST, "a robot cannot move to another project")
        actions = actions | {"pull"} if "push" in actions else actions
    disabled = body.get("disable", robot.disabled)
    if not isinstance(disabled, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "disable must be true or false")
    async with services_of(request).db.transaction() as conn:
        await robots.update(
            conn, robot.id, text_field(body, "description", robot.description), disabled, actions
        )
    return ok()


async def refresh_secret(request: web.Request) -> web.Response:
    account = await caller(request)
    own = account.kind is Kind.ROBOT and account.id == id_param(request, "robot_id")
    robot = (await robots.by_id(services_of(request).db, account.id)) if own else None
    if robot is None:
        robot, _ = await _robot(request, Permission.ROBOT_MANAGE)
    secret = (await json_body(request)).get("secret")
    secret = check_secret(secret) if isinstance(secret, str) and secret else passwords.generate_secret()
    async with services_of(request).db.transaction() as conn:
        await robots.set_secret(conn, robot.id, passwords.hash_secret(secret))
    return json_response({"secret": secret})


async def delete_robot(request: web.Request) -> web.Response:
    robot, _ = await _robot(request, Permission.ROBOT_MANAGE)
    async with services_of(request).db.transaction() as conn:
        await robots.delete(conn, robot.id)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/robots"
    app.router.add_post(base, create)
    app.router.add_get(base, list_robots)
    app.router.add_get(base + "/{robot_id}", get_robot)
    app.router.add_put(base + "/{robot_id}", update_robot)
    app.router.add_patch(base + "/{robot_id}", refresh_secret)
    app.router.add_delete(base + "/{robot_id}", delete_robot)
