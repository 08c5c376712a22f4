"""Brute-force slowdown for user logins, and who it may lock out.

An attempt is counted *before* its password is checked (``begin``) and settled after
(``finish``): parallel attempts see each other, so N concurrent guesses cannot all pass a
check made before any of them failed.

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

Where the counts live: failures, locks and trusted addresses in SQLite
(``metadata/logins.py``), so every worker process and a restarted daemon see the same;
each failure is one small write transaction. Attempts in flight are counted in this
process's memory (``begin`` reserves before it reads, both on the event loop), so
parallel guesses are exact within a worker; across ``N`` workers, at most ``N`` times a
limit can be in flight at once, and every failure still counts for all.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from regd.metadata import logins
from regd.metadata.db import Database

MAX_LOCKOUT = 3600.0
WINDOW = 900.0  # failures older than this (with no lock running) are forgotten
TRUST_TIME = 30 * 86400.0  # an address that logged in to an account stays trusted this long
PRUNE_EVERY = 256  # failures recorded by this process between two prunes
ADDRESS_FACTOR = 4
ACCOUNT_FACTOR = 20
BUSY_WAIT = 1.0  # Retry-After while attempts in flight could reach a limit


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


@dataclass
class Attempt:
    """One user login: the keys it counts under with the limit of each; ``trusted_until``
    is read by ``begin``."""

    username: str
    address: str
    keys: tuple[tuple[str, int], ...] = field(default=())
    trusted_until: float = 0.0
    failed_before: bool = False  # the pair had failures when ``begin`` read it


class LoginThrottle:
    def __init__(self, db: Database, max_failures: int, lockout: float) -> None:
        self.db = db
        self.max_failures = max_failures
        self.lockout = lockout
        self._pending: Counter[str] = Counter()  # attempts of this process being checked
        self._failures_seen = 0

    def attempt(self, username: str, address: str) -> Attempt:
        where = address_key(address)
        limit = self.max_failures
        keys = (
            (f"pair:{username}\0{where}", limit),
            (f"address:{where}", limit * ADDRESS_FACTOR),
            (f"account:{username}", limit * ACCOUNT_FACTOR),
        )
        return Attempt(username, where, keys)

    async def begin(self, attempt: Attempt, now: float) -> float:
        """Seconds to wait before ``attempt`` may be made (then nothing is counted), or
        0: it is counted as in flight until ``finish``."""
        for key, _ in attempt.keys:  # reserved first: no await between check and count
            self._pending[key] += 1
        try:
            entries, attempt.trusted_until = await logins.read(
                self.db, [k for k, _ in attempt.keys], attempt.username, attempt.address
            )
        except BaseException:
            self._release(attempt)
            raise
        attempt.failed_before = attempt.keys[0][0] in entries
        wait = 0.0
        for key, limit in attempt.keys:
            entry = entries.get(key)
            if entry is None or (key.startswith("account:") and attempt.trusted_until > now):
                failures = 0
            elif entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
                continue
            else:
                failures = 0 if now - entry.last_failure > WINDOW else entry.failures
            if failures + self._pending[key] > limit:  # this attempt is among the pending
                wait = max(wait, BUSY_WAIT)
        if wait > 0:
            self._release(attempt)
        return wait

    async def finish(self, attempt: Attempt, now: float, succeeded: bool | None) -> None:
        """Settle an attempt ``begin`` let through: True (right password), False (wrong),
        None (not checked after all, e.g. the hashing pool was full)."""
        self._release(attempt)
        if succeeded is None:
            return
        # Shielded: a client that leaves must not take its failure's count with it.
        await asyncio.shield(self._settle(attempt, now, succeeded))

    async def _settle(self, attempt: Attempt, now: float, succeeded: bool) -> None:
        if succeeded:
            # Usually nothing to write: a client sending Basic credentials with every
            # request must not cost a write transaction each time.
            renew = attempt.trusted_until < now + TRUST_TIME / 2
            if attempt.failed_before or renew:
                async with self.db.transaction(bump=False) as conn:
                    if attempt.failed_before:
                        await logins.clear(conn, attempt.keys[0][0])
                    if renew:
                        await logins.trust(conn, attempt.username, attempt.address, now + TRUST_TIME)
            return
        async with self.db.transaction(bump=False) as conn:
            for key, limit in attempt.keys:
                entry = await logins.get(conn, key) or logins.Failures()
                if entry.locked_until <= now and now - entry.last_failure > WINDOW:
                    entry.failures = 0
                entry.failures += 1
                entry.last_failure = now
                if entry.failures >= limit:
                    entry.locked_until = now + min(self.lockout * 2**entry.lockouts, MAX_LOCKOUT)
                    entry.lockouts += 1
                    entry.failures = 0
                await logins.put(conn, key, entry)
            self._failures_seen += 1
            if self._failures_seen % PRUNE_EVERY == 0:
                await logins.prune(conn, now, WINDOW, MAX_LOCKOUT)

    def _release(self, attempt: Attempt) -> None:
        for key, _ in attempt.keys:
            self._pending[key] -= 1
            if self._pending[key] <= 0:
                del self._pending[key]
