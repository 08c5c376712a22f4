"""Project members: list, add, get, change role, remove.

Roles are Harbor's (1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited
guest). Project admins (and system administrators) manage members; members other than
limited guests read them.
"""

from __future__ import annotations

from regd.auth.roles import Permission, Role
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata import projects, users
from regd.metadata.db import Database
from regd.metadata.projects import Member, Project


class MemberService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def listing(self, actor: Actor, project: Project, page: Page, name: str = "") -> Listing[Member]:
        actor.require(project, Permission.MEMBER_READ)
        total, rows = await projects.members(self.db, project.id, name, page.offset, page.size)
        return Listing(total, rows)

    async def add(
        self,
        actor: Actor,
        project: Project,
        role: Role,
        *,
        username: str | None = None,
        user_id: int | None = None,
    ) -> int:
        """Make a user (by name or id) a member with ``role``; the membership's id."""
        actor.require(project, Permission.MEMBER_MANAGE)
        if username is not None:
            user = await users.by_name(self.db, username)
        elif user_id is not None:
            user = await users.by_id(self.db, user_id)
        else:
            raise RegistryError(ErrorCode.BAD_REQUEST, "member_user with a username or user_id is required")
        if user is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"user {username or user_id} not found")
        async with self.db.transaction() as conn:
            member_id = await projects.add_member(conn, project.id, user.id, int(role))
        if member_id is None:
            raise RegistryError(ErrorCode.CONFLICT, f"{user.username} is already a member of {project.name}")
        return member_id

    async def get(self, actor: Actor, project: Project, member_id: int) -> Member:
        actor.require(project, Permission.MEMBER_READ)
        member = await projects.member(self.db, project.id, member_id)
        if member is None:
            raise RegistryError(ErrorCode.NOT_FOUND, "member not found")
        return member

    async def set_role(self, actor: Actor, project: Project, member_id: int, role: Role) -> None:
        actor.require(project, Permission.MEMBER_MANAGE)
        async with self.db.transaction() as conn:
            found = await projects.set_role(conn, project.id, member_id, int(role))
        if not found:
            raise RegistryError(ErrorCode.NOT_FOUND, "member not found")

    async def remove(self, actor: Actor, project: Project, member_id: int) -> None:
        actor.require(project, Permission.MEMBER_MANAGE)
        async with self.db.transaction() as conn:
            found = await projects.remove_member(conn, project.id, member_id)
        if not found:
            raise RegistryError(ErrorCode.NOT_FOUND, "member not found")
