"""Harbor's artifact details for the management API: ``extra_attrs`` (what an image's
config says: architecture, os, created, author, config), an index's ``references`` (each
child with the platform, annotations and urls of its index entry) and ``pull_time``.

All of it is recorded in SQLite: the details at push (``Registry.put_manifest``), pull
times in batches (``regd/pulls.py``), so a listing reads no blob. Manifests recorded
before regd kept the details (NULL in the database) are read and parsed once, by the
first listing that shows them, and what it learns is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from regd.metadata import artifacts
from regd.metadata.artifacts import ChildView
from regd.metadata.manifests import ManifestRow, child_descriptor
from regd.registry import Registry


@dataclass(frozen=True)
class Child:
    child_id: int | None
    digest: str
    platform: dict[str, Any] | None
    annotations: dict[str, str] | None
    urls: list[str] | None


@dataclass(frozen=True)
class ArtifactDetails:
    extra_attrs: dict[str, Any]
    pulled_at: float | None
    children: list[Child]


async def artifact_details(registry: Registry, rows: list[ManifestRow]) -> dict[int, ArtifactDetails]:
    """Details of each manifest of ``rows``, by id."""
    ids = [row.id for row in rows]
    stored = await artifacts.extras(registry.db, ids)
    children = await artifacts.children(registry.db, ids)
    attrs, descriptors = await _backfill(registry, rows, stored, children)
    found = {}
    for row in rows:
        pulled_at = stored.get(row.id, (None, None))[1]
        listed = [
            _child(c, descriptors.get((row.id, c.digest), c.descriptor)) for c in children.get(row.id, [])
        ]
        found[row.id] = ArtifactDetails(orjson.loads(attrs.get(row.id) or "{}"), pulled_at, listed)
    return found


async def _backfill(
    registry: Registry,
    rows: list[ManifestRow],
    stored: dict[int, tuple[str | None, float | None]],
    children: dict[int, list[ChildView]],
) -> tuple[dict[int, str], dict[tuple[int, str], str]]:
    """extra_attrs by id (stored or learned now) and the child descriptors learned now."""
    attrs = {manifest_id: text for manifest_id, (text, _) in stored.items() if text is not None}
    learned_attrs: dict[int, str] = {}
    descriptors: dict[tuple[int, str], str] = {}
    for row in rows:
        lacks_children = any(c.descriptor is None for c in children.get(row.id, []))
        if row.id in attrs and not lacks_children:
            continue
        manifest = await registry.parsed(row)
        if manifest is None:
            continue
        if row.id not in attrs:
            details = await registry.image_details(manifest)
            if details is not None:
                learned_attrs[row.id] = attrs[row.id] = orjson.dumps(details).decode()
        for child in manifest.children:
            descriptors[(row.id, str(child.digest))] = child_descriptor(child)
    if learned_attrs or descriptors:
        # Nothing cached holds these columns: no generation bump.
        async with registry.db.transaction(bump=False) as conn:
            await artifacts.fill_details(conn, learned_attrs, descriptors)
    return attrs, descriptors


def _child(child: ChildView, descriptor: str | None) -> Child:
    fields = orjson.loads(descriptor) if descriptor else {}
    return Child(
        child.child_id, child.digest, fields.get("platform"), fields.get("annotations"), fields.get("urls")
    )
