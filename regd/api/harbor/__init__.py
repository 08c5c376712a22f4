"""The management API under ``/api/v2.0`` (Harbor REST API v2.0 paths and JSON shapes).

One module per resource; each has ``routes(app)``. ``common`` holds the caller,
permission checks and pagination. ``gc`` (``/system/gc``, with its scheduler) is set up
by ``app.py`` itself, and ``/api/v2.0/health`` lives with the metrics (``api/observe``).
"""

from __future__ import annotations

from aiohttp import web

from regd.api.harbor import (
    artifacts,
    members,
    projects,
    registries,
    repositories,
    robots,
    scrub,
    system,
    trust,
    users,
)


def setup(app: web.Application) -> None:
    modules = (system, projects, members, repositories, artifacts, users, robots, trust, registries, scrub)
    for module in modules:
        module.routes(app)
