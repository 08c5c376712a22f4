"""Read queries for the management API's repositories and artifacts (Harbor's views of
``repositories``, ``manifests`` and ``tags``). Writes to content go through the
``Registry`` service; the writes here are a repository's description, the pull
statistics (``regd/pulls.py`` batches them) and details filled in later (``regd/manage/artifacts.py``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from regd.metadata.db import Database, Row
from regd.metadata.manifests import ManifestRow
from regd.metadata.signatures import IS_SIGNATURE
from regd.metadata.users import escape_like

_NON_EMPTY = "EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)"


@dataclass(frozen=True)
class RepositoryView:
    id: int
    name: str
    project: str
    description: str
    pull_count: int
    artifact_count: int
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> RepositoryView:
        return cls(
            int(row["id"]),
            row["name"],
            row["project"],
            row["description"],
            int(row["pull_count"]),
            int(row["artifact_count"]),
            float(row["created_at"]),
            float(row["updated_at"]),
        )


@dataclass(frozen=True)
class TagView:
    name: str
    manifest_id: int
    repository_id: int
    updated_at: float
    pulled_at: float | None


_REPOSITORY = (
    "SELECT r.*, (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id) AS artifact_count "
    "FROM repositories r"
)


async def repositories(
    db: Database, projects: list[str] | None, name: str, exact: bool, offset: int, limit: int
) -> tuple[int, list[RepositoryView]]:
    """Non-empty repositories of ``projects`` (None: all), filtered by name: (total, page)."""
    where = [_NON_EMPTY]
    params: list[Any] = []
    if projects is not None:
        where.append(f"r.project IN ({','.join('?' * len(projects))})" if projects else "0")
        params += projects
    if name:
        where.append("r.name = ?" if exact else "r.name LIKE ? ESCAPE '\\'")
        params.append(name if exact else f"%{escape_like(name)}%")
    clause = " WHERE " + " AND ".join(where)
    total = await db.fetchval("SELECT count(*) FROM repositories r" + clause, params)
    rows = await db.fetchall(
        _REPOSITORY + clause + " ORDER BY r.name LIMIT ? OFFSET ?", [*params, limit, offset]
    )
    return int(total), [RepositoryView.of(r) for r in rows]


async def repository(db: Database, name: str) -> RepositoryView | None:
    row = await db.fetchone(_REPOSITORY + f" WHERE r.name = ? AND {_NON_EMPTY}", (name,))
    return None if row is None else RepositoryView.of(row)


async def set_description(conn: aiosqlite.Connection, repository_id: int, description: str) -> None:
    await conn.execute(
        "UPDATE repositories SET description = ?, updated_at = ? WHERE id = ?",
        (description, time.time(), repository_id),
    )


async def artifacts(
    db: Database, repository_id: int, offset: int, limit: int
) -> tuple[int, list[ManifestRow]]:
    """Manifests of a repository but its signatures (Harbor shows those as accessories),
    newest push first: (total, page)."""
    where = f"FROM manifests m WHERE m.repository_id = ? AND NOT {IS_SIGNATURE}"
    total = await db.fetchval(f"SELECT count(*) {where}", (repository_id,))
    rows = await db.fetchall(
        f"SELECT m.* {where} ORDER BY m.pushed_at DESC, m.id DESC LIMIT ? OFFSET ?",
        (repository_id, limit, offset),
    )
    return int(total), [ManifestRow.of(r) for r in rows]


async def digests(db: Database, repository_id: int) -> list[str]:
    rows = await db.fetchall("SELECT digest FROM manifests WHERE repository_id = ?", (repository_id,))
    return [r[0] for r in rows]


async def tags(db: Database, manifest_ids: list[int]) -> dict[int, list[TagView]]:
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT name, manifest_id, repository_id, updated_at, pulled_at FROM tags WHERE manifest_id IN "
        f"({','.join('?' * len(manifest_ids))}) ORDER BY name",
        manifest_ids,
    )
    found: dict[int, list[TagView]] = {}
    for r in rows:
        tag = TagView(r[0], int(r[1]), int(r[2]), float(r[3]), None if r[4] is None else float(r[4]))
        found.setdefault(tag.manifest_id, []).append(tag)
    return found


async def blob_details(db: Database, manifest_ids: list[int]) -> dict[int, tuple[int, str | None]]:
    """Per manifest: the summed size of the blobs it references, and its config's media type."""
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        "SELECT manifest_id, sum(size), max(CASE WHEN media_type LIKE '%config%' "
        "OR media_type = 'application/vnd.docker.container.image.v1+json' THEN media_type END) "
        f"FROM manifest_blobs WHERE manifest_id IN ({','.join('?' * len(manifest_ids))}) "
        "GROUP BY manifest_id",
        manifest_ids,
    )
    return {int(r[0]): (int(r[1] or 0), r[2]) for r in rows}


@dataclass(frozen=True)
class ChildView:
    """An index entry: the child's id in the index's repository (None if absent), its
    digest, and the entry's descriptor fields as JSON (None if not recorded)."""

    child_id: int | None
    digest: str
    descriptor: str | None


async def children(db: Database, manifest_ids: list[int]) -> dict[int, list[ChildView]]:
    """Per index: its children, by digest."""
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT c.parent_id, m.id, c.child_digest, c.descriptor FROM manifest_children c "
        f"JOIN manifests p ON p.id = c.parent_id "
        f"LEFT JOIN manifests m ON m.repository_id = p.repository_id AND m.digest = c.child_digest "
        f"WHERE c.parent_id IN ({','.join('?' * len(manifest_ids))}) ORDER BY c.child_digest",
        manifest_ids,
    )
    found: dict[int, list[ChildView]] = {}
    for r in rows:
        child = ChildView(None if r[1] is None else int(r[1]), r[2], r[3])
        found.setdefault(int(r[0]), []).append(child)
    return found


async def extras(db: Database, manifest_ids: list[int]) -> dict[int, tuple[str | None, float | None]]:
    """Per manifest: its ``extra_attrs`` JSON (None: not known yet) and last pull time."""
    if not manifest_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT id, extra_attrs, pulled_at FROM manifests WHERE id IN ({','.join('?' * len(manifest_ids))})",
        manifest_ids,
    )
    return {int(r[0]): (r[1], None if r[2] is None else float(r[2])) for r in rows}


async def fill_details(
    conn: aiosqlite.Connection, extra_attrs: Mapping[int, str], descriptors: Mapping[tuple[int, str], str]
) -> None:
    """Details learned after the push (manifests recorded before they were kept): set
    only where still unknown."""
    await conn.executemany(
        "UPDATE manifests SET extra_attrs = ? WHERE id = ? AND extra_attrs IS NULL",
        [(attrs, manifest_id) for manifest_id, attrs in extra_attrs.items()],
    )
    await conn.executemany(
        "UPDATE manifest_children SET descriptor = ? "
        "WHERE parent_id = ? AND child_digest = ? AND descriptor IS NULL",
        [(descriptor, parent, digest) for (parent, digest), descriptor in descriptors.items()],
    )


async def record_pulls(
    conn: aiosqlite.Connection,
    repositories: Mapping[int, int],
    manifests: Mapping[int, float],
    tags: Mapping[tuple[int, str], float],
) -> None:
    """Add pull counts and move pull times forward (never back: batches from several
    processes land in any order). Rows deleted meanwhile are skipped."""
    await conn.executemany(
        "UPDATE repositories SET pull_count = pull_count + ? WHERE id = ?",
        [(count, repository_id) for repository_id, count in repositories.items()],
    )
    await conn.executemany(
        "UPDATE manifests SET pulled_at = max(coalesce(pulled_at, 0), ?) WHERE id = ?",
        [(when, manifest_id) for manifest_id, when in manifests.items()],
    )
    await conn.executemany(
        "UPDATE tags SET pulled_at = max(coalesce(pulled_at, 0), ?) WHERE repository_id = ? AND name = ?",
        [(when, repository_id, name) for (repository_id, name), when in tags.items()],
    )
