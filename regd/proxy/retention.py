"""The nightly removal of proxy-cache artifacts nobody pulled for ``[proxy]
retention_days`` (Harbor gives each proxy project a retention policy of 7 days).

Each manifest of a proxy-cache project records when it was last served
(``manifests.pulled_at``; its caching time until then). The run deletes, through the
registry service, those older than the limit (indexes first, so that their children
are free to go); the collection it then starts frees the blobs nothing else uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from regd.cron import Cron, CronError
from regd.errors import ErrorCode, RegistryError
from regd.metadata import registries as registry_rows
from regd.metadata.db import Database
from regd.registry import Registry

log = logging.getLogger("regd.proxy")


async def remove_unpulled(db: Database, registry: Registry, days: int, now: float | None = None) -> int:
    """Delete proxy-cache manifests not pulled for ``days``; how many were deleted."""
    before = (time.time() if now is None else now) - days * 86400.0
    removed = 0
    for repository, digest in await registry_rows.unpulled(db, before):
        try:
            await registry.delete_manifest(repository, digest)
        except RegistryError as e:
            # Gone with an index deleted before it, or still listed by a fresh index.
            if e.code not in (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.VIOLATE_FOREIGN_KEY_CONSTRAINT):
                raise
            continue
        removed += 1
    return removed


async def run_nightly(
    db: Database, registry: Registry, days: int, schedule: str, collect: Callable[[], Awaitable[object]]
) -> None:
    """Forever: at each time of ``schedule``, the removal, then a collection if it
    removed anything."""
    try:
        cron = Cron.parse(schedule)
    except CronError as e:
        log.error("[proxy] retention_schedule %r: %s; proxy-cache retention is off", schedule, e)
        return
    while True:
        upcoming = cron.next_after(datetime.now(UTC))
        if upcoming is None:
            return
        await asyncio.sleep(max((upcoming - datetime.now(UTC)).total_seconds(), 0.0))
        try:
            removed = await remove_unpulled(db, registry, days)
            log.info("proxy-cache retention removed %d artifacts not pulled for %d days", removed, days)
            if removed:
                await collect()
        except Exception:
            log.exception("proxy-cache retention failed")
