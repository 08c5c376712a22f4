"""The registry's content service: blobs and manifests of repositories.

Sits between the HTTP layer and storage + metadata. The rule the collector relies on is
enforced here: a manifest is recorded only inside the write transaction that checks
every blob and child manifest it references is present (``BEGIN IMMEDIATE`` serialises
it against a sweep, which deletes a blob row only where nothing references it).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite

from regd.digest import Digest, xxh3_hex
from regd.errors import ErrorCode, RegistryError, is_out_of_space
from regd.manifests import Manifest, image_config, image_details, parse
from regd.metadata import blobs as blob_rows
from regd.metadata import manifests as manifest_rows
from regd.metadata import repositories
from regd.metadata import signatures as signature_rows
from regd.metadata.db import Database, fetchone
from regd.metadata.generation import LookupCache
from regd.metadata.manifests import ManifestRow
from regd.names import check_tag, is_valid_tag
from regd.storage.blobstore import BlobStore

log = logging.getLogger("regd")

# Tags one push by digest may set with ?tag= (spec: "SHOULD support at least 10").
MAX_TAGS_PER_PUSH = 100


def _refuse_missing(repository: str, missing: list[str]) -> None:
    if missing:
        raise RegistryError(
            ErrorCode.MANIFEST_BLOB_UNKNOWN,
            f"{repository} does not hold {missing[0]}",
            detail={"digests": missing},
        )


@dataclass(frozen=True)
class StoredManifest:
    row: ManifestRow
    data: bytes


class ContentCache:
    """Manifest bytes by digest. Content-addressed, so an entry can never go stale."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, digest: str) -> bytes | None:
        data = self._entries.get(digest)
        if data is not None:
            self._entries.move_to_end(digest)
        return data

    def put(self, digest: str, data: bytes) -> None:
        if digest in self._entries or len(data) > self._max:
            return
        self._entries[digest] = data
        self._bytes += len(data)
        while self._bytes > self._max:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)


class Registry:
    def __init__(self, db: Database, store: BlobStore, grace_period: float, max_manifest_size: int) -> None:
        self.db = db
        self.store = store
        self.grace_period = grace_period
        self.max_manifest_size = max_manifest_size
        self.cache = ContentCache()
        self.lookups = LookupCache(db.generation)

    # -- blobs -------------------------------------------------------------------

    async def blob_size(self, repository: str, digest: Digest, confirm: bool = False) -> int:
        """Size of a blob linked to ``repository``, or BLOB_UNKNOWN. With ``confirm``
        (a HEAD: the client may now reference it without uploading), refresh its grace."""
        key = ("blob", repository, str(digest))
        cached: tuple[int, float] | None = self.lookups.get(key)
        if cached is None:
            stamp = self.lookups.stamp()
            row = await repositories.linked_blob(self.db, repository, str(digest))
            if row is None:
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown to {repository}")
            cached = row
            self.lookups.put(key, row, stamp)
        size, seen = cached
        # Refresh at most every half grace period; the collector keeps a blob for 1.5
        # grace periods after last_seen, so a HEAD is always covered for a full one. A
        # cached last_seen is never newer than the row's (it only grows), so trusting
        # it errs on the side of refreshing.
        if confirm and self.grace_period > 0 and time.time() - seen > self.grace_period / 2:
            try:
                async with self.db.transaction(bump=False) as conn:
                    await blob_rows.mark_seen(conn, str(digest))
            except Exception as e:
                # A full disk must not fail a pull's HEAD: the refresh waits for the next
                # HEAD, and the grace period (1.5x) still covers this one for a while.
                if not is_out_of_space(e):
                    raise
                log.warning("HEAD %s: grace not refreshed, the disk is full", digest)
                return size
            self.lookups.put(key, (size, time.time()), self.lookups.stamp())
        return size

    async def mount(self, repository: str, digest: Digest, source: str) -> int | None:
        """Link a blob of ``source`` into ``repository``; None when ``source`` lacks it."""
        async with self.db.transaction(bump=False) as conn:
            row = await fetchone(
                conn,
                "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
                "JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ? AND b.digest = ? "
                "AND b.quarantined_at IS NULL",
                (source, str(digest)),
            )
            if row is None:
                return None
            await blob_rows.mark_seen(conn, str(digest))
            repository_id = await repositories.ensure(conn, repository)
            await repositories.link_blob(conn, repository_id, str(digest))
            return int(row[0])

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        """Unlink a blob from the repository; its bytes go at the next collection."""
        async with self.db.transaction() as conn:
            if not await repositories.unlink_blob(conn, repository, str(digest)):
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown to {repository}")

    # -- manifests ---------------------------------------------------------------

    async def put_manifest(
        self,
        repository: str,
        reference: str,
        data: bytes,
        content_type: str | None,
        extra_tags: Sequence[str] = (),
        require_references: bool = True,
    ) -> Manifest:
        """Store a manifest pushed by tag or by digest. ``extra_tags`` (a push by digest
        with ``?tag=`` parameters, spec main: "pushing tags ... by addition of tag query
        parameters") all point at it, set in the same transaction, or none does.
        ``require_references`` False is the proxy cache's: a manifest fetched from the
        upstream is recorded before its blobs, which are fetched when a client asks."""
        if len(extra_tags) > MAX_TAGS_PER_PUSH:
            raise RegistryError(ErrorCode.TAG_INVALID, f"at most {MAX_TAGS_PER_PUSH} tags per push")
        for extra in extra_tags:
            check_tag(extra)
        if len(data) > self.max_manifest_size:
            raise RegistryError(
                ErrorCode.REQUEST_ENTITY_TOO_LARGE,
                f"manifest of {len(data)} bytes exceeds {self.max_manifest_size}",
            )
        manifest = parse(data, content_type)
        tag: str | None = None
        if Digest.is_digest(reference):
            wanted = Digest.parse(reference)
            actual = manifest.digest if wanted.algorithm == "sha256" else Digest.of(data, wanted.algorithm)
            if actual != wanted:
                raise RegistryError(ErrorCode.DIGEST_INVALID, f"manifest digest is {actual}, not {wanted}")
            # A manifest pushed by digest is stored and known under that digest, in its
            # algorithm (sha512 too), so that the same reference reads it back.
            manifest = replace(manifest, digest=wanted)
        else:
            tag = check_tag(reference)
        # Check first, store after: a manifest whose references are missing leaves no
        # bytes behind (the check inside the transaction below is the one that decides).
        if require_references:
            _refuse_missing(
                repository, await manifest_rows.missing_references_now(self.db, repository, manifest)
            )
        tags = ([tag] if tag is not None else []) + list(dict.fromkeys(extra_tags))
        extra_attrs = await self.image_details(manifest)
        tmp = await self.store.write_tmp(manifest.digest, data)
        try:
            made = await self.store.place(tmp, manifest.digest)
            async with self.db.transaction() as conn:
                repository_id = await repositories.ensure(conn, repository)
                missing = (
                    await manifest_rows.missing_references(conn, repository_id, manifest)
                    if require_references
                    else []
                )
                if missing:
                    # A sweep took a reference since the first check. Under the write
                    # lock, a file this call made and no row claims can go again.
                    if made and not await blob_rows.exists(conn, str(manifest.digest)):
                        await self.store.unlink(self.store.path(manifest.digest))
                    _refuse_missing(repository, missing)
                await self.store.confirm(tmp, manifest.digest)
                await blob_rows.upsert(conn, str(manifest.digest), len(data), xxh3_hex(data))
                manifest_id = await manifest_rows.insert(conn, repository_id, manifest, extra_attrs)
                for name in tags:
                    await manifest_rows.set_tag(conn, repository_id, name, manifest_id)
                await repositories.touch(conn, repository_id)
        finally:
            await self.store.discard(tmp)
        self.cache.put(str(manifest.digest), data)
        return manifest

    async def image_details(self, manifest: Manifest) -> dict[str, Any] | None:
        """Harbor's ``extra_attrs`` of an artifact: for an image, read once from its config
        blob (at push, so listings never read blobs); {} for anything else or a config
        larger than a manifest may be; None while the config is not in the store."""
        config = image_config(manifest)
        if config is None:
            return {}
        try:
            data = await self.store.read_small(config.digest, self.max_manifest_size)
        except FileNotFoundError:
            return None
        return {} if data is None else image_details(data)

    async def resolve(self, repository: str, reference: str) -> ManifestRow:
        key = ("manifest", repository, reference)
        row: ManifestRow | None = self.lookups.get(key)
        if row is not None:
            return row
        stamp = self.lookups.stamp()
        if Digest.is_digest(reference):
            row = await manifest_rows.by_digest(self.db, repository, str(Digest.parse(reference)))
        elif is_valid_tag(reference):
            row = await manifest_rows.by_tag(self.db, repository, reference)
        else:
            # Neither a tag nor a digest: no manifest can be known by it (404, as CNCF
            # distribution answers and both conformance programs expect); a PUT to it
            # is still refused with TAG_INVALID (put_manifest).
            row = None
        if row is not None:
            self.lookups.put(key, row, stamp)
        if row is None:
            raise RegistryError(
                ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference[:200]} unknown to {repository}"
            )
        return row

    async def get_manifest(self, repository: str, reference: str) -> StoredManifest:
        row = await self.resolve(repository, reference)
        return StoredManifest(row, await self._manifest_bytes(row))

    async def _manifest_bytes(self, row: ManifestRow) -> bytes:
        data = self.cache.get(row.digest)
        if data is None:
            try:
                data = await self.store.read(Digest.parse(row.digest))
            except FileNotFoundError:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {row.digest} unknown") from None
            self.cache.put(row.digest, data)
        return data

    async def parsed(self, row: ManifestRow) -> Manifest | None:
        """A stored manifest read back and parsed; None if its bytes are gone or no
        longer parse (stored under older rules)."""
        try:
            return parse(await self._manifest_bytes(row), row.media_type)
        except RegistryError:
            return None

    async def delete_manifest(self, repository: str, reference: str) -> None:
        """By digest: the manifest, its tags and its referrers (refused while an index of
        the repository lists it). By tag: only the tag. Bytes go at the next collection."""
        async with self.db.transaction() as conn:
            found = await fetchone(conn, "SELECT id FROM repositories WHERE name = ?", (repository,))
            if found is None:
                raise RegistryError(ErrorCode.NAME_UNKNOWN, f"repository {repository} not known to registry")
            repository_id = int(found[0])
            if not Digest.is_digest(reference):
                if not await manifest_rows.delete_tag(conn, repository_id, check_tag(reference)):
                    raise RegistryError(
                        ErrorCode.MANIFEST_UNKNOWN, f"tag {reference} unknown to {repository}"
                    )
                return
            digest = str(Digest.parse(reference))
            row = await fetchone(
                conn,
                "SELECT id FROM manifests WHERE repository_id = ? AND digest = ?",
                (repository_id, digest),
            )
            if row is None:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {digest} unknown to {repository}")
            parents = await manifest_rows.parents(conn, repository_id, digest)
            if parents:
                raise RegistryError(
                    ErrorCode.VIOLATE_FOREIGN_KEY_CONSTRAINT,
                    f"manifest {digest} is referenced by index {parents[0]}",
                    detail={"parents": parents},
                )
            await self._delete_deeply(conn, repository_id, int(row[0]), digest)

    async def _delete_deeply(
        self, conn: aiosqlite.Connection, repository_id: int, manifest_id: int, digest: str
    ) -> None:
        """Harbor's ``deleteDeeply``: the manifest, its referrers (signatures, SBOMs...),
        its cosign tag-scheme signatures (``sha256-<hex>.sig``), and the children of an
        index that no tag and no other index of the repository keeps; each of those the
        same way."""
        todo = [(manifest_id, digest)]
        seen: set[int] = set()
        while todo:
            current_id, current_digest = todo.pop()
            if current_id in seen:
                continue
            seen.add(current_id)
            todo += await manifest_rows.referrer_ids(conn, repository_id, current_digest)
            todo += await signature_rows.tag_scheme_ids(conn, repository_id, current_digest)
            children = await manifest_rows.child_ids(conn, current_id)
            await manifest_rows.delete(conn, current_id)
            for child_id, child_digest in children:
                if not await manifest_rows.is_tagged(conn, child_id) and not await manifest_rows.parents(
                    conn, repository_id, child_digest
                ):
                    todo.append((child_id, child_digest))

    async def delete_repository(self, repository: str) -> None:
        """Harbor's repository delete: every manifest, tag and blob link of it, in one
        transaction. Bytes go at the next collection (what no other repository uses)."""
        async with self.db.transaction() as conn:
            if not await repositories.delete(conn, repository):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, f"repository {repository} not known to registry")

    async def tags(self, repository: str, last: str, n: int) -> list[str]:
        key = ("tags", repository, last, n)
        cached: list[str] | None = self.lookups.get(key)
        if cached is not None:
            return cached
        stamp = self.lookups.stamp()
        if await repositories.get_id(self.db, repository) is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, f"repository {repository} not known to registry")
        tags = await manifest_rows.tags(self.db, repository, last, n)
        self.lookups.put(key, tags, stamp)
        return tags

    async def referrers(
        self, repository: str, subject: Digest, artifact_type: str | None
    ) -> list[ManifestRow]:
        return await manifest_rows.referrers(self.db, repository, str(subject), artifact_type)
