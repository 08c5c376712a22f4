"""``GET /api/v2.0/system/scrub`` (system administrators): the last scrub and every
quarantined blob with the images that reference it. A regd extension: Harbor has no
scrub. Start one with ``regd scrub`` or ``[scrub] schedule`` (see ``regd.scrub``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.api.harbor import common
from regd.api.http import json_response
from regd.metadata.scrub import Affected, RunRow
from regd.services import SERVICES

PATH = f"{common.PREFIX}/system/scrub"


def _run(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "checked": run.checked,
        "bytes_read": run.bytes_read,
        "damaged": run.damaged,
        "missing": run.missing,
        "unknown_files": run.unknown_files,
        "checksums_recorded": run.checksums_recorded,
        "start_time": common.timestamp(run.started_at),
        "end_time": common.timestamp(run.finished_at) if run.finished_at is not None else None,
    }


def _artifact(a: Affected) -> dict[str, Any]:
    return {"repository_name": a.repository, "digest": a.digest, "tags": list(a.tags)}


async def get_scrub(request: web.Request) -> web.StreamResponse:
    await common.sysadmin(request)
    last, quarantined = await request.app[SERVICES].scrub.status()
    return json_response(
        {
            "last_run": _run(last) if last is not None else None,
            "quarantined": [
                {
                    "digest": q.digest,
                    "reason": q.reason,
                    "quarantine_time": common.timestamp(q.since),
                    "artifacts": [_artifact(a) for a in affected],
                }
                for q, affected in quarantined
            ],
        }
    )


def routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_scrub)
