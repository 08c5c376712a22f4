"""Project robot accounts: create, list, get, update, new secret, delete.

A project robot is named ``robot$<project>+<name>``; its secret is generated (or given,
then it must follow the password rule), shown once, and stored as a salted hash. Push
implies pull. Project admins manage their project's robots, maintainers read them; a
robot may refresh its own secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regd.auth import passwords
from regd.auth.accounts import robot_name
from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata import projects, robots
from regd.metadata.db import Database, fetchone
from regd.metadata.projects import Project
from regd.metadata.robots import Robot
from regd.numbers import parse_uint

ROBOT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


@dataclass(frozen=True)
class CreatedRobot:
    id: int
    name: str
    secret: str  # shown once: only its hash is stored
    expires_at: int
    created_at: float | None


def check_robot_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not ROBOT_NAME.match(name):
        raise RegistryError(
            ErrorCode.BAD_REQUEST, "robot name is not in lower case or contains illegal characters"
        )
    return name


def check_secret(secret: str) -> str:
    problem = passwords.password_problem(secret)
    if problem is not None:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"secret: {problem}")
    return secret


class RobotService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        actor: Actor,
        project: Project,
        name: object,
        actions: frozenset[str],
        duration: int = -1,
        description: str = "",
        secret: str | None = None,
    ) -> CreatedRobot:
        """A new robot of ``project`` with ``actions``; 409 if it exists."""
        actor.require(project, Permission.ROBOT_MANAGE)
        check_robot_name(name)
        assert isinstance(name, str)
        if duration != -1 and duration < 1:
            raise RegistryError(
                ErrorCode.BAD_REQUEST, "duration must be -1 (never expires) or a number of days"
            )
        if "push" in actions:
            actions = actions | {"pull"}
        if not actions:
            raise RegistryError(ErrorCode.BAD_REQUEST, "a robot account needs at least the pull permission")
        secret = check_secret(secret) if secret else passwords.generate_secret()
        full = robot_name(project.name, name)
        async with self.db.transaction() as conn:
            if await fetchone(conn, "SELECT 1 FROM robots WHERE name = ?", (full,)) is not None:
                raise RegistryError(ErrorCode.CONFLICT, f"robot account {full} already exists")
            robot_id, expires_at = await robots.insert(
                conn, full, project.id, description, passwords.hash_secret(secret), actions, duration
            )
        stored = await robots.by_id(self.db, robot_id)
        return CreatedRobot(robot_id, full, secret, expires_at, stored.created_at if stored else None)

    async def listing(self, actor: Actor, page: Page, project: Project | None = None) -> Listing[Robot]:
        """Robots of ``project`` (or of every project) that ``actor`` may read."""
        actor.require_login()
        project_ids = None if project is None else [project.id]
        if not actor.is_admin:
            if not actor.is_user:
                raise actor.refusal()
            readable = await self._readable_projects(actor)
            if project_ids is not None and not set(project_ids) <= set(readable):
                raise actor.refusal("not allowed to list the robots of this project")
            project_ids = readable if project_ids is None else project_ids
        total, rows = await robots.page(self.db, project_ids, page.offset, page.size)
        return Listing(total, rows)

    async def _readable_projects(self, actor: Actor) -> list[int]:
        _, mine = await projects.page(
            self.db, visible_to=actor.account.id, all_projects=False, offset=0, limit=1_000_000
        )
        return [p.id for p in mine if actor.role(p) in (Role.PROJECT_ADMIN, Role.MAINTAINER)]

    async def get(
        self, actor: Actor, robot_id: str | int, permission: Permission = Permission.ROBOT_READ
    ) -> Robot:
        """A robot, if ``actor`` holds ``permission`` on its project."""
        actor.require_login()
        raw = str(robot_id)
        number = parse_uint(raw)
        robot = await robots.by_id(self.db, number) if number is not None else None
        project = await projects.by_id(self.db, robot.project_id) if robot is not None else None
        if robot is None or project is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"robot {raw[:50]} not found")
        actor.require(project, permission)
        return robot

    async def _manageable(self, actor: Actor, robot: Robot) -> None:
        project = await projects.by_id(self.db, robot.project_id)
        if project is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"robot {robot.id} not found")
        actor.require(project, Permission.ROBOT_MANAGE)

    async def update(
        self, actor: Actor, robot: Robot, description: str, disabled: bool, actions: frozenset[str]
    ) -> None:
        await self._manageable(actor, robot)
        actions = actions | {"pull"} if "push" in actions else actions
        async with self.db.transaction() as conn:
            await robots.update(conn, robot.id, description, disabled, actions)

    @staticmethod
    def owns(actor: Actor, robot_id: str) -> bool:
        """Whether ``actor`` is robot ``robot_id`` itself."""
        return actor.is_robot and actor.account.id == parse_uint(robot_id)

    async def refresh_secret(self, actor: Actor, robot_id: str, secret: str | None) -> str:
        """A new secret (given or generated) for a robot: its project admins', or its own."""
        robot = (await robots.by_id(self.db, actor.account.id)) if self.owns(actor, robot_id) else None
        if robot is None:
            robot = await self.get(actor, robot_id, Permission.ROBOT_MANAGE)
        secret = check_secret(secret) if secret else passwords.generate_secret()
        async with self.db.transaction() as conn:
            await robots.set_secret(conn, robot.id, passwords.hash_secret(secret))
        return secret

    async def delete(self, actor: Actor, robot: Robot) -> None:
        await self._manageable(actor, robot)
        async with self.db.transaction() as conn:
            await robots.delete(conn, robot.id)
