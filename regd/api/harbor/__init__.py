"""The management API under ``/api/v2.0`` (Harbor REST API v2.0 paths and JSON shapes).

One module per resource; each has ``routes(app)``. ``common`` holds the caller,
permission checks and pagination. ``/api/v2.0/health`` is served elsewhere.
"""

from __future__ import annotations

from aiohttp import web

from regd.api.harbor import artifacts, members, projects, repositories, robots, system, users


def setup(app: web.Application) -> None:
    for module in (system, projects, members, repositories, artifacts, users, robots):
        module.routes(app)
