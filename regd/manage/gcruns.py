"""Garbage collection runs for system administrators: run now (or a dry run), the
periodic schedule, the history with each run's log, stop a run.

The collection itself is ``regd.gc`` (``GCService``); this service adds who may ask for
it and checks what they ask (parameters, schedule type and cron).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regd.cron import Cron, CronError, cron_for
from regd.errors import ErrorCode, RegistryError
from regd.gc.service import GCBusyError, GCParametersError, GCService, Parameters
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata.gc_runs import RunRow, ScheduleRow
from regd.numbers import parse_uint


@dataclass(frozen=True)
class Plan:
    """A checked request: run now (``Manual``) or a periodic schedule."""

    type: str
    cron: str
    parameters: Parameters


@dataclass(frozen=True)
class Schedule:
    row: ScheduleRow | None  # None: no periodic collection
    next_run: datetime | None


class GCRunService:
    def __init__(self, gc: GCService) -> None:
        self.gc = gc

    def plan(self, type_: str, cron: str, parameters: Any) -> Plan:
        """Check a schedule type, its cron and Harbor's job parameters (a dict or None)."""
        try:
            checked = Parameters.of(parameters, self.gc.config.gc.delete_untagged)
            if type_ not in ("Manual", "Schedule"):
                cron = cron_for(type_, cron)
        except (GCParametersError, CronError) as e:
            raise RegistryError(ErrorCode.BAD_REQUEST, str(e)) from None
        return Plan(type_, cron, checked)

    async def run_now(self, actor: Actor, parameters: Parameters) -> int:
        """Start a collection in the background; its run id. 409 while one runs."""
        actor.require_admin()
        try:
            return await self.gc.start(parameters)
        except GCBusyError as e:
            raise RegistryError(ErrorCode.CONFLICT, str(e)) from None

    async def set_schedule(self, actor: Actor, plan: Plan) -> None:
        actor.require_admin()
        if plan.type in ("Manual", "Schedule"):
            raise RegistryError(
                ErrorCode.BAD_REQUEST, f"schedule type {plan.type} cannot be set as a periodic schedule"
            )
        await self.gc.set_schedule(plan.type, plan.cron, plan.parameters)

    async def schedule(self, actor: Actor) -> Schedule:
        actor.require_admin()
        row = await self.gc.schedule()
        due = Cron.parse(row.cron).next_after(datetime.now(UTC)) if row is not None else None
        return Schedule(row, due)

    async def history(self, actor: Actor, page: Page) -> Listing[RunRow]:
        """Runs, newest first."""
        actor.require_admin()
        runs, total = await self.gc.history(page.offset, page.size)
        return Listing(total, runs)

    async def get(self, actor: Actor, run_id: str | int) -> RunRow:
        actor.require_admin()
        raw = str(run_id)
        number = parse_uint(raw)
        run = await self.gc.get_run(number) if number is not None else None
        if run is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"garbage collection {raw[:50]} not found")
        return run

    async def log(self, actor: Actor, run: RunRow) -> str:
        actor.require_admin()
        return await self.gc.log(run.id)

    async def stop(self, actor: Actor, run: RunRow) -> None:
        """Stop after the current batch; a run that has ended is left as it is."""
        actor.require_admin()
        if run.status in ("Pending", "Running"):
            await self.gc.stop(run.id)
