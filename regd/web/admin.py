"""Administration pages, for system administrators: "Garbage Collection" (GC Now, Dry
Run, the delete-untagged option, the schedule, the history with each run's log) and
"Users" (add, reset a password, make administrator)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from regd.cron import PRESETS, SCHEDULE_TYPES
from regd.errors import ErrorCode, RegistryError
from regd.web.render import current, form, manage_of, or_form_error, page, page_of, pager, render, see_other


async def gc_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    me = await current(request)
    service = manage_of(request).gc
    schedule = await service.schedule(me)
    paging = page_of(request)
    history = await service.history(me, paging)
    parameters: dict[str, Any] = schedule.row.parameters if schedule.row else {}
    context = {
        "schedule": schedule,
        "schedule_type": schedule.row.type if schedule.row else "None",
        "schedule_cron": schedule.row.cron if schedule.row else "",
        "schedule_untagged": bool(parameters.get("delete_untagged")),
        "types": SCHEDULE_TYPES,
        "presets": PRESETS,
        "runs": history.items,
        "pager": pager(request, paging, history.total),
        "default_untagged": service.gc.config.gc.delete_untagged,
        "error": error,
        "started": request.query.get("started", ""),
    }
    return await render(request, "gc.html", context, status=status)


async def gc_post(request: web.Request) -> web.StreamResponse:
    """GC Now and Dry Run (a collection in the background), or the schedule."""
    me = await current(request)
    me.require_admin()
    service = manage_of(request).gc
    fields = await form(request)
    action = fields.get("action", "")
    untagged = bool(fields.get("delete_untagged"))

    async def change() -> web.StreamResponse:
        if action in ("run", "dry-run"):
            plan = service.plan("Manual", "", {"delete_untagged": untagged, "dry_run": action == "dry-run"})
            run_id = await service.run_now(me, plan.parameters)
            return see_other(f"/admin/gc?started={run_id}")
        if action != "schedule":
            raise RegistryError(ErrorCode.BAD_REQUEST, "unknown action")
        type_ = fields.get("type", "None")
        cron = fields.get("cron", "").strip() if type_ == "Custom" else ""
        await service.set_schedule(me, service.plan(type_, cron, {"delete_untagged": untagged}))
        return see_other("/admin/gc")

    return await or_form_error(change(), lambda error, status: gc_page(request, error, status))


async def gc_log(request: web.Request) -> web.StreamResponse:
    me = await current(request)
    service = manage_of(request).gc
    run = await service.get(me, request.match_info["id"])
    return await render(request, "gc_log.html", {"run": run, "log": await service.log(me, run)})


async def users_page(
    request: web.Request, error: str = "", status: int = 200, done: str = ""
) -> web.Response:
    me = await current(request)
    q = request.query.get("q", "").strip()
    paging = page_of(request)
    listing = await manage_of(request).users.listing(me, paging, q)
    context = {
        "users": listing.items,
        "pager": pager(request, paging, listing.total),
        "q": q,
        "error": error,
        "done": done,
    }
    return await render(request, "users.html", context, status=status)


async def users_post(request: web.Request) -> web.StreamResponse:
    """Add a user, reset a password, make (or unmake) an administrator."""
    me = await current(request)
    me.require_admin()
    users = manage_of(request).users
    fields = await form(request)
    action = fields.get("action", "")

    async def change() -> web.StreamResponse:
        if action == "add":
            name = fields.get("username", "").strip()
            email = fields.get("email", "").strip()[:255]
            await users.create(me, name, fields.get("password", ""), email=email)
            return await users_page(request, done=f"Added user {name}.")
        user = await users.get(me, fields.get("user", ""))
        if action == "reset-password":
            await users.reset_password(me, user, fields.get("password", ""))
            return await users_page(request, done=f"Changed the password of {user.username}.")
        if action not in ("make-admin", "revoke-admin"):
            raise RegistryError(ErrorCode.BAD_REQUEST, "unknown action")
        await users.set_sysadmin(me, user, action == "make-admin")
        return see_other("/admin/users")

    return await or_form_error(change(), lambda error, status: users_page(request, error, status))


def routes(app: web.Application) -> None:
    app.router.add_get("/admin/gc", page(gc_page))
    app.router.add_post("/admin/gc", page(gc_post))
    app.router.add_get("/admin/gc/{id}/log", page(gc_log))
    app.router.add_get("/admin/users", page(users_page))
    app.router.add_post("/admin/users", page(users_post))
