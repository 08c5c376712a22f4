"""``Actor``: who acts (an account) and the roles they hold, with the permission checks
every management service makes before it reads or writes.

An actor is built once per request (or per CLI command) by ``Management.actor``; its
roles are read in one query then, so each check afterwards is a pure function of the
actor and the project (``roles.may``). Refusals follow Harbor: ``UNAUTHORIZED`` for an
anonymous actor, ``FORBIDDEN`` for an authenticated one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from regd.auth.accounts import ANONYMOUS, Account, Kind
from regd.auth.roles import ROBOT_PERMISSIONS, Permission, Role, may
from regd.errors import ErrorCode, RegistryError
from regd.metadata.projects import Project


@dataclass(frozen=True)
class Actor:
    account: Account = ANONYMOUS
    roles: Mapping[int, Role] = field(default_factory=dict)  # project id -> role (users only)

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def is_admin(self) -> bool:
        return self.account.is_admin

    @property
    def authenticated(self) -> bool:
        return self.account.authenticated

    @property
    def is_user(self) -> bool:
        return self.account.kind is Kind.USER

    @property
    def is_robot(self) -> bool:
        return self.account.kind is Kind.ROBOT

    def role(self, project: Project) -> Role | None:
        return self.roles.get(project.id)

    def may(self, project: Project, permission: Permission) -> bool:
        own_robot = self.is_robot and self.account.robot_project_id == project.id
        return (
            self.is_admin
            or may(self.role(project), project.public, permission)
            or (own_robot and permission in ROBOT_PERMISSIONS)  # a robot reads its project
        )

    @property
    def administers_a_project(self) -> bool:
        return Role.PROJECT_ADMIN in self.roles.values()

    def refusal(self, message: str = "forbidden") -> RegistryError:
        if not self.authenticated:
            return RegistryError(ErrorCode.UNAUTHORIZED, "authentication required")
        return RegistryError(ErrorCode.FORBIDDEN, message)

    def require(self, project: Project, permission: Permission) -> None:
        if not self.may(project, permission):
            action = permission.value.replace(":", " ")
            raise self.refusal(f"not allowed to {action} in project {project.name}")

    def require_login(self) -> None:
        if not self.authenticated:
            raise RegistryError(ErrorCode.UNAUTHORIZED, "authentication required")

    def require_admin(self) -> None:
        self.require_login()
        if not self.is_admin:
            raise RegistryError(ErrorCode.FORBIDDEN, "only system administrators may do this")


@dataclass(frozen=True)
class ProjectAccess:
    """A project an actor was allowed into, with the role they hold in it."""

    project: Project
    actor: Actor

    @property
    def role(self) -> Role | None:
        return self.actor.role(self.project)

    def may(self, permission: Permission) -> bool:
        return self.actor.may(self.project, permission)
