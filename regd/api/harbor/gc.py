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
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from regd.api.harbor import common
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError
from regd.gc.cron import Cron, CronError, cron_for
from regd.gc.service import GCBusyError, GCParametersError, GCService, Parameters
from regd.metadata.gc_runs import RunRow
from regd.services import SERVICES

GC: web.AppKey[GCService] = web.AppKey("gc", GCService)
PREFIX = "/api/v2.0/system/gc"


async def require_sysadmin(request: web.Request) -> None:
    """Harbor: system administrators only (401 for anonymous callers, 403 for others)."""
    await common.sysadmin(request)


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


def _parse(body: dict[str, Any], default_delete_untagged: bool) -> tuple[str, str, Parameters]:
    """(schedule type, cron, parameters) of a schedule request, validated."""
    schedule = body.get("schedule")
    if not isinstance(schedule, dict) or not isinstance(schedule.get("type"), str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "schedule.type is required")
    type_ = schedule["type"]
    cron = schedule.get("cron") or ""
    if not isinstance(cron, str):
        raise RegistryError(ErrorCode.BAD_REQUEST, "schedule.cron must be a string")
    try:
        parameters = Parameters.of(body.get("parameters"), default_delete_untagged)
        if type_ not in ("Manual", "Schedule"):
            cron = cron_for(type_, cron)
    except (GCParametersError, CronError) as e:
        raise RegistryError(ErrorCode.BAD_REQUEST, str(e)) from None
    return type_, cron, parameters


async def _set_schedule(gc: GCService, type_: str, cron: str, parameters: Parameters) -> None:
    if type_ in ("Manual", "Schedule"):
        raise RegistryError(
            ErrorCode.BAD_REQUEST, f"schedule type {type_} cannot be set as a periodic schedule"
        )
    await gc.set_schedule(type_, cron, parameters)


async def create_schedule(request: web.Request) -> web.StreamResponse:
    """POST /system/gc/schedule: ``Manual`` runs a collection now; other types set the
    periodic schedule."""
    await require_sysadmin(request)
    gc = request.app[GC]
    type_, cron, parameters = _parse(await common.json_body(request), gc.config.gc.delete_untagged)
    if type_ != "Manual":
        await _set_schedule(gc, type_, cron, parameters)
        return common.created(f"{PREFIX}/schedule")
    try:
        run_id = await gc.start(parameters)
    except GCBusyError as e:
        raise RegistryError(ErrorCode.CONFLICT, str(e)) from None
    return common.created(f"{PREFIX}/{run_id}")


async def update_schedule(request: web.Request) -> web.StreamResponse:
    """PUT /system/gc/schedule: the periodic schedule (``None`` removes it)."""
    await require_sysadmin(request)
    gc = request.app[GC]
    type_, cron, parameters = _parse(await common.json_body(request), gc.config.gc.delete_untagged)
    await _set_schedule(gc, type_, cron, parameters)
    return web.Response(status=200)


async def get_schedule(request: web.Request) -> web.StreamResponse:
    await require_sysadmin(request)
    schedule = await request.app[GC].schedule()
    if schedule is None:
        return json_response(
            {"schedule": {"type": "None", "cron": "", "next_scheduled_time": None}, "job_parameters": "{}"}
        )
    due = Cron.parse(schedule.cron).next_after(datetime.now(UTC))
    return json_response(
        {
            "job_name": "GARBAGE_COLLECTION",
            "job_kind": "SCHEDULE",
            "job_parameters": orjson.dumps(schedule.parameters).decode(),
            "schedule": {
                "type": schedule.type,
                "cron": schedule.cron,
                "next_scheduled_time": common.timestamp(due.timestamp()) if due else None,
            },
            "creation_time": common.timestamp(schedule.created_at),
            "update_time": common.timestamp(schedule.updated_at),
        }
    )


async def list_history(request: web.Request) -> web.StreamResponse:
    await require_sysadmin(request)
    page = common.page_of(request)
    runs, total = await request.app[GC].history(page.offset, page.size)
    return common.paged(request, [_history(r) for r in runs], total, page)


async def _run(request: web.Request) -> RunRow:
    raw = request.match_info["id"]
    run_id = common.id_param(request, "id")
    run = await request.app[GC].get_run(run_id) if run_id is not None else None
    if run is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"garbage collection {raw[:50]} not found")
    return run


async def get_run(request: web.Request) -> web.StreamResponse:
    await require_sysadmin(request)
    return json_response(_history(await _run(request)))


async def get_log(request: web.Request) -> web.StreamResponse:
    await require_sysadmin(request)
    run = await _run(request)
    text = await request.app[GC].log(run.id)
    return web.Response(text=text, content_type="text/plain")


async def stop_run(request: web.Request) -> web.StreamResponse:
    """PUT /system/gc/{id}: stop after the current batch; what is swept stays swept.
    A run that has already ended is left as it is (200)."""
    await require_sysadmin(request)
    run = await _run(request)
    if run.status in ("Pending", "Running"):
        await request.app[GC].stop(run.id)
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
    """Create the collection service, tie it to the app's lifetime, add the routes.
    Call after the cleanup context that opens the database."""
    s = app[SERVICES]
    app[GC] = GCService(s.config, s.db, s.store, s.uploads)
    app.cleanup_ctx.append(_lifetime)
    app.router.add_post(f"{PREFIX}/schedule", create_schedule)
    app.router.add_put(f"{PREFIX}/schedule", update_schedule)
    app.router.add_get(f"{PREFIX}/schedule", get_schedule)
    app.router.add_get(PREFIX, list_history)
    app.router.add_get(PREFIX + "/{id}", get_run)
    app.router.add_get(PREFIX + "/{id}/log", get_log)
    app.router.add_put(PREFIX + "/{id}", stop_run)
