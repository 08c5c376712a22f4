"""Creating robot accounts, shared by the management API and the CLI.

A project robot is named ``robot$<project>+<name>``; its secret is generated (or given,
then it must follow the password rule), shown once, and stored as a salted hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regd.auth import passwords
from regd.auth.accounts import robot_name
from regd.errors import ErrorCode, RegistryError
from regd.metadata import robots
from regd.metadata.db import Database, fetchone
from regd.metadata.projects import Project

ROBOT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


@dataclass(frozen=True)
class CreatedRobot:
    id: int
    name: str
    secret: str
    expires_at: int


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


async def create_robot(
    db: Database,
    project: Project,
    name: str,
    actions: frozenset[str],
    duration: int = -1,
    description: str = "",
    secret: str | None = None,
) -> CreatedRobot:
    """A new robot of ``project`` with ``actions`` (push implies pull); 409 if it exists."""
    check_robot_name(name)
    if duration != -1 and duration < 1:
        raise RegistryError(ErrorCode.BAD_REQUEST, "duration must be -1 (never expires) or a number of days")
    if "push" in actions:
        actions = actions | {"pull"}
    if not actions:
        raise RegistryError(ErrorCode.BAD_REQUEST, "a robot account needs at least the pull permission")
    secret = check_secret(secret) if secret else passwords.generate_secret()
    full = robot_name(project.name, name)
    async with db.transaction() as conn:
        if await fetchone(conn, "SELECT 1 FROM robots WHERE name = ?", (full,)) is not None:
            raise RegistryError(ErrorCode.CONFLICT, f"robot account {full} already exists")
        robot_id, expires_at = await robots.insert(
            conn, full, project.id, description, passwords.hash_secret(secret), actions, duration
        )
    return CreatedRobot(robot_id, full, secret, expires_at)
