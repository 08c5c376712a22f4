"""Queries on ``registries`` (upstream endpoints of proxy-cache projects)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from regd.metadata import blobs as blob_rows
from regd.metadata import repositories
from regd.metadata.db import Database, Row, fetchone

# Harbor's registry types a proxy-cache project may mirror (all speak the v2 API).
REGISTRY_TYPES = frozenset({"docker-hub", "harbor", "docker-registry", "github-ghcr", "quay"})


@dataclass(frozen=True)
class EndpointFields:
    """What a caller sets on an endpoint (all but id, status and times)."""

    name: str
    type: str
    url: str
    credential_type: str
    access_key: str
    access_secret: str
    insecure: bool
    description: str


@dataclass(frozen=True)
class Endpoint(EndpointFields):
    id: int = 0
    status: str = "unknown"
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def of(cls, row: Row) -> Endpoint:
        return cls(
            id=int(row["id"]),
            name=row["name"],
            type=row["type"],
            url=row["url"],
            credential_type=row["credential_type"],
            access_key=row["access_key"],
            access_secret=row["access_secret"],
            insecure=bool(row["insecure"]),
            description=row["description"],
            status=row["status"],
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
        )


async def by_id(db: Database, registry_id: int) -> Endpoint | None:
    row = await db.fetchone("SELECT * FROM registries WHERE id = ?", (registry_id,))
    return None if row is None else Endpoint.of(row)


async def by_name(db: Database, name: str) -> Endpoint | None:
    row = await db.fetchone("SELECT * FROM registries WHERE name = ?", (name,))
    return None if row is None else Endpoint.of(row)


async def page(db: Database, name: str, offset: int, limit: int) -> tuple[int, list[Endpoint]]:
    where, params = ("WHERE name LIKE ?", [f"%{name}%"]) if name else ("", [])
    total = await db.fetchval(f"SELECT count(*) FROM registries {where}", params)
    rows = await db.fetchall(
        f"SELECT * FROM registries {where} ORDER BY id LIMIT ? OFFSET ?", [*params, limit, offset]
    )
    return int(total), [Endpoint.of(r) for r in rows]


async def name_taken(conn: aiosqlite.Connection, name: str, other_than: int = 0) -> bool:
    found = await fetchone(conn, "SELECT 1 FROM registries WHERE name = ? AND id != ?", (name, other_than))
    return found is not None


async def insert(conn: aiosqlite.Connection, fields: EndpointFields) -> int:
    now = time.time()
    cur = await conn.execute(
        "INSERT INTO registries (name, type, url, credential_type, access_key, access_secret, "
        "insecure, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*_values(fields), now, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def update(conn: aiosqlite.Connection, registry_id: int, fields: EndpointFields) -> None:
    await conn.execute(
        "UPDATE registries SET name = ?, type = ?, url = ?, credential_type = ?, access_key = ?, "
        "access_secret = ?, insecure = ?, description = ?, updated_at = ? WHERE id = ?",
        (*_values(fields), time.time(), registry_id),
    )


def _values(f: EndpointFields) -> tuple[str, str, str, str, str, str, int, str]:
    return (
        f.name,
        f.type,
        f.url,
        f.credential_type,
        f.access_key,
        f.access_secret,
        int(f.insecure),
        f.description,
    )


async def set_status(conn: aiosqlite.Connection, registry_id: int, status: str) -> None:
    await conn.execute("UPDATE registries SET status = ? WHERE id = ?", (status, registry_id))


async def delete(conn: aiosqlite.Connection, registry_id: int) -> None:
    await conn.execute("DELETE FROM registries WHERE id = ?", (registry_id,))


async def projects_using(conn: aiosqlite.Connection, registry_id: int) -> list[str]:
    async with conn.execute(
        "SELECT name FROM projects WHERE registry_id = ? ORDER BY name", (registry_id,)
    ) as cur:
        return [r[0] for r in await cur.fetchall()]


async def unpulled(db: Database, before: float) -> list[tuple[str, str]]:
    """(repository, digest) of proxy-cache manifests last pulled (or cached) before
    ``before``; indexes first, so that their children are free to go after them."""
    rows = await db.fetchall(
        "SELECT r.name, m.digest FROM manifests m "
        "JOIN repositories r ON r.id = m.repository_id "
        "JOIN projects p ON p.name = r.project AND p.registry_id IS NOT NULL "
        "WHERE coalesce(m.pulled_at, m.pushed_at) < ? "
        "ORDER BY EXISTS (SELECT 1 FROM manifest_children c WHERE c.parent_id = m.id) DESC, m.id",
        (before,),
    )
    return [(r[0], r[1]) for r in rows]


async def link_stored_blob(conn: aiosqlite.Connection, repository: str, digest: str) -> int | None:
    """Link a blob the store already holds (for any repository) to ``repository``; its
    size, or None when the store lacks it."""
    row = await fetchone(conn, "SELECT size FROM blobs WHERE digest = ?", (digest,))
    if row is None:
        return None
    await blob_rows.mark_seen(conn, digest)
    await repositories.link_blob(conn, await repositories.ensure(conn, repository), digest)
    return int(row[0])
