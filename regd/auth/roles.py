"""Harbor's project roles and what each may do: one table, pure functions.

Registry actions come from Harbor's ``rbac_role.go`` (``repository:pull``, ``push``,
``delete``); management-API permissions from the same table, reduced to the resources
regd has. A public project grants ``pull`` and read access to everyone, anonymous
callers included (``publicProjectPolicies``). System administrators may do everything.
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """Harbor's role ids, as the API sends them (``role_id``)."""

    PROJECT_ADMIN = 1
    DEVELOPER = 2
    GUEST = 3
    MAINTAINER = 4
    LIMITED_GUEST = 5

    @property
    def harbor_name(self) -> str:
        return _NAMES[self]

    @classmethod
    def parse(cls, value: object) -> Role | None:
        if isinstance(value, int) and not isinstance(value, bool) and value in cls._value2member_map_:
            return cls(value)
        if isinstance(value, str):
            for role, name in _NAMES.items():
                if value in (name, role.name.lower()):
                    return role
        return None


_NAMES = {
    Role.PROJECT_ADMIN: "projectAdmin",
    Role.DEVELOPER: "developer",
    Role.GUEST: "guest",
    Role.MAINTAINER: "maintainer",
    Role.LIMITED_GUEST: "limitedGuest",
}


class Permission(enum.Enum):
    PROJECT_READ = "project:read"
    PROJECT_UPDATE = "project:update"
    PROJECT_DELETE = "project:delete"
    MEMBER_READ = "member:read"
    MEMBER_MANAGE = "member:manage"
    REPOSITORY_READ = "repository:read"
    REPOSITORY_UPDATE = "repository:update"
    REPOSITORY_DELETE = "repository:delete"
    ARTIFACT_DELETE = "artifact:delete"
    TAG_CREATE = "tag:create"
    TAG_DELETE = "tag:delete"
    ROBOT_READ = "robot:read"
    ROBOT_MANAGE = "robot:manage"


_ALL = frozenset(Role)
_WRITERS = frozenset({Role.PROJECT_ADMIN, Role.MAINTAINER, Role.DEVELOPER})
_KEEPERS = frozenset({Role.PROJECT_ADMIN, Role.MAINTAINER})
_ADMIN = frozenset({Role.PROJECT_ADMIN})

# Registry actions on the repositories of a project, per role.
REGISTRY_ACTIONS: dict[Role, frozenset[str]] = {
    Role.PROJECT_ADMIN: frozenset({"pull", "push", "delete", "*"}),
    Role.MAINTAINER: frozenset({"pull", "push", "delete"}),
    Role.DEVELOPER: frozenset({"pull", "push"}),
    Role.GUEST: frozenset({"pull"}),
    Role.LIMITED_GUEST: frozenset({"pull"}),
}
ADMIN_ACTIONS = REGISTRY_ACTIONS[Role.PROJECT_ADMIN]
PUBLIC_ACTIONS = frozenset({"pull"})
# What a robot account may be created with (Harbor's repository actions we enforce).
ROBOT_ACTIONS = frozenset({"pull", "push", "delete"})

# Management-API permissions, per role.
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.PROJECT_READ: _ALL,
    Permission.PROJECT_UPDATE: _ADMIN,
    Permission.PROJECT_DELETE: _ADMIN,
    Permission.MEMBER_READ: _ALL - {Role.LIMITED_GUEST},
    Permission.MEMBER_MANAGE: _ADMIN,
    Permission.REPOSITORY_READ: _ALL,
    Permission.REPOSITORY_UPDATE: _WRITERS,
    Permission.REPOSITORY_DELETE: _KEEPERS,
    Permission.ARTIFACT_DELETE: _KEEPERS,
    Permission.TAG_CREATE: _WRITERS,
    Permission.TAG_DELETE: _KEEPERS,
    Permission.ROBOT_READ: _KEEPERS,
    Permission.ROBOT_MANAGE: _ADMIN,
}
PUBLIC_PERMISSIONS = frozenset({Permission.PROJECT_READ, Permission.REPOSITORY_READ})
# What a robot account may read of its own project through the management API.
ROBOT_PERMISSIONS = PUBLIC_PERMISSIONS


def registry_actions(role: Role | None, public: bool) -> frozenset[str]:
    """Registry actions a project member (``role``, None for a non-member) holds."""
    granted = REGISTRY_ACTIONS[role] if role is not None else frozenset()
    return granted | PUBLIC_ACTIONS if public else granted


def may(role: Role | None, public: bool, permission: Permission) -> bool:
    if role is not None and role in PERMISSIONS[permission]:
        return True
    return public and permission in PUBLIC_PERMISSIONS
