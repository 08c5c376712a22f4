"""Brute-force slowdown for user logins, and who it may lock out.

An attempt is counted *before* its password is checked (``begin``) and settled after
(``finish``): parallel attempts see each other, so N concurrent guesses cannot all pass a
check made before any of them failed. ``begin`` and ``finish`` run on the event loop
without awaiting, so each is atomic within the process.

Three counters, each locking for ``lockout`` seconds (doubling with each further lockout
of the same key, up to an hour) once its limit of failures is reached inside ``WINDOW``:

- ``pair``: one user name from one address, ``max_failures``. Only that address is
  locked out of that account: a stranger's failures never lock the owner out.
- ``address``: every user login from one address, ``ADDRESS_FACTOR`` times as many (an
  office behind one NAT shares it). IPv6 addresses count by their /64, which one host
  usually holds whole.
- ``account``: one user name from any address, ``ACCOUNT_FACTOR`` times as many: a guess
  spread over many addresses. Its lock refuses only addresses that have not logged in to
  that account in the last ``TRUST_TIME``; the owner's own machines keep working.

While attempts are still being checked, one more is refused (for a second) when those in
flight could reach a limit. Robot accounts are never throttled nor locked: their secrets
are 190-bit random, and checking one costs microseconds (``accounts.py``).

The counters live in this process's memory: with ``[server] workers = N`` each worker
keeps its own, so a guesser gets at most N times the attempts. Entries are dropped once
their lock and window have passed, and the table is bounded.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

MAX_LOCKOUT = 3600.0
WINDOW = 900.0  # failures older than this (with no lock running) are forgotten
TRUST_TIME = 30 * 86400.0  # an address that logged in to an account stays trusted this long
MAX_ENTRIES = 100_000
ADDRESS_FACTOR = 4
ACCOUNT_FACTOR = 20
BUSY_WAIT = 1.0  # Retry-After while attempts in flight could reach a limit


@dataclass
class _Entry:
    failures: int = 0
    pending: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    lockouts: int = 0

    def idle(self, now: float) -> bool:
        return self.pending == 0 and self.locked_until <= now and now - self.last_failure > WINDOW


def address_key(address: str) -> str:
    """The address an attempt counts under: IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Attempt:
    """One user login: the keys it counts under, and the limit of each."""

    username: str
    address: str
    keys: tuple[tuple[str, int], ...] = field(default=())


class LoginThrottle:
    def __init__(self, max_failures: int, lockout: float) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._entries: dict[str, _Entry] = {}
        self._trusted: dict[tuple[str, str], float] = {}  # (user, address) -> until

    def attempt(self, username: str, address: str) -> Attempt:
        where = address_key(address)
        limit = self.max_failures
        keys = (
            (f"pair:{username}\0{where}", limit),
            (f"address:{where}", limit * ADDRESS_FACTOR),
            (f"account:{username}", limit * ACCOUNT_FACTOR),
        )
        return Attempt(username, where, keys)

    def begin(self, attempt: Attempt, now: float) -> float:
        """Seconds to wait before ``attempt`` may be made (then nothing is counted), or
        0: it is counted as in flight until ``finish``."""
        trusted = self._trusted.get((attempt.username, attempt.address), 0.0) > now
        wait = 0.0
        for key, limit in attempt.keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.locked_until <= now and now - entry.last_failure > WINDOW:
                entry.failures = 0
            if key.startswith("account:") and trusted:
                continue
            if entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
            elif entry.failures + entry.pending >= limit:
                wait = max(wait, BUSY_WAIT)
        if wait > 0:
            return wait
        for key, _ in attempt.keys:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES:
                    self._prune(now)
                entry = self._entries[key] = _Entry()
            entry.pending += 1
        return 0.0

    def finish(self, attempt: Attempt, now: float, succeeded: bool | None) -> None:
        """Settle an attempt ``begin`` let through: True (right password), False (wrong),
        None (not checked after all, e.g. the hashing pool was full)."""
        for key, limit in attempt.keys:
            entry = self._entries.get(key)
            if entry is None:  # pruned meanwhile
                continue
            entry.pending = max(entry.pending - 1, 0)
            if succeeded is False:
                entry.failures += 1
                entry.last_failure = now
                if entry.failures >= limit:
                    entry.locked_until = now + min(self.lockout * 2**entry.lockouts, MAX_LOCKOUT)
                    entry.lockouts += 1
                    entry.failures = 0
            elif succeeded and key.startswith("pair:"):
                entry.failures = 0
                entry.lockouts = 0
            if entry.idle(now) and entry.lockouts == 0:
                del self._entries[key]
        if succeeded:
            if len(self._trusted) >= MAX_ENTRIES:
                self._trusted = {k: v for k, v in self._trusted.items() if v > now}
                if len(self._trusted) >= MAX_ENTRIES:
                    self._trusted.clear()
            self._trusted[(attempt.username, attempt.address)] = now + TRUST_TIME

    def _prune(self, now: float) -> None:
        stale = [k for k, e in self._entries.items() if e.idle(now)]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= MAX_ENTRIES:  # still full: forget the oldest half
            oldest = sorted(
                (k for k, e in self._entries.items() if e.pending == 0),
                key=lambda k: self._entries[k].last_failure,
            )
            for key in oldest[: len(oldest) // 2]:
                del self._entries[key]
