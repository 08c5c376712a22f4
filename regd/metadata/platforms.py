"""Queries on ``manifest_platforms``: the OS and architecture of image manifests, read
once from each image's config, so that listing pages need no blob read."""

from __future__ import annotations

from collections.abc import Sequence

from regd.metadata.db import Database


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


async def of(db: Database, manifest_ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
    """manifest id -> (os, architecture, variant), for those recorded."""
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT manifest_id, os, architecture, variant FROM manifest_platforms "
        f"WHERE manifest_id IN ({_marks(manifest_ids)})",
        list(manifest_ids),
    )
    return {int(r[0]): (r[1], r[2], r[3]) for r in rows}


async def config_digests(db: Database, manifest_ids: Sequence[int]) -> dict[int, str]:
    """manifest id -> the digest of its image config (manifests that have one)."""
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT manifest_id, digest FROM manifest_blobs WHERE manifest_id IN ({_marks(manifest_ids)}) "
        "AND media_type IN ('application/vnd.oci.image.config.v1+json', "
        "'application/vnd.docker.container.image.v1+json')",
        list(manifest_ids),
    )
    return {int(r[0]): r[1] for r in rows}


async def record(db: Database, found: dict[int, tuple[str, str, str]]) -> None:
    if not found:
        return
    async with db.transaction(bump=False) as conn:
        await conn.executemany(
            "INSERT OR IGNORE INTO manifest_platforms (manifest_id, os, architecture, variant) "
            "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM manifests WHERE id = ?)",
            [(mid, *platform, mid) for mid, platform in found.items()],
        )
