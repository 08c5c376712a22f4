"""Accounts: who a caller is (users, robot accounts, anonymous) and what they may do.

- ``authenticate`` checks a username and password or robot secret, behind the login
  throttle; a wrong password and an unknown user take the same time and get the same
  answer. scrypt runs in the executor. A successful check is remembered for a minute
  (keyed by an HMAC of the credentials under a per-process key, and bound to the stored
  hash, so a password change ends it at once), so that clients that send Basic
  credentials with every request do not pay scrypt each time.
- ``actions`` answers which registry actions an account holds on a repository: the
  project is the first component of the name; see ``roles`` for the table.
- ``bootstrap`` creates the system administrator and the public project ``library`` on
  first start.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regd.auth import Access, Principal
from regd.auth import passwords as pw
from regd.auth.roles import ADMIN_ACTIONS, PUBLIC_ACTIONS, Role, registry_actions
from regd.auth.throttle import LoginThrottle
from regd.auth.tokens import TokenIssuer, load_or_create_key
from regd.config import Config, ConfigError
from regd.errors import ErrorCode, RegistryError
from regd.metadata import projects, robots, users
from regd.metadata.db import Database
from regd.metadata.generation import LookupCache
from regd.metadata.projects import Project
from regd.names import is_valid_name, project_of
from regd.storage.layout import Layout

log = logging.getLogger("regd.auth")

ADMIN = "admin"
ROBOT_PREFIX = "robot$"
CACHE_TTL = 60.0
CACHE_MAX = 10_000


class Kind(enum.Enum):
    ANONYMOUS = "anonymous"
    USER = "user"
    ROBOT = "robot"


@dataclass(frozen=True)
class Account:
    name: str
    kind: Kind
    id: int = 0
    is_admin: bool = False
    robot_project_id: int | None = None
    robot_actions: frozenset[str] = field(default_factory=frozenset)

    @property
    def authenticated(self) -> bool:
        return self.kind is not Kind.ANONYMOUS

    def principal(self, granted: dict[str, frozenset[str]] | None = None) -> Principal:
        return Principal(self.name, self.is_admin, granted or {})


ANONYMOUS = Account("", Kind.ANONYMOUS)
# The caller of every request when ``[auth] enabled = false``.
NO_AUTH_ADMIN = Account(ADMIN, Kind.USER, id=0, is_admin=True)


def robot_name(project: str, name: str) -> str:
    return f"{ROBOT_PREFIX}{project}+{name}"


def _user_account(user: users.User) -> Account:
    return Account(user.username, Kind.USER, user.id, user.sysadmin)


def _robot_account(robot: robots.Robot) -> Account:
    return Account(robot.name, Kind.ROBOT, robot.id, False, robot.project_id, robot.actions)


class Accounts:
    def __init__(self, db: Database, layout: Layout, config: Config) -> None:
        self.db = db
        self._lookups = LookupCache(db.generation)
        self.layout = layout
        self.config = config
        self.throttle = LoginThrottle(config.auth.max_failed_logins, config.auth.lockout_seconds)
        self._issuer: TokenIssuer | None = None
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, str]] = {}  # HMAC -> (expiry, hash checked)

    @property
    def issuer(self) -> TokenIssuer:
        if self._issuer is None:
            raise RuntimeError("accounts are not started")
        return self._issuer

    async def start(self, environ: Mapping[str, str] | None = None) -> None:
        """Load (or create) the token key; create admin and ``library`` on first start."""
        loop = asyncio.get_running_loop()
        # RSA key generation and file I/O: off the loop.
        key = await loop.run_in_executor(None, load_or_create_key, self.layout.token_key)
        auth = self.config.auth
        self._issuer = TokenIssuer(key, auth.issuer, auth.service, auth.token_expiration * 60)
        await self.bootstrap(os.environ if environ is None else environ)

    async def bootstrap(self, environ: Mapping[str, str]) -> None:
        if await users.count(self.db) > 0:
            return
        password = environ.get("REGD_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = pw.generate_secret(20)
        elif (problem := pw.password_problem(password)) is not None:
            raise ConfigError(f"REGD_ADMIN_PASSWORD: {problem}")
        hashed = await self.hash_password(password)
        async with self.db.transaction() as conn:
            if await users.count_in(conn) > 0:
                return  # another worker or command got here first
            admin_id = await users.insert(conn, ADMIN, hashed, sysadmin=True, realname="system admin")
            if not await projects.exists(conn, "library"):
                await projects.insert(conn, "library", admin_id, True, {"public": "true"})
        if generated:
            path = self.layout.admin_password
            await asyncio.get_running_loop().run_in_executor(None, _write_secret_file, path, password)
            log.warning(
                "created user admin; its generated password is in %s (readable by this user only)", path
            )
        else:
            log.info("created user admin with the password from REGD_ADMIN_PASSWORD")

    # -- passwords ---------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, pw.hash_password, password)

    async def verify_password(self, password: str, hashed: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, pw.verify_password, password, hashed)

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """The account these credentials belong to; UNAUTHORIZED (the same answer whether
        or not the account exists) or TOOMANYREQUESTS while locked out."""
        now = time.time()
        keys = [f"account:{username}", f"address:{address}"]
        wait = self.throttle.wait(keys, now)
        if wait > 0:
            raise RegistryError(
                ErrorCode.TOOMANYREQUESTS,
                f"too many failed logins; try again in {math.ceil(wait)} seconds",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        account = await self._check(username, password, now)
        if account is None:
            self.throttle.failed(keys, now)
            log.info("failed login from %s", address)
            raise RegistryError(ErrorCode.UNAUTHORIZED, "invalid username or password")
        self.throttle.succeeded(keys)
        return account

    async def _check(self, username: str, password: str, now: float) -> Account | None:
        if username.startswith(ROBOT_PREFIX):
            robot = await robots.by_name(self.db, username)
            if robot is None:
                pw.verify_secret(password, "sha256$AAAA$AAAA")
                return None
            ok = pw.verify_secret(password, robot.secret_hash)
            return _robot_account(robot) if ok and not robot.disabled and not robot.expired(now) else None
        user = await users.by_name(self.db, username)
        if user is None:
            await asyncio.get_running_loop().run_in_executor(None, pw.burn_time, password)
            return None
        mark = hmac.new(self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._cache.get(mark)
        if cached is not None and cached[0] > now and hmac.compare_digest(cached[1], user.password_hash):
            return _user_account(user)
        if not await self.verify_password(password, user.password_hash):
            return None
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[mark] = (now + CACHE_TTL, user.password_hash)
        return _user_account(user)

    async def account_named(self, name: str) -> Account:
        """The account a token was issued to, as it stands now (anonymous if gone)."""
        now = time.time()
        if name.startswith(ROBOT_PREFIX):
            robot = await robots.by_name(self.db, name)
            usable = robot is not None and not robot.disabled and not robot.expired(now)
            return _robot_account(robot) if robot is not None and usable else ANONYMOUS
        if not name:
            return ANONYMOUS
        key = ("user", name)
        cached: Account | None = self._lookups.get(key)
        if cached is not None:
            return cached
        stamp = self._lookups.stamp()
        user = await users.by_name(self.db, name)
        account = ANONYMOUS if user is None else _user_account(user)
        self._lookups.put(key, account, stamp)  # any commit (password, admin flag...) empties it
        return account

    # -- permissions -------------------------------------------------------------

    async def role(self, account: Account, project: Project) -> Role | None:
        if account.kind is not Kind.USER or not account.id:
            return None
        value = await projects.role_of(self.db, project.id, account.id)
        return None if value is None or value not in Role._value2member_map_ else Role(value)

    async def actions(self, account: Account, repository: str) -> frozenset[str] | None:
        """Registry actions ``account`` holds on ``repository``; None if its project is missing."""
        project = await projects.by_name(self.db, project_of(repository))
        if project is None:
            return None
        if account.is_admin:
            return ADMIN_ACTIONS
        if account.kind is Kind.ROBOT:
            own = account.robot_actions if account.robot_project_id == project.id else frozenset()
            return own | PUBLIC_ACTIONS if project.public else own
        return registry_actions(await self.role(account, project), project.public)

    async def grant(self, account: Account, requested: list[Access]) -> list[Access]:
        """What a token for ``account`` carries: each requested resource with the requested
        actions the account holds (none for a project that does not exist)."""
        granted: list[Access] = []
        for need in requested:
            allowed: frozenset[str] = frozenset()
            if need.type == "repository" and is_valid_name(need.name):
                allowed = await self.actions(account, need.name) or frozenset()
            elif need.type == "registry" and need.name == "catalog" and account.is_admin:
                allowed = frozenset({"*"})
            granted.append(Access(need.type, need.name, tuple(a for a in need.actions if a in allowed)))
        return granted


def _write_secret_file(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
