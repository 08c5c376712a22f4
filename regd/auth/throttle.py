"""Brute-force slowdown: after ``max_failures`` failed logins for one account (keys
``account:<name>``), or four times as many from one address (``address:<ip>``: several
users may share one behind a NAT), further attempts for it are refused for ``lockout``
seconds (doubling with each further lockout, up to an hour), without checking the
password at all.

The counters live in this process's memory: with several workers each keeps its own, so
an attacker gets at most ``workers`` times the attempts. Entries are dropped once their
lock and window have passed, and the table is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_LOCKOUT = 3600.0
WINDOW = 900.0  # failures older than this (with no lock running) are forgotten
MAX_ENTRIES = 100_000
ADDRESS_FACTOR = 4


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    def __init__(self, max_failures: int, lockout: float) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._entries: dict[str, _Entry] = {}

    def wait(self, keys: Iterable[str], now: float) -> float:
        """Seconds until ``keys`` may try again (0: now)."""
        longest = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                longest = max(longest, entry.locked_until - now)
        return longest

    def failed(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES:
                    self._prune(now)
                entry = self._entries.setdefault(key, _Entry())
            elif now - entry.last_failure > WINDOW and entry.locked_until <= now:
                entry.failures = 0
            entry.failures += 1
            entry.last_failure = now
            limit = self.max_failures * (ADDRESS_FACTOR if key.startswith("address:") else 1)
            if entry.failures >= limit:
                entry.locked_until = now + min(self.lockout * 2**entry.lockouts, MAX_LOCKOUT)
                entry.lockouts += 1
                entry.failures = 0

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def _prune(self, now: float) -> None:
        stale = [
            k for k, e in self._entries.items() if e.locked_until <= now and now - e.last_failure > WINDOW
        ]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= MAX_ENTRIES:  # still full: forget the oldest half
            oldest = sorted(self._entries, key=lambda k: self._entries[k].last_failure)
            for key in oldest[: len(oldest) // 2]:
                del self._entries[key]
