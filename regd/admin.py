"""``regd project create [--proxy R]``, ``regd registry add|list``, ``regd user
add|passwd``, ``regd member add``, ``regd robot create``: everyday access
administration without curl.

They act on the data directory directly (the same configuration loading as ``serve``),
also while the daemon runs: SQLite in WAL mode takes their writes as transactions beside
the daemon's. The first command on a new data directory creates ``admin`` and
``library`` as the daemon's first start would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from regd.auth import passwords
from regd.auth.accounts import Accounts
from regd.auth.robots import create_robot
from regd.auth.roles import Role
from regd.config import Config
from regd.errors import RegistryError
from regd.manage import registries
from regd.manage.registries import TYPES
from regd.metadata import projects, users
from regd.metadata import registries as registry_rows
from regd.metadata.db import Database
from regd.storage.layout import Layout

Command = Callable[[argparse.Namespace, Database, Accounts], Awaitable[None]]


class CommandError(Exception):
    """Ends the command with one line and exit status 1."""


async def _open_and_run(config: Config, args: argparse.Namespace, command: Command) -> None:
    layout = Layout(config.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    db = Database(layout.database)
    await db.open()
    try:
        accounts = Accounts(db, layout, config)
        await accounts.start()
        await command(args, db, accounts)
    finally:
        await db.close()


def _runner(command: Command, config_of: Callable[[argparse.Namespace], Config]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(_open_and_run(config_of(args), args, command))
        except (RegistryError, CommandError) as e:
            print(f"regd: {e.message if isinstance(e, RegistryError) else e}", file=sys.stderr)
            return 1
        return 0

    return run


async def _project(db: Database, name: str) -> projects.Project:
    found = await projects.by_name(db, name)
    if found is None:
        raise CommandError(f"project {name} not found")
    return found


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from standard input (``--password-stdin``), else a generated one."""
    from regd.api.harbor.users import check_password

    if not args.password_stdin:
        return passwords.generate_secret(20), True
    return check_password(sys.stdin.readline().rstrip("\r\n")), False


async def project_create(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    from regd.api.harbor.projects import check_project_name

    name = check_project_name(args.name)
    admin = await users.by_name(db, "admin")
    endpoint = await registries.find(db, args.proxy) if args.proxy else None
    async with db.transaction() as conn:
        if await projects.exists(conn, name):
            raise CommandError(f"project {name} already exists")
        metadata = {"public": "true" if args.public else "false"}
        registry_id = endpoint.id if endpoint else None
        await projects.insert(conn, name, admin.id if admin else None, args.public, metadata, registry_id)
    kind = f"proxy-cache project of {endpoint.name} ({endpoint.url})" if endpoint else "project"
    print(f"created {'public' if args.public else 'private'} {kind} {name}")


async def registry_add(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    """An upstream endpoint for proxy-cache projects; the password from standard input."""
    body: dict[str, Any] = {
        "name": args.name,
        "type": args.type,
        "url": args.url,
        "insecure": args.insecure,
        "description": args.description,
    }
    if args.username:
        secret = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else ""
        body["credential"] = {"type": "basic", "access_key": args.username, "access_secret": secret}
    registry_id = await registries.create(db, registries.fields_of(body))
    print(f"added registry {args.name} (id {registry_id}): {args.type} {args.url}")


async def registry_list(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    _total, found = await registry_rows.page(db, "", 0, 1_000_000)
    for e in found:
        who = e.access_key or "anonymous"
        print(f"{e.id}\t{e.name}\t{e.type}\t{e.url}\t{who}\t{e.status}")


async def user_add(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    from regd.api.harbor.users import check_username

    name = check_username(args.name)
    password, generated = _password(args)
    hashed = await accounts.hash_password(password)
    async with db.transaction() as conn:
        if await users.exists(conn, name):
            raise CommandError(f"user {name} already exists")
        await users.insert(conn, name, hashed, sysadmin=args.admin)
    print(f"created {'system administrator' if args.admin else 'user'} {name}")
    if generated:
        print(f"password: {password}")


async def user_passwd(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    """A new password for a user (admin's, when the generated one is lost)."""
    user = await users.by_name(db, args.name)
    if user is None:
        raise CommandError(f"user {args.name} not found")
    password, generated = _password(args)
    hashed = await accounts.hash_password(password)
    async with db.transaction() as conn:
        await users.set_password(conn, user.id, hashed)
    print(f"changed the password of {user.username}")
    if generated:
        print(f"password: {password}")


async def member_add(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    project = await _project(db, args.project)
    user = await users.by_name(db, args.user)
    if user is None:
        raise CommandError(f"user {args.user} not found")
    role = Role.parse(int(args.role) if args.role.isdigit() else args.role)
    if role is None:
        names = ", ".join(r.harbor_name for r in Role)
        raise CommandError(f"unknown role {args.role!r}; one of {names} (or 1-5)")
    async with db.transaction() as conn:
        if await projects.add_member(conn, project.id, user.id, int(role)) is None:
            raise CommandError(f"{user.username} is already a member of {project.name}")
    print(f"added {user.username} to {project.name} as {role.harbor_name}")


async def robot_create(args: argparse.Namespace, db: Database, accounts: Accounts) -> None:
    project = await _project(db, args.project)
    wanted = {"pull": args.pull, "push": args.push, "delete": args.delete}
    actions = {action for action, given in wanted.items() if given}
    robot = await create_robot(
        db, project, args.name, frozenset(actions or {"pull"}), args.days or -1, args.description
    )
    print(f"name: {robot.name}")
    print(f"secret: {robot.secret}")
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(robot.expires_at))
    print("expires: never" if robot.expires_at == -1 else f"expires: {expires}")


def add_commands(
    sub: Any,
    common: Callable[[argparse.ArgumentParser], None],
    config_of: Callable[[argparse.Namespace], Config],
) -> None:
    """Add ``project``, ``user``, ``member`` and ``robot`` to the ``regd`` parser."""

    def command(group: Any, name: str, help: str, run: Command) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, help=help)
        common(parser)
        parser.set_defaults(func=_runner(run, config_of))
        return parser

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    p = command(group("project", "manage projects"), "create", "create a project", project_create)
    p.add_argument("name")
    p.add_argument("--public", action="store_true", help="anyone may pull, anonymously too")
    p.add_argument("--proxy", metavar="REGISTRY", help="a proxy-cache project of this registry (name or id)")

    registry = group("registry", "manage upstream registries of proxy-cache projects")
    p = command(registry, "add", "add an upstream registry endpoint", registry_add)
    p.add_argument("name")
    p.add_argument("--type", default="docker-registry", choices=sorted(TYPES))
    p.add_argument("--url", required=True, help="e.g. https://registry-1.docker.io")
    p.add_argument("--username", help="log in to the upstream as this user")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the upstream password from standard input"
    )
    p.add_argument("--insecure", action="store_true", help="do not verify the upstream's TLS certificate")
    p.add_argument("--description", default="")
    command(registry, "list", "list the upstream registry endpoints", registry_list)

    user = group("user", "manage users")
    p = command(user, "add", "add a user (prints a generated password)", user_add)
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--admin", action="store_true", help="make the user a system administrator")
    p = command(user, "passwd", "set a user's password (prints a generated one)", user_passwd)
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    p = command(group("member", "manage project members"), "add", "add a user to a project", member_add)
    p.add_argument("project")
    p.add_argument("user")
    p.add_argument("role", help="projectAdmin, maintainer, developer, guest or limitedGuest (or 1-5)")

    p = command(group("robot", "manage robot accounts"), "create", "create a robot account", robot_create)
    p.add_argument("project")
    p.add_argument("name", help="the robot is named robot$<project>+<name>")
    p.add_argument("--pull", action="store_true", help="may pull (the default when no permission is given)")
    p.add_argument("--push", action="store_true", help="may push (and pull)")
    p.add_argument("--delete", action="store_true", help="may delete manifests")
    p.add_argument("--days", type=int, help="expires after this many days (default: never)")
    p.add_argument("--description", default="", help="a note on what the robot is for")
