"""The threads that hash passwords, apart from those that move blob bytes.

scrypt takes tens of milliseconds and 16 MiB per check on purpose. Run in the loop's
default executor, a flood of bad logins (anonymous ones too: a check against a dummy
hash hides whether the user exists) queued ahead of blob opens and upload writes, and
every queued check held its 16 MiB. Here they get ``THREADS`` threads of their own and a
bounded queue: a check that finds ``THREADS + QUEUE`` already waiting is refused with 503
``UNAVAILABLE`` and ``Retry-After`` without being run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from regd.errors import ErrorCode, RegistryError

T = TypeVar("T")

THREADS = 2
QUEUE = 16


class HashPool:
    def __init__(self, threads: int = THREADS, queue: int = QUEUE) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regd-scrypt")
        self.limit = threads + queue
        self._lock = threading.Lock()
        self._busy = 0  # submitted and not yet finished (a cancelled caller's job still runs)

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._busy >= self.limit:
                raise RegistryError(
                    ErrorCode.UNAVAILABLE,
                    "too many password checks in progress; try again shortly",
                    headers={"Retry-After": "1"},
                )
            self._busy += 1
        try:
            future: Future[T] = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: object) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
