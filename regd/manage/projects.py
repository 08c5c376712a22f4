"""Projects: find, list, create, update, delete, summary.

Harbor's rules (``handler/project.go``): names match ``^[a-z0-9]+(?:[._-][a-z0-9]+)*$``
(1-255 characters); ``metadata.public`` is the string "true" or "false" (missing:
"false"); duplicates get 409; a project that holds repositories cannot be deleted (412),
and deleting one removes its empty repositories, their blob links and its upload
sessions with it.
The creator becomes the project's project admin; robots never create projects, and with
``[auth] project_creation_restriction = "adminonly"`` only system administrators do.
A project with a ``registry_id`` is a proxy-cache project (system administrators only;
``regd.proxy``); it keeps Harbor's proxy metadata keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from regd.auth.roles import Permission, Role
from regd.config import Config
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor, ProjectAccess
from regd.manage.paging import Listing, Page
from regd.metadata import projects
from regd.metadata import registries as registry_rows
from regd.metadata.db import Database
from regd.metadata.projects import Project
from regd.numbers import parse_uint
from regd.trust.service import POLICY_KEYS
from regd.uploads.session import UploadService

PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Metadata keys kept as given (strings); regd enforces ``public`` and content trust
# (``enable_content_trust``, ``enable_content_trust_cosign``, ``content_trust_verify``:
# regd/trust/service.py), whose values must be "true" or "false" as ``public``'s.
METADATA_KEYS = frozenset(
    {
        "public",
        "enable_content_trust",
        "enable_content_trust_cosign",
        "content_trust_verify",
        "prevent_vul",
        "severity",
        "auto_scan",
        "auto_sbom_generation",
        "reuse_sys_cve_allowlist",
    }
)


# Kept for proxy-cache projects only (Harbor's proxy keys; regd enforces the first three).
PROXY_METADATA_KEYS = frozenset(
    {
        "proxy_speed_kb",
        "max_upstream_conn",
        "proxy_cache_local_on_not_found",
        "proxy_referrer_api",
        "proxy_cache_filter_pattern",
        "proxy_cache_filter_kind",
    }
)


def check_project_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not PROJECT_NAME.match(name):
        raise RegistryError(
            ErrorCode.BAD_REQUEST, "project name is not in lower case or contains illegal characters"
        )
    return name


def proxy_metadata(metadata: dict[str, str], raw: Mapping[str, object]) -> dict[str, str]:
    """A proxy-cache project's metadata: the proxy keys of ``raw``, checked, added to
    ``metadata`` (Harbor keeps them only for proxy projects, and drops
    ``enable_content_trust`` there)."""
    result = {k: v for k, v in metadata.items() if k != "enable_content_trust"}
    for key in PROXY_METADATA_KEYS & set(raw):
        value = raw[key]
        if not isinstance(value, str):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be a string")
        if key in ("proxy_speed_kb", "max_upstream_conn") and not value.lstrip("-").isdigit():
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be an integer (-1: no limit)")
        result[key] = value
    return result


def merge_metadata(raw: Mapping[str, object], current: Mapping[str, str]) -> tuple[bool, dict[str, str]]:
    """``current`` updated with the known keys of ``raw``: (public, metadata)."""
    metadata = dict(current)
    for key, value in raw.items():
        if key not in METADATA_KEYS:
            continue
        if not isinstance(value, str):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be a string")
        if key in POLICY_KEYS and value.lower() not in ("true", "false"):
            raise RegistryError(ErrorCode.BAD_REQUEST, f'metadata.{key} must be "true" or "false"')
        metadata[key] = value.lower() if key in POLICY_KEYS else value
    public = metadata.setdefault("public", "false").lower()
    if public not in ("true", "false"):
        raise RegistryError(ErrorCode.BAD_REQUEST, 'metadata.public must be "true" or "false"')
    metadata["public"] = public
    return public == "true", metadata


@dataclass(frozen=True)
class ProjectView:
    project: Project
    role: Role | None
    repo_count: int


class ProjectService:
    def __init__(self, db: Database, config: Config, uploads: UploadService) -> None:
        self.db = db
        self.config = config
        self.uploads = uploads

    async def find(self, name_or_id: str, by_name: bool = False) -> Project:
        """A project by name, or by id when ``name_or_id`` is a number and not ``by_name``."""
        project_id = None if by_name else parse_uint(name_or_id)
        if project_id is not None:
            project = await projects.by_id(self.db, project_id)
        else:
            project = await projects.by_name(self.db, name_or_id)
        if project is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"project {name_or_id[:100]} not found")
        return project

    async def access(
        self, actor: Actor, project: Project | str, permission: Permission, by_name: bool = False
    ) -> ProjectAccess:
        """The project (or the one named), if ``actor`` holds ``permission`` on it."""
        if isinstance(project, str):
            project = await self.find(project, by_name)
        actor.require(project, permission)
        return ProjectAccess(project, actor)

    async def view(self, actor: Actor, project: Project) -> ProjectView:
        return ProjectView(project, actor.role(project), await self.repository_count(project))

    async def repository_count(self, project: Project) -> int:
        return await projects.repository_count(self.db, project.name)

    async def listing(
        self, actor: Actor, page: Page, name: str = "", exact: bool = False, public: bool | None = None
    ) -> Listing[ProjectView]:
        """Projects ``actor`` may see (all for administrators, else public ones and their own)."""
        total, rows = await projects.page(
            self.db,
            visible_to=actor.account.id if actor.is_user else None,
            robot_project=actor.account.robot_project_id if actor.is_robot else None,
            all_projects=actor.is_admin,
            name=name,
            exact_name=exact,
            public=public,
            offset=page.offset,
            limit=page.size,
        )
        counts = await projects.repository_counts(self.db, [p.name for p in rows])
        return Listing(total, [ProjectView(p, actor.role(p), counts.get(p.name, 0)) for p in rows])

    async def visible_names(self, actor: Actor) -> list[str] | None:
        """Names of the projects ``actor`` may read (None: all of them)."""
        if actor.is_admin:
            return None
        listed = await self.listing(actor, Page(1, 1_000_000))
        return [v.project.name for v in listed.items]

    async def exists(self, actor: Actor, name: str) -> bool:
        actor.require_login()
        return bool(name) and await projects.by_name(self.db, name) is not None

    def check_create(self, actor: Actor) -> None:
        """Whether ``actor`` may create projects at all (before reading what to create)."""
        actor.require_login()
        if actor.is_robot:
            raise RegistryError(ErrorCode.FORBIDDEN, "robot accounts cannot create projects")
        if self.config.auth.project_creation_restriction == "adminonly" and not actor.is_admin:
            raise RegistryError(ErrorCode.FORBIDDEN, "Only system admin can create project")

    async def create(
        self, actor: Actor, name: str, metadata: Mapping[str, object], registry_id: int | None = None
    ) -> int:
        """A new project owned by ``actor`` (its project admin); its id. With
        ``registry_id``: a proxy-cache project of that endpoint (administrators only)."""
        self.check_create(actor)
        check_project_name(name)
        public, stored = merge_metadata(metadata, {})
        if registry_id is not None:
            if not actor.is_admin:
                raise RegistryError(ErrorCode.FORBIDDEN, "Only system admin can create proxy cache project")
            if await registry_rows.by_id(self.db, registry_id) is None:
                raise RegistryError(ErrorCode.BAD_REQUEST, f"registry {registry_id} not found")
            stored = proxy_metadata(stored, metadata)
        async with self.db.transaction() as conn:
            if await projects.exists(conn, name):
                raise RegistryError(ErrorCode.CONFLICT, f"The project named {name} already exists")
            return await projects.insert(conn, name, actor.account.id or None, public, stored, registry_id)

    async def update(self, actor: Actor, project: Project, metadata: Mapping[str, object]) -> None:
        actor.require(project, Permission.PROJECT_UPDATE)
        public, stored = merge_metadata(metadata, project.metadata)
        if project.registry_id is not None:
            stored = proxy_metadata(stored, metadata)
        async with self.db.transaction() as conn:
            await projects.update(conn, project.id, public, stored)

    async def deletable(self, actor: Actor, project: Project) -> str | None:
        """Why ``project`` cannot be deleted, or None."""
        actor.require(project, Permission.PROJECT_DELETE)
        count = await self.repository_count(project)
        return "the project contains repositories, can not be deleted" if count else None

    async def delete(self, actor: Actor, project: Project) -> None:
        """The project and everything under its name (``metadata.projects.delete``):
        whoever creates a project of the same name later finds nothing of it."""
        problem = await self.deletable(actor, project)
        if problem is not None:
            raise RegistryError(ErrorCode.PRECONDITION, problem)
        async with self.db.transaction() as conn:
            removed = await projects.delete(conn, project)
        if removed is None:  # a push landed since the check above
            raise RegistryError(
                ErrorCode.PRECONDITION, "the project contains repositories, can not be deleted"
            )
        await self.uploads.discard(removed)

    async def role_counts(self, actor: Actor, project: Project) -> dict[Role, int] | None:
        """Members per role, for actors who may read the members (else None)."""
        if not actor.may(project, Permission.MEMBER_READ):
            return None
        counts = await projects.role_counts(self.db, project.id)
        return {role: counts.get(int(role), 0) for role in Role}
