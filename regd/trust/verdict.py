"""The outcome of verifying one signature: verified or not, and why."""

from __future__ import annotations

from dataclasses import dataclass


class VerificationError(Exception):
    """Why a signature does not verify (the text goes to the 412's detail and the API)."""


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str = ""
    # A verified signature stops counting at this time (notation's io.cncf.notary.expiry).
    expires_at: float | None = None
    # False when the verdict came from a passing condition (a blob not readable now):
    # then it is not cached.
    final: bool = True

    def holds(self, now: float) -> bool:
        return self.verified and (self.expires_at is None or now < self.expires_at)

    def reason_at(self, now: float) -> str:
        return "the signature has expired" if self.verified and not self.holds(now) else self.reason


VERIFIED = Verdict(True)
