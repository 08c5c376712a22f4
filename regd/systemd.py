"""The systemd notify protocol (sd_notify(3)), spoken over a plain datagram socket.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and waits for ``READY=1`` before it calls the unit started.
regd sends:

- ``READY=1`` once it listens and its database is open, and again after a reload;
- ``RELOADING=1`` (with ``MONOTONIC_USEC``, as systemd 253's ``Type=notify-reload``
  requires) when SIGHUP starts a reload;
- ``STOPPING=1`` when SIGTERM or SIGINT starts the graceful stop;
- ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` when the unit sets ``WatchdogSec=`` (and
  ``WATCHDOG_PID``, when set, names this process): the pings come from a task on the
  event loop, so a loop that stops turning stops them and systemd restarts regd.

Without ``NOTIFY_SOCKET`` every call does nothing. A datagram that cannot be sent is
dropped with a debug line: notification never stops the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

from regd.numbers import parse_uint

log = logging.getLogger("regd.systemd")


def _address(value: str) -> str:
    # A leading "@" names a socket in the abstract namespace (sd_notify(3)).
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends state changes to systemd; a no-op outside a ``Type=notify`` unit."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = _address(path) if path else ""
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=VALUE`` lines in one datagram."""
        if self._socket is None:
            return
        message = "\n".join(assignments).encode()
        try:
            self._socket.sendto(message, self._address)
        except OSError as e:  # receiver gone or its queue full: never fatal
            log.debug("cannot notify systemd at %r: %s", self._address, e)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    async def watchdog(self) -> None:
        """Ping every half watchdog interval until cancelled (returns at once if unset)."""
        if self._socket is None or self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval / 2)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds of ``WATCHDOG_USEC``, or None when unset, invalid or meant for another pid."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    value = parse_uint(usec, minimum=1)
    if value is None:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return value / 1_000_000
