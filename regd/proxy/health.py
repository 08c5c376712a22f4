"""Is an upstream up? The state of each endpoint, kept in this process.

    UNKNOWN --success--> HEALTHY --down--> UNHEALTHY --probe ok--> HEALTHY
       \\------------------down--------------^

A request that finds the upstream DOWN (unreachable, timeout, 5xx, 429) marks it
UNHEALTHY. While it is, content the cache holds is served without asking the upstream,
so a dead upstream costs clients nothing beyond the one request that found it dead; a
background task probes it (``GET /v2/``) every ``probe_interval`` seconds and marks it
HEALTHY again. Content the cache lacks is still asked for (there is nothing else to
serve), and its success also marks the upstream HEALTHY.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("regd.proxy")


class Health(enum.Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


Probe = Callable[[int], Coroutine[Any, Any, bool]]
Changed = Callable[[int, Health], Coroutine[Any, Any, None]]


class HealthTable:
    def __init__(self, probe: Probe, changed: Changed, interval: float) -> None:
        self._state: dict[int, Health] = {}
        self._probes: dict[int, asyncio.Task[None]] = {}
        self._probe = probe
        self._changed = changed
        self._interval = interval

    def state(self, registry_id: int) -> Health:
        return self._state.get(registry_id, Health.UNKNOWN)

    def usable(self, registry_id: int) -> bool:
        return self.state(registry_id) is not Health.UNHEALTHY

    def up(self, registry_id: int) -> None:
        self._set(registry_id, Health.HEALTHY)

    def down(self, registry_id: int) -> None:
        if self._set(registry_id, Health.UNHEALTHY) and registry_id not in self._probes:
            self._probes[registry_id] = asyncio.create_task(self._reprobe(registry_id))

    def _set(self, registry_id: int, health: Health) -> bool:
        previous = self._state.get(registry_id)
        self._state[registry_id] = health
        if previous is health:
            return False
        log.log(
            logging.WARNING if health is Health.UNHEALTHY else logging.INFO,
            "upstream registry %d is %s",
            registry_id,
            health.value,
        )
        task: asyncio.Task[None] = asyncio.create_task(self._changed(registry_id, health))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return True

    async def _reprobe(self, registry_id: int) -> None:
        try:
            while self.state(registry_id) is Health.UNHEALTHY:
                await asyncio.sleep(self._interval)
                if self.state(registry_id) is not Health.UNHEALTHY:
                    break
                try:
                    ok = await self._probe(registry_id)
                except Exception:
                    log.exception("probing upstream registry %d failed", registry_id)
                    ok = False
                if ok:
                    self.up(registry_id)
        finally:
            self._probes.pop(registry_id, None)

    async def close(self) -> None:
        tasks = list(self._probes.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
