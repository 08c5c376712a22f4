"""Harbor's garbage collection API (``server/v2.0/handler/gc.go``), system admins only:

    POST /api/v2.0/system/gc/schedule     run now (type Manual) or set the schedule -> 201
    PUT  /api/v2.0/system/gc/schedule     set the periodic schedule                  -> 200
    GET  /api/v2.0/system/gc/schedule     the schedule and its next time
    GET  /api/v2.0/system/gc              history, newest first (page, page_size)
    GET  /api/v2.0/system/gc/{id}         one run
    GET  /api/v2.0/system/gc/{id}/log     its log, text/plain
    PUT  /api/v2.0/system/gc/{id}         stop it (after the batch it is sweeping)

Bodies: ``{"schedule": {"type": "Manual|Hourly|Daily|Weekly|Custom|None", "cron":
"0 0 2 * * *"}, "parameters": {"delete_untagged": bool, "dry_run": bool, "workers": 1-10}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from regd.api.harbor import common
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError
from regd.gc.service import GCService
from regd.manage import Actor
from regd.manage.gcruns import Plan
from regd.metadata.gc_runs import RunRow
from regd.services import SERVICES

GC: web.AppKey[GCService] = web.AppKey("gc", GCService)
PREFIX = "/api/v2.0/system/gc"


def _history(run: RunRow) -> dict[str, Any]:
    parameters = {
        **run.parameters,
        "purged_manifests": run.manifests_purged,
        "purged_blobs": run.blobs_purged,
        "freed_space": run.bytes_freed,
    }
    return {
        "id": run.id,
        "job_name": "GARBAGE_COLLECTION",
        "job_kind": run.kind,
        "job_parameters": orjson.dumps(parameters).decode(),
        "schedule": {"type": run.schedule_type, "cron": "", "next_scheduled_time": None},
        "job_status": run.status,
        "deleted": False,
        "creation_time": common.timestamp(run.created_at),
        "update_time": common.timestamp(run.updated_at),
    }


def _plan(request: web.Request, body: dict[str, Any]) -> Plan:
    """The schedule request of a body, checked by the service."""
    schedule = body.get("schedule")
    if not isinstance(schedule, dict) or not isinstance(schedule.get("type"), str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "schedule.type is required")
    cron = schedule.get("cron") or ""
    if not isinstance(cron, str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "schedule.cron must be a string")
    return common.manage_of(request).gc.plan(schedule["type"], cron, body.get("parameters"))


async def create_schedule(request: web.Request) -> web.StreamResponse:
    """POST /system/gc/schedule: ``Manual`` runs a collection now; other types set the
    periodic schedule."""
    caller = await common.sysadmin(request)
    plan = _plan(request, await common.json_body(request))
    service = common.manage_of(request).gc
    if plan.type != "Manual":
        await service.set_schedule(caller, plan)
        return common.created(f"{PREFIX}/schedule")
    run_id = await service.run_now(caller, plan.parameters)
    return common.created(f"{PREFIX}/{run_id}")


async def update_schedule(request: web.Request) -> web.StreamResponse:
    """PUT /system/gc/schedule: the periodic schedule (``None`` removes it)."""
    caller = await common.sysadmin(request)
    plan = _plan(request, await common.json_body(request))
    await common.manage_of(request).gc.set_schedule(caller, plan)
    return web.Response(status=200)


async def get_schedule(request: web.Request) -> web.StreamResponse:
    schedule = await common.manage_of(request).gc.schedule(await common.actor(request))
    row = schedule.row
    if row is None:
        return json_response(
            {"schedule": {"type": "None", "cron": "", "next_scheduled_time": None}, "job_parameters": "{}"}
        )
    due = schedule.next_run
    return json_response(
        {
            "job_name": "GARBAGE_COLLECTION",
            "job_kind": "SCHEDULE",
            "job_parameters": orjson.dumps(row.parameters).decode(),
            "schedule": {
                "type": row.type,
                "cron": row.cron,
                "next_scheduled_time": common.timestamp(due.timestamp()) if due else None,
            },
            "creation_time": common.timestamp(row.created_at),
            "update_time": common.timestamp(row.updated_at),
        }
    )


async def list_history(request: web.Request) -> web.StreamResponse:
    caller = await common.sysadmin(request)
    page = common.page_of(request)
    listing = await common.manage_of(request).gc.history(caller, page)
    return common.paged(request, [_history(r) for r in listing.items], listing.total, page)


async def _run(request: web.Request) -> tuple[Actor, RunRow]:
    caller = await common.sysadmin(request)
    return caller, await common.manage_of(request).gc.get(caller, request.match_info["id"])


async def get_run(request: web.Request) -> web.StreamResponse:
    _, run = await _run(request)
    return json_response(_history(run))


async def get_log(request: web.Request) -> web.StreamResponse:
    caller, run = await _run(request)
    text = await common.manage_of(request).gc.log(caller, run)
    return web.Response(text=text, content_type="text/plain")


async def stop_run(request: web.Request) -> web.StreamResponse:
    """PUT /system/gc/{id}: stop after the current batch; what is swept stays swept.
    A run that has already ended is left as it is (200)."""
    caller, run = await _run(request)
    await common.manage_of(request).gc.stop(caller, run)
    return web.Response(status=200)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """After the database opens: recover a dead collection's trash, run the scheduler;
    at shutdown stop background collections between batches."""
    gc = app[GC]
    role = app[SERVICES].role
    if role.startup_recovery:
        await gc.recover()
    scheduler = asyncio.create_task(gc.scheduler()) if role.background else None
    try:
        yield
    finally:
        if scheduler is not None:
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
        await gc.close()


def setup(app: web.Application) -> None:
    """Expose the collection service (``Services.gc``) as ``app[GC]``, tie it to the
    app's lifetime, add the routes. Call after the cleanup context that opens the database."""
    app[GC] = app[SERVICES].gc
    app.cleanup_ctx.append(_lifetime)
    app.router.add_post(f"{PREFIX}/schedule", create_schedule)
    app.router.add_put(f"{PREFIX}/schedule", update_schedule)
    app.router.add_get(f"{PREFIX}/schedule", get_schedule)
    app.router.add_get(PREFIX, list_history)
    app.router.add_get(PREFIX + "/{id}", get_run)
    app.router.add_get(PREFIX + "/{id}/log", get_log)
    app.router.add_put(PREFIX + "/{id}", stop_run)
