"""Artifacts (manifests) of a repository and their tags: list, get, delete, add and
delete tags.

Everything listed comes from SQLite (``manifests``, ``tags``, ``manifest_blobs``,
``manifest_children``): no manifest is read to list a page. That includes Harbor's
artifact details: ``extra_attrs`` (what an image's config says: architecture, os,
created, author, config) and an index's children with the platform, annotations and
urls of their entries are recorded at push (``Registry.put_manifest``), pull times in
batches (``regd/pulls.py``). Manifests recorded before regd kept the details (NULL in
the database) are read and parsed once, by the first listing that shows them, and what
it learns is stored.

A reference is a tag or a digest. Deleting an artifact deletes the manifest and all its
tags (Harbor deletes the artifact even when named by a tag); deleting a tag leaves the
artifact. Both go through the ``Registry`` service; an index still listing the artifact
makes the deletion fail with 412 ``VIOLATE_FOREIGN_KEY_CONSTRAINT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError, proxy_push_denied
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.manifests import IMAGE_CONFIG_TYPES, INDEX_TYPES
from regd.metadata import artifacts
from regd.metadata import manifests as manifest_rows
from regd.metadata.artifacts import ChildView, RepositoryView, TagView
from regd.metadata.db import Database
from regd.metadata.manifests import ManifestRow
from regd.metadata.projects import Project
from regd.names import check_tag
from regd.registry import Registry


@dataclass(frozen=True)
class Child:
    digest: str
    manifest_id: int | None  # None when the repository does not hold it
    platform: dict[str, Any] | None = None  # of the index entry, as pushed
    annotations: dict[str, str] | None = None
    urls: list[str] | None = None


@dataclass(frozen=True)
class Artifact:
    row: ManifestRow
    tags: list[TagView]
    blob_size: int  # of the blobs it references (its config and layers)
    config_type: str | None
    children: list[Child]  # of an index
    extra_attrs: dict[str, Any] = field(default_factory=dict)  # Harbor's, of an image
    pulled_at: float | None = None

    @property
    def size(self) -> int:
        return self.row.size + self.blob_size

    @property
    def is_index(self) -> bool:
        return self.row.media_type in INDEX_TYPES

    @property
    def is_image(self) -> bool:
        return self.is_index or self.config_type in IMAGE_CONFIG_TYPES


class ArtifactService:
    def __init__(self, db: Database, registry: Registry) -> None:
        self.db = db
        self.registry = registry

    async def details(self, rows: list[ManifestRow]) -> list[Artifact]:
        """Tags, sizes, children and Harbor's details of manifests: four queries for any
        number of them (and, once, a read of those recorded before details were kept)."""
        ids = [row.id for row in rows]
        tags = await artifacts.tags(self.db, ids)
        details = await artifacts.blob_details(self.db, ids)
        children = await artifacts.children(self.db, ids)
        extras = await artifacts.extras(self.db, ids)
        attrs, descriptors = await self._backfill(rows, extras, children)
        result = []
        for row in rows:
            blob_size, config_type = details.get(row.id, (0, None))
            kids = [
                _child(c, descriptors.get((row.id, c.digest), c.descriptor)) for c in children.get(row.id, [])
            ]
            extra_attrs = orjson.loads(attrs.get(row.id) or "{}")
            pulled_at = extras.get(row.id, (None, None))[1]
            result.append(
                Artifact(row, tags.get(row.id, []), blob_size, config_type, kids, extra_attrs, pulled_at)
            )
        return result

    async def _backfill(
        self,
        rows: list[ManifestRow],
        extras: dict[int, tuple[str | None, float | None]],
        children: dict[int, list[ChildView]],
    ) -> tuple[dict[int, str], dict[tuple[int, str], str]]:
        """extra_attrs JSON by id (stored, or learned now) and child descriptors learned
        now, for manifests recorded before migration 4 kept them."""
        attrs = {manifest_id: text for manifest_id, (text, _) in extras.items() if text is not None}
        learned: dict[int, str] = {}
        descriptors: dict[tuple[int, str], str] = {}
        for row in rows:
            lacks_children = any(c.descriptor is None for c in children.get(row.id, []))
            if row.id in attrs and not lacks_children:
                continue
            manifest = await self.registry.parsed(row)
            if manifest is None:
                continue
            if row.id not in attrs and (found := await self.registry.image_details(manifest)) is not None:
                learned[row.id] = attrs[row.id] = orjson.dumps(found).decode()
            for entry in manifest.children:
                descriptors[(row.id, str(entry.digest))] = manifest_rows.child_descriptor(entry)
        if learned or descriptors:
            # Nothing cached holds these columns: no generation bump.
            async with self.db.transaction(bump=False) as conn:
                await artifacts.fill_details(conn, learned, descriptors)
        return attrs, descriptors

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
        # By the artifact's own digest with the tag as ?tag= would: a sha512 artifact is
        # tagged as itself, not as a new sha256 copy of its bytes.
        await self.registry.put_manifest(view.name, row.digest, stored.data, row.media_type, [name])

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


def _child(child: ChildView, descriptor: str | None) -> Child:
    fields = orjson.loads(descriptor) if descriptor else {}
    return Child(
        child.digest, child.child_id, fields.get("platform"), fields.get("annotations"), fields.get("urls")
    )
