"""``regd project create [--proxy R]``, ``regd registry add|list``, ``regd user
add|passwd``, ``regd member add``, ``regd robot create``, ``regd trust add|list|remove``:
everyday administration without curl.

They act on the data directory directly (the same configuration loading as ``serve``),
through the management services the API calls (``regd.manage``), as a system
administrator (``Management.operator``), also while the daemon runs: SQLite in WAL mode
takes their writes as transactions beside the daemon's. The first command on a new data
directory creates ``admin`` and ``library`` as the daemon's first start would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.auth import passwords
from regd.auth.roles import Role
from regd.config import Config
from regd.errors import ErrorCode, RegistryError
from regd.metadata.registries import REGISTRY_TYPES
from regd.numbers import parse_uint

if TYPE_CHECKING:
    # Imported when a command runs, not when ``regd`` builds its parser: the services
    # import regd.metrics, whose prometheus_client must be imported only after
    # ``regd serve`` has chosen its multiprocess mode (regd/cli.py).
    from regd.manage import Actor, Management

Command = Callable[[argparse.Namespace, "Management", "Actor"], Awaitable[None]]


class CommandError(Exception):
    """Ends the command with one line and exit status 1."""


async def _open_and_run(config: Config, args: argparse.Namespace, command: Command) -> None:
    from regd.app import open_services

    services = await open_services(config)
    try:
        await services.accounts.start()
        await command(args, services.manage, await services.manage.operator())
    finally:
        await services.db.close()


def _runner(command: Command, config_of: Callable[[argparse.Namespace], Config]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(_open_and_run(config_of(args), args, command))
        except (RegistryError, CommandError) as e:
            print(f"regd: {e.message if isinstance(e, RegistryError) else e}", file=sys.stderr)
            return 1
        return 0

    return run


@contextmanager
def _conflict(message: str) -> Iterator[None]:
    """The CLI's own words for a conflict."""
    try:
        yield
    except RegistryError as e:
        if e.code is ErrorCode.CONFLICT:
            raise CommandError(message) from None
        raise


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from standard input (``--password-stdin``), else a generated one."""
    if not args.password_stdin:
        return passwords.generate_secret(20), True
    from regd.manage.users import check_password

    return check_password(sys.stdin.readline().rstrip("\r\n")), False


async def project_create(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    from regd.manage.projects import check_project_name

    name = check_project_name(args.name)
    endpoint = await manage.registries.find(operator, args.proxy) if args.proxy else None
    with _conflict(f"project {name} already exists"):
        metadata = {"public": "true" if args.public else "false"}
        await manage.projects.create(operator, name, metadata, endpoint.id if endpoint else None)
    kind = f"proxy-cache project of {endpoint.name} ({endpoint.url})" if endpoint else "project"
    print(f"created {'public' if args.public else 'private'} {kind} {name}")


async def registry_add(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    """An upstream endpoint for proxy-cache projects; the password from standard input."""
    from regd.metadata.registries import EndpointFields

    secret = sys.stdin.readline().rstrip("\r\n") if args.username and args.password_stdin else ""
    fields = EndpointFields(
        name=args.name,
        type=args.type,
        url=args.url,
        credential_type="basic" if args.username else "",
        access_key=args.username or "",
        access_secret=secret,
        insecure=args.insecure,
        description=args.description,
    )
    registry_id = await manage.registries.create(operator, fields)
    print(f"added registry {args.name} (id {registry_id}): {args.type} {args.url}")


async def registry_list(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    from regd.manage import Page

    for e in (await manage.registries.listing(operator, Page(1, 1_000_000))).items:
        print(f"{e.id}\t{e.name}\t{e.type}\t{e.url}\t{e.access_key or 'anonymous'}\t{e.status}")


async def user_add(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    from regd.manage.users import check_username

    name = check_username(args.name)
    password, generated = _password(args)
    with _conflict(f"user {name} already exists"):
        await manage.users.create(operator, name, password, sysadmin=args.admin)
    print(f"created {'system administrator' if args.admin else 'user'} {name}")
    if generated:
        print(f"password: {password}")


async def user_passwd(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    """A new password for a user (admin's, when the generated one is lost)."""
    user = await manage.users.named(operator, args.name)
    password, generated = _password(args)
    await manage.users.reset_password(operator, user, password)
    print(f"changed the password of {user.username}")
    if generated:
        print(f"password: {password}")


async def member_add(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    project = await manage.projects.find(args.project, by_name=True)
    number = parse_uint(args.role)
    role = Role.parse(number if number is not None else args.role)
    if role is None:
        names = ", ".join(r.harbor_name for r in Role)
        raise CommandError(f"unknown role {args.role!r}; one of {names} (or 1-5)")
    await manage.members.add(operator, project, role, username=args.user)
    print(f"added {args.user} to {project.name} as {role.harbor_name}")


async def robot_create(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    project = await manage.projects.find(args.project, by_name=True)
    wanted = {"pull": args.pull, "push": args.push, "delete": args.delete}
    actions = {action for action, given in wanted.items() if given}
    robot = await manage.robots.create(
        operator, project, args.name, frozenset(actions or {"pull"}), args.days or -1, args.description
    )
    print(f"name: {robot.name}")
    print(f"secret: {robot.secret}")
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(robot.expires_at))
    print("expires: never" if robot.expires_at == -1 else f"expires: {expires}")


async def trust_add(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    """A trust anchor from a PEM file (``-``: standard input)."""
    from regd.manage import trust

    project = await manage.projects.find(args.project, by_name=True)
    try:
        pem = sys.stdin.read() if args.file == "-" else await asyncio.to_thread(Path(args.file).read_text)
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"cannot read {args.file}: {e}") from None
    anchor = trust.parse_anchor(args.name, args.kind, pem)
    await manage.trust.add_anchor(operator, project, anchor)
    print(f"added {anchor.kind.value} trust anchor {anchor.name} to {project.name}: {trust.describe(anchor)}")


async def trust_list(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    from regd.manage import trust

    project = await manage.projects.find(args.project, by_name=True)
    for row in await manage.trust.anchors(operator, project):
        anchor = row.anchor
        print(f"{anchor.name}\t{anchor.kind.value}\t{trust.fingerprint(anchor)}\t{trust.describe(anchor)}")


async def trust_remove(args: argparse.Namespace, manage: Management, operator: Actor) -> None:
    project = await manage.projects.find(args.project, by_name=True)
    await manage.trust.remove_anchor(operator, project, args.name)
    print(f"removed trust anchor {args.name} from {project.name}")


def add_commands(
    sub: Any,
    common: Callable[[argparse.ArgumentParser], None],
    config_of: Callable[[argparse.Namespace], Config],
) -> None:
    """Add ``project``, ``user``, ``member``, ``robot`` and ``trust`` to the ``regd`` parser."""

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
    p.add_argument("--type", default="docker-registry", choices=sorted(REGISTRY_TYPES))
    p.add_argument("--url", required=True, help="e.g. https://registry-1.docker.io")
    p.add_argument("--username", help="log in to the upstream as this user")
    p.add_argument("--password-stdin", action="store_true", help="read the upstream password from stdin")
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

    trust_group = group("trust", "manage a project's content-trust anchors")
    p = command(trust_group, "add", "trust a cosign public key or an X.509 CA for a project", trust_add)
    p.add_argument("project")
    p.add_argument("name")
    p.add_argument("file", help="PEM file ('-': standard input)")
    p.add_argument("--kind", required=True, choices=("cosign-key", "x509-ca"))
    p = command(trust_group, "list", "list a project's trust anchors", trust_list)
    p.add_argument("project")
    p = command(trust_group, "remove", "remove a trust anchor", trust_remove)
    p.add_argument("project")
    p.add_argument("name")
