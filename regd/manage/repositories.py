"""Repositories: list (per project, or across what the actor may read), get, set the
description, delete.

Only repositories that hold a manifest exist here, as in ``/v2/_catalog``. Project
admins, maintainers and developers set descriptions; deleting a repository (project
admins and maintainers) removes its manifests, tags and blob links in one transaction
(``Registry.delete_repository``); the bytes go at the next collection.
"""

from __future__ import annotations

from dataclasses import dataclass

from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage import descriptions
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.manage.projects import ProjectService
from regd.metadata import artifacts, projects
from regd.metadata.artifacts import RepositoryView
from regd.metadata.db import Database
from regd.metadata.projects import Project
from regd.names import is_valid_name
from regd.registry import Registry


@dataclass(frozen=True)
class ProjectRepository:
    repository: RepositoryView
    project_id: int


class RepositoryService:
    def __init__(self, db: Database, registry: Registry, projects: ProjectService) -> None:
        self.db = db
        self.registry = registry
        self.projects = projects

    async def find(self, project: Project, name: str) -> RepositoryView:
        """Repository ``name`` (without the project) of ``project``."""
        full = f"{project.name}/{name}"
        if not is_valid_name(full):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"invalid repository name {full[:300]!r}")
        view = await artifacts.repository(self.db, full)
        if view is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"repository {full} not found")
        return view

    async def get(self, actor: Actor, project: Project, name: str) -> RepositoryView:
        actor.require(project, Permission.REPOSITORY_READ)
        return await self.find(project, name)

    async def listing(
        self, actor: Actor, project: Project, page: Page, name: str = "", exact: bool = False
    ) -> Listing[RepositoryView]:
        """``name``: a full name when ``exact``, else a part of the full name."""
        actor.require(project, Permission.REPOSITORY_READ)
        total, rows = await artifacts.repositories(
            self.db, [project.name], name, exact, page.offset, page.size
        )
        return Listing(total, rows)

    async def list_all(
        self, actor: Actor, page: Page, name: str = "", exact: bool = False
    ) -> Listing[ProjectRepository]:
        """Repositories of every project ``actor`` may read."""
        visible = await self.projects.visible_names(actor)
        total, rows = await artifacts.repositories(self.db, visible, name, exact, page.offset, page.size)
        ids: dict[str, int] = {}
        for row in rows:
            if row.project not in ids:
                found = await projects.by_name(self.db, row.project)
                ids[row.project] = found.id if found else 0
        return Listing(total, [ProjectRepository(r, ids[r.project]) for r in rows])

    async def set_description(self, actor: Actor, project: Project, view: RepositoryView, text: str) -> None:
        actor.require(project, Permission.REPOSITORY_UPDATE)
        stored = descriptions.stored_form(text)
        async with self.db.transaction() as conn:
            await artifacts.set_description(conn, view.id, stored)

    async def delete(self, actor: Actor, project: Project, view: RepositoryView) -> None:
        actor.require(project, Permission.REPOSITORY_DELETE)
        await self.registry.delete_repository(view.name)
