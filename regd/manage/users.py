"""Users: create, list, search, profile, password, administrator flag, delete.

Self-registration is off (as Harbor's default): system administrators create users.
Names follow Harbor's ``validateUserName``; passwords its rule (8-128 characters, upper,
lower, digit). Users change their own password with the old one; an administrator sets
anyone else's without it (``reset_password`` sets anyone's, the CLI's ``user passwd``).
A new password ends the user's browser sessions.
"""

from __future__ import annotations

import re

from regd.auth import passwords
from regd.auth.accounts import ROBOT_PREFIX, Accounts
from regd.auth.sessions import Sessions
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata import users
from regd.metadata.db import Database
from regd.metadata.users import User
from regd.numbers import parse_uint

# Harbor refuses these characters in user names (``validateUserName``).
_ILLEGAL = re.compile(r'[,"~#$%\s:/\\]')


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


class UserService:
    def __init__(self, db: Database, accounts: Accounts, sessions: Sessions) -> None:
        self.db = db
        self.accounts = accounts
        self.sessions = sessions

    async def create(
        self,
        actor: Actor,
        username: str,
        password: str,
        *,
        sysadmin: bool = False,
        email: str = "",
        realname: str = "",
        comment: str = "",
    ) -> int:
        actor.require_admin()
        check_username(username)
        check_password(password)
        hashed = await self.accounts.hash_password(password)
        async with self.db.transaction() as conn:
            if await users.exists(conn, username):
                raise RegistryError(ErrorCode.CONFLICT, f"username {username} is already used")
            return await users.insert(
                conn, username, hashed, sysadmin=sysadmin, email=email, realname=realname, comment=comment
            )

    async def listing(self, actor: Actor, page: Page, name: str = "") -> Listing[User]:
        actor.require_admin()
        total, rows = await users.page(self.db, name, page.offset, page.size)
        return Listing(total, rows)

    async def search(self, actor: Actor, page: Page, name: str = "") -> Listing[User]:
        """User names, for adding members: system administrators and project admins only
        (Harbor lists them to any signed-in account, robots included)."""
        actor.require_login()
        if not actor.is_admin and not actor.administers_a_project:
            raise RegistryError(
                ErrorCode.FORBIDDEN, "only administrators and project admins may search users"
            )
        total, rows = await users.page(self.db, name, page.offset, page.size)
        return Listing(total, rows)

    async def current(self, actor: Actor) -> User:
        actor.require_login()
        user = await users.by_id(self.db, actor.account.id) if actor.is_user else None
        if user is None:
            raise RegistryError(ErrorCode.FORBIDDEN, "only users have a profile")
        return user

    async def get(self, actor: Actor, user_id: str | int, self_allowed: bool = True) -> User:
        """A user, if ``actor`` is an administrator or (when allowed) that user."""
        actor.require_login()
        raw = str(user_id)
        number = parse_uint(raw)
        user = await users.by_id(self.db, number) if number is not None else None
        self._require_self_or_admin(actor, user, self_allowed)
        if user is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"user {raw[:50]} not found")
        return user

    async def named(self, actor: Actor, username: str) -> User:
        actor.require_admin()
        user = await users.by_name(self.db, username)
        if user is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"user {username} not found")
        return user

    @staticmethod
    def _require_self_or_admin(actor: Actor, user: User | None, self_allowed: bool = True) -> None:
        is_self = user is not None and actor.is_user and actor.account.id == user.id
        if not actor.is_admin and not (self_allowed and is_self):
            raise RegistryError(ErrorCode.FORBIDDEN, "only system administrators may do this")

    async def set_profile(self, actor: Actor, user: User, email: str, realname: str, comment: str) -> None:
        self._require_self_or_admin(actor, user)
        async with self.db.transaction() as conn:
            await users.set_profile(conn, user.id, email, realname, comment)

    async def change_password(self, actor: Actor, user: User, new: str, old: str | None) -> None:
        """Users give their old password; administrators changing another's do not."""
        self._require_self_or_admin(actor, user)
        check_password(new)
        if not actor.is_admin or actor.account.id == user.id:
            if old is None or not await self.accounts.verify_password(old, user.password_hash):
                raise RegistryError(ErrorCode.FORBIDDEN, "the old password is not correct")
            if old == new:
                raise RegistryError(ErrorCode.BAD_REQUEST, "the new password must differ from the old one")
        await self._store_password(user, new)

    async def reset_password(self, actor: Actor, user: User, new: str) -> None:
        """An administrator sets any password, their own too, without the old one."""
        actor.require_admin()
        check_password(new)
        await self._store_password(user, new)

    async def _store_password(self, user: User, new: str) -> None:
        hashed = await self.accounts.hash_password(new)
        async with self.db.transaction() as conn:
            await users.set_password(conn, user.id, hashed)
        await self.sessions.end_all_of(user.id)  # signed in with the old password

    async def set_sysadmin(self, actor: Actor, user: User, flag: bool) -> None:
        actor.require_admin()
        if user.id == actor.account.id and not flag:
            raise RegistryError(ErrorCode.FORBIDDEN, "you cannot take away your own administrator role")
        async with self.db.transaction() as conn:
            await users.set_sysadmin(conn, user.id, flag)

    async def delete(self, actor: Actor, user: User) -> None:
        actor.require_admin()
        if user.id == actor.account.id:
            raise RegistryError(ErrorCode.FORBIDDEN, "you cannot delete yourself")
        async with self.db.transaction() as conn:
            await users.delete(conn, user.id)
