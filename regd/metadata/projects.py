"""Queries on ``projects`` and ``project_members``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from regd.metadata.db import Database, Row, fetchone
from regd.metadata.users import escape_like


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    owner_id: int | None
    owner_name: str
    public: bool
    metadata: dict[str, str]
    created_at: float
    updated_at: float
    registry_id: int | None = None  # set: a proxy-cache project of that endpoint

    @classmethod
    def of(cls, row: Row) -> Project:
        return cls(
            int(row["id"]),
            row["name"],
            None if row["owner_id"] is None else int(row["owner_id"]),
            row["owner_name"] or "",
            bool(row["public"]),
            orjson.loads(row["metadata"]),
            float(row["created_at"]),
            float(row["updated_at"]),
            None if row["registry_id"] is None else int(row["registry_id"]),
        )


@dataclass(frozen=True)
class Member:
    id: int
    project_id: int
    user_id: int
    username: str
    role: int

    @classmethod
    def of(cls, row: Row) -> Member:
        return cls(
            int(row["id"]), int(row["project_id"]), int(row["user_id"]), row["username"], int(row["role"])
        )


_SELECT = "SELECT p.*, u.username AS owner_name FROM projects p LEFT JOIN users u ON u.id = p.owner_id"


async def by_name(db: Database, name: str) -> Project | None:
    row = await db.fetchone(_SELECT + " WHERE p.name = ?", (name,))
    return None if row is None else Project.of(row)


async def by_id(db: Database, project_id: int) -> Project | None:
    row = await db.fetchone(_SELECT + " WHERE p.id = ?", (project_id,))
    return None if row is None else Project.of(row)


async def page(
    db: Database,
    *,
    visible_to: int | None,
    all_projects: bool,
    robot_project: int | None = None,
    name: str | None = None,
    exact_name: bool = False,
    public: bool | None = None,
    offset: int = 0,
    limit: int = 10,
) -> tuple[int, list[Project]]:
    """Projects the caller may see (all, or public ones plus those ``visible_to`` is a
    member of, or the robot's ``robot_project``), filtered, by name: (total, this page)."""
    where: list[str] = []
    params: list[Any] = []
    if not all_projects:
        where.append(
            "(p.public = 1 OR p.id = ? OR p.id IN (SELECT project_id FROM project_members WHERE user_id = ?))"
        )
        params += [-1 if robot_project is None else robot_project, -1 if visible_to is None else visible_to]
    if name:
        if exact_name:
            where.append("p.name = ?")
            params.append(name)
        else:
            where.append("p.name LIKE ? ESCAPE '\\'")
            params.append(f"%{escape_like(name)}%")
    if public is not None:
        where.append("p.public = ?")
        params.append(int(public))
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = await db.fetchval("SELECT count(*) FROM projects p" + clause, params)
    rows = await db.fetchall(_SELECT + clause + " ORDER BY p.name LIMIT ? OFFSET ?", [*params, limit, offset])
    return int(total), [Project.of(r) for r in rows]


async def insert(
    conn: aiosqlite.Connection,
    name: str,
    owner_id: int | None,
    public: bool,
    metadata: dict[str, str],
    registry_id: int | None = None,
) -> int:
    """A new project; its owner (if any) becomes its project admin, as in Harbor."""
    now = time.time()
    cur = await conn.execute(
        "INSERT INTO projects (name, owner_id, public, metadata, created_at, updated_at, registry_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, owner_id, int(public), orjson.dumps(metadata).decode(), now, now, registry_id),
    )
    project_id = cur.lastrowid
    assert project_id is not None
    if owner_id is not None:
        await add_member(conn, project_id, owner_id, 1)
    return project_id


async def exists(conn: aiosqlite.Connection, name: str) -> bool:
    return await fetchone(conn, "SELECT 1 FROM projects WHERE name = ?", (name,)) is not None


async def update(conn: aiosqlite.Connection, project_id: int, public: bool, metadata: dict[str, str]) -> None:
    await conn.execute(
        "UPDATE projects SET public = ?, metadata = ?, updated_at = ? WHERE id = ?",
        (int(public), orjson.dumps(metadata).decode(), time.time(), project_id),
    )


async def delete(conn: aiosqlite.Connection, project: Project) -> list[str] | None:
    """Remove a project with everything under its name: repositories (blob links, and
    tags and manifests if any), upload sessions, members and robot accounts. None (and
    nothing removed) while a repository of it holds a manifest; else the ids of the
    upload sessions removed, whose files the caller deletes after the commit.

    Nothing may outlive it: whoever creates a project of the same name later must not
    find, read or mount its blobs (repository rows keep the project by name).
    """
    held = await fetchone(
        conn,
        "SELECT 1 FROM repositories r WHERE r.project = ? "
        "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) LIMIT 1",
        (project.name,),
    )
    if held is not None:
        return None
    prefix = project.name + "/"
    async with conn.execute(
        "SELECT id FROM uploads WHERE substr(repository, 1, ?) = ?", (len(prefix), prefix)
    ) as cur:
        uploads = [str(row[0]) for row in await cur.fetchall()]
    await conn.execute("DELETE FROM uploads WHERE substr(repository, 1, ?) = ?", (len(prefix), prefix))
    await conn.execute("DELETE FROM repositories WHERE project = ?", (project.name,))
    await conn.execute("DELETE FROM projects WHERE id = ?", (project.id,))
    return uploads


async def repository_count(db: Database, name: str) -> int:
    """Repositories of the project that hold at least one manifest."""
    value = await db.fetchval(
        "SELECT count(*) FROM repositories r WHERE r.project = ? "
        "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)",
        (name,),
    )
    return int(value)


async def repository_counts(db: Database, names: list[str]) -> dict[str, int]:
    """``repository_count`` of several projects in one query (those with none are absent)."""
    if not names:
        return {}
    rows = await db.fetchall(
        f"SELECT r.project, count(*) FROM repositories r WHERE r.project IN ({','.join('?' * len(names))}) "
        "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) GROUP BY r.project",
        names,
    )
    return {str(r[0]): int(r[1]) for r in rows}


# -- members ---------------------------------------------------------------------

_MEMBER = (
    "SELECT pm.id, pm.project_id, pm.user_id, pm.role, u.username FROM project_members pm "
    "JOIN users u ON u.id = pm.user_id"
)


async def role_of(db: Database, project_id: int, user_id: int) -> int | None:
    value = await db.fetchval(
        "SELECT role FROM project_members WHERE project_id = ? AND user_id = ?", (project_id, user_id)
    )
    return None if value is None else int(value)


async def roles_of_user(db: Database, user_id: int) -> dict[int, int]:
    """Project id -> role id of every membership of one user."""
    rows = await db.fetchall("SELECT project_id, role FROM project_members WHERE user_id = ?", (user_id,))
    return {int(r[0]): int(r[1]) for r in rows}


async def members(
    db: Database, project_id: int, entityname: str, offset: int, limit: int
) -> tuple[int, list[Member]]:
    pattern = f"%{escape_like(entityname)}%"
    where = " WHERE pm.project_id = ? AND u.username LIKE ? ESCAPE '\\'"
    total = await db.fetchval(
        "SELECT count(*) FROM project_members pm JOIN users u ON u.id = pm.user_id" + where,
        (project_id, pattern),
    )
    rows = await db.fetchall(
        _MEMBER + where + " ORDER BY pm.id LIMIT ? OFFSET ?", (project_id, pattern, limit, offset)
    )
    return int(total), [Member.of(r) for r in rows]


async def member(db: Database, project_id: int, member_id: int) -> Member | None:
    row = await db.fetchone(_MEMBER + " WHERE pm.project_id = ? AND pm.id = ?", (project_id, member_id))
    return None if row is None else Member.of(row)


async def role_counts(db: Database, project_id: int) -> dict[int, int]:
    rows = await db.fetchall(
        "SELECT role, count(*) FROM project_members WHERE project_id = ? GROUP BY role", (project_id,)
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def add_member(conn: aiosqlite.Connection, project_id: int, user_id: int, role: int) -> int | None:
    """The new membership's id, or None when the user is a member already."""
    now = time.time()
    cur = await conn.execute(
        "INSERT OR IGNORE INTO project_members (project_id, user_id, role, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (project_id, user_id, role, now, now),
    )
    return cur.lastrowid if cur.rowcount > 0 else None


async def set_role(conn: aiosqlite.Connection, project_id: int, member_id: int, role: int) -> bool:
    cur = await conn.execute(
        "UPDATE project_members SET role = ?, updated_at = ? WHERE project_id = ? AND id = ?",
        (role, time.time(), project_id, member_id),
    )
    return cur.rowcount > 0


async def remove_member(conn: aiosqlite.Connection, project_id: int, member_id: int) -> bool:
    cur = await conn.execute(
        "DELETE FROM project_members WHERE project_id = ? AND id = ?", (project_id, member_id)
    )
    return cur.rowcount > 0
