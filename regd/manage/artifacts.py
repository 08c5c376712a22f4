"""Artifacts (manifests) of a repository and their tags: list, get, delete, add and
delete tags.

Everything listed comes from SQLite (``manifests``, ``tags``, ``manifest_blobs``,
``manifest_children``): no manifest is read to list a page. A reference is a tag or a
digest. Deleting an artifact deletes the manifest and all its tags (Harbor deletes the
artifact even when named by a tag); deleting a tag leaves the artifact. Both go through
the ``Registry`` service; an index still listing the artifact makes the deletion fail
with 412 ``VIOLATE_FOREIGN_KEY_CONSTRAINT``.
"""

from __future__ import annotations

from dataclasses import dataclass

from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError, proxy_push_denied
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata import artifacts
from regd.metadata import manifests as manifest_rows
from regd.metadata.artifacts import RepositoryView, TagView
from regd.metadata.db import Database
from regd.metadata.manifests import ManifestRow
from regd.metadata.projects import Project
from regd.names import check_tag
from regd.registry import Registry

IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Child:
    digest: str
    manifest_id: int | None  # None when the repository does not hold it


@dataclass(frozen=True)
class Artifact:
    row: ManifestRow
    tags: list[TagView]
    blob_size: int  # of the blobs it references (its config and layers)
    config_type: str | None
    children: list[Child]  # of an index

    @property
    def size(self) -> int:
        return self.row.size + self.blob_size

    @property
    def is_index(self) -> bool:
        return self.row.media_type in INDEXES

    @property
    def is_image(self) -> bool:
        return self.is_index or self.config_type in IMAGE_CONFIGS


class ArtifactService:
    def __init__(self, db: Database, registry: Registry) -> None:
        self.db = db
        self.registry = registry

    async def details(self, rows: list[ManifestRow]) -> list[Artifact]:
        """Tags, sizes and children of manifests: three queries for any number of them."""
        ids = [row.id for row in rows]
        tags = await artifacts.tags(self.db, ids)
        details = await artifacts.blob_details(self.db, ids)
        children = await artifacts.children(self.db, ids)
        result = []
        for row in rows:
            blob_size, config_type = details.get(row.id, (0, None))
            kids = [Child(digest, child_id) for child_id, digest in children.get(row.id, [])]
            result.append(Artifact(row, tags.get(row.id, []), blob_size, config_type, kids))
        return result

    async def resolve(self, view: RepositoryView, reference: str) -> ManifestRow:
        try:
            return await self.registry.resolve(view.name, reference)
        except RegistryError as e:
            if e.code in (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.TAG_INVALID, ErrorCode.DIGEST_INVALID):
                raise RegistryError(
                    ErrorCode.NOT_FOUND, f"artifact {view.name}:{reference[:200]} not found"
                ) from None
            raise

    async def listing(
        self, actor: Actor, project: Project, view: RepositoryView, page: Page
    ) -> Listing[Artifact]:
        """The artifacts of a repository, newest push first."""
        actor.require(project, Permission.REPOSITORY_READ)
        total, rows = await artifacts.artifacts(self.db, view.id, page.offset, page.size)
        return Listing(total, await self.details(rows))

    async def get(self, actor: Actor, project: Project, view: RepositoryView, reference: str) -> Artifact:
        actor.require(project, Permission.REPOSITORY_READ)
        (artifact,) = await self.details([await self.resolve(view, reference)])
        return artifact

    async def delete(self, actor: Actor, project: Project, view: RepositoryView, reference: str) -> None:
        """The artifact (by tag or digest) with all its tags."""
        actor.require(project, Permission.ARTIFACT_DELETE)
        row = await self.resolve(view, reference)
        await self.registry.delete_manifest(view.name, row.digest)

    async def tags(
        self, actor: Actor, project: Project, view: RepositoryView, reference: str, page: Page
    ) -> Listing[TagView]:
        actor.require(project, Permission.REPOSITORY_READ)
        row = await self.resolve(view, reference)
        tags = (await artifacts.tags(self.db, [row.id])).get(row.id, [])
        return Listing(len(tags), tags[page.offset : page.offset + page.size])

    async def create_tag(
        self, actor: Actor, project: Project, view: RepositoryView, reference: str, name: str
    ) -> None:
        actor.require(project, Permission.TAG_CREATE)
        if project.registry_id is not None:
            raise proxy_push_denied(project.name)
        row = await self.resolve(view, reference)
        check_tag(name)
        if await manifest_rows.by_tag(self.db, view.name, name) is not None:
            raise RegistryError(ErrorCode.CONFLICT, f"tag {name} already exists in {view.name}")
        stored = await self.registry.get_manifest(view.name, row.digest)
        await self.registry.put_manifest(view.name, name, stored.data, row.media_type)

    async def delete_tag(
        self, actor: Actor, project: Project, view: RepositoryView, reference: str, name: str
    ) -> None:
        """Tag ``name`` of the artifact ``reference`` names; the artifact stays."""
        actor.require(project, Permission.TAG_DELETE)
        row = await self.resolve(view, reference)
        tagged = await manifest_rows.by_tag(self.db, view.name, name)
        if tagged is None or tagged.id != row.id:
            raise RegistryError(ErrorCode.NOT_FOUND, f"tag {name[:200]} not found on {row.digest}")
        await self.registry.delete_manifest(view.name, name)
