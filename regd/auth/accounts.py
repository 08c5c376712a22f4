"""Accounts: who a caller is (users, robot accounts, anonymous) and what they may do.

- ``authenticate`` checks a username and password or robot secret. User logins go
  through the login throttle (``throttle.py``), counted before the password is checked;
  a wrong password and an unknown user take the same time and get the same answer.
  scrypt runs in its own small pool (``hashing.py``). A successful check is remembered
  for a minute (keyed by an HMAC of the credentials under a per-process key, and bound
  to the stored hash, so a password change ends it at once), so that clients that send
  Basic credentials with every request do not pay scrypt each time. Robot secrets are
  190-bit random and check in microseconds: robots are never throttled nor locked out.
- ``account_named`` is the account a token names as it stands now (gone, disabled or
  expired: anonymous). Each account carries ``mark``, a fingerprint of its stored
  password or secret hash that its tokens carry too: a new password or secret ends them.
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
from regd.auth.hashing import HashPool
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
    mark: str = ""  # fingerprint of the stored credential (credential_mark)
    expires_at: int = -1  # robots: unix seconds, -1 for never

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


def credential_mark(stored_hash: str) -> str:
    """A short fingerprint of a stored password or secret hash, carried by the tokens
    issued on it: when the credential changes, so does the mark, and its tokens stop
    working. (A hash of a salted hash: it tells nothing about the password.)"""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


def _user_account(user: users.User) -> Account:
    return Account(user.username, Kind.USER, user.id, user.sysadmin, mark=credential_mark(user.password_hash))


def _robot_account(robot: robots.Robot) -> Account:
    return Account(
        robot.name,
        Kind.ROBOT,
        robot.id,
        False,
        robot.project_id,
        robot.actions,
        credential_mark(robot.secret_hash),
        robot.expires_at,
    )


class Accounts:
    def __init__(self, db: Database, layout: Layout, config: Config) -> None:
        self.db = db
        self._lookups = LookupCache(db.generation)
        self.layout = layout
        self.config = config
        self.throttle = LoginThrottle(db, config.auth.max_failed_logins, config.auth.lockout_seconds)
        self.hashing = HashPool()
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

    def close(self) -> None:
        self.hashing.close()

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
        return await self.hashing.run(pw.hash_password, password)

    async def verify_password(self, password: str, hashed: str) -> bool:
        return await self.hashing.run(pw.verify_password, password, hashed)

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """The account these credentials belong to; UNAUTHORIZED (the same answer whether
        or not the account exists), TOOMANYREQUESTS while locked out, UNAVAILABLE while
        the hashing pool is full."""
        now = time.time()
        if username.startswith(ROBOT_PREFIX):
            return self._refuse(await self._check_robot(username, password, now), address)
        attempt = self.throttle.attempt(username, address)
        wait = await self.throttle.begin(attempt, now)  # counted before the password is checked
        if wait > 0:
            raise RegistryError(
                ErrorCode.TOOMANYREQUESTS,
                f"too many failed logins; try again in {math.ceil(wait)} seconds",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        account: Account | None = None
        checked = False
        try:
            account = await self._check_user(username, password, now)
            checked = True
        finally:
            await self.throttle.finish(attempt, time.time(), (account is not None) if checked else None)
        return self._refuse(account, address)

    def _refuse(self, account: Account | None, address: str) -> Account:
        if account is None:
            log.info("failed login from %s", address)
            raise RegistryError(ErrorCode.UNAUTHORIZED, "invalid username or password")
        return account

    async def _check_robot(self, username: str, password: str, now: float) -> Account | None:
        if len(password) > pw.MAX_LENGTH:  # no secret is longer: not worth hashing
            return None
        robot = await robots.by_name(self.db, username)
        if robot is None:
            pw.verify_secret(password, "sha256$AAAA$AAAA")
            return None
        ok = pw.verify_secret(password, robot.secret_hash)
        return _robot_account(robot) if ok and not robot.disabled and not robot.expired(now) else None

    async def _check_user(self, username: str, password: str, now: float) -> Account | None:
        if len(password) > pw.MAX_LENGTH:  # no password is longer (the rule): a failure, unhashed
            return None
        user = await users.by_name(self.db, username)
        if user is None:
            await self.hashing.run(pw.burn_time, password)
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
        if not name:
            return ANONYMOUS
        key = ("account", name)
        cached: Account | None = self._lookups.get(key)
        if cached is None:
            stamp = self._lookups.stamp()
            if name.startswith(ROBOT_PREFIX):
                robot = await robots.by_name(self.db, name)
                cached = ANONYMOUS
                if robot is not None and not robot.disabled:
                    cached = _robot_account(robot)
            else:
                user = await users.by_name(self.db, name)
                cached = ANONYMOUS if user is None else _user_account(user)
            # Any commit, by any process (a password, a robot disabled...), empties it.
            self._lookups.put(key, cached, stamp)
        expired = cached.expires_at != -1 and time.time() >= cached.expires_at
        return ANONYMOUS if expired else cached

    # -- permissions -------------------------------------------------------------

    async def role(self, account: Account, project: Project) -> Role | None:
        if account.kind is not Kind.USER or not account.id:
            return None
        value = await projects.role_of(self.db, project.id, account.id)
        return None if value is None or value not in Role._value2member_map_ else Role(value)

    async def actions(self, account: Account, repository: str) -> frozenset[str] | None:
        """Registry actions ``account`` holds on ``repository``; None if its project is
        missing. Asked on every request a token allows (tokens are re-checked at use), so
        the answer is cached until the next commit of any process."""
        name = project_of(repository)
        key = ("actions", account, name)
        cached: tuple[frozenset[str] | None] | None = self._lookups.get(key)
        if cached is None:
            stamp = self._lookups.stamp()
            cached = (await self._actions(account, name),)
            self._lookups.put(key, cached, stamp)
        return cached[0]

    async def _actions(self, account: Account, project_name: str) -> frozenset[str] | None:
        project = await projects.by_name(self.db, project_name)
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
