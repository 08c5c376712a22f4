"""Numbers from the outside world: ids, page numbers, sizes in paths, queries and headers.

``str.isdigit()`` accepts ``²`` and ``٢`` (which ``int()`` then rejects, or reads as 2),
and ``int()`` takes any length: a 26-digit page number overflows SQLite. Every number a
client sends is read here instead: ASCII digits only, at most ``maximum``; anything else
is ``None``, which the caller turns into its 400.
"""

from __future__ import annotations

# SQLite's INTEGER is a signed 64-bit value.
MAX_INT64 = 2**63 - 1
_DIGITS = frozenset("0123456789")


def parse_uint(text: str | None, maximum: int = MAX_INT64, minimum: int = 0) -> int | None:
    """``text`` as an integer of ASCII digits within [minimum, maximum], else None."""
    if not text or len(text) > 20 or not _DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None
