"""Harbor's 6-field cron and schedule types (regd.cron): pure unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from regd.cron import Cron, CronError, cron_for


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "cron, now, expected",
    [
        ("0 0 * * * *", "2026-11-27T07:04:35", "2026-11-27T08:00:00"),
        ("0 0 0 * * *", "2026-11-27T07:04:35", "2026-11-28T00:00:00"),
        ("0 0 0 * * 0", "2026-11-27T07:04:35", "2026-11-29T00:00:00"),  # next Sunday
        ("0 0 0 * * 7", "2026-11-27T07:04:35", "2026-11-29T00:00:00"),  # 7 is Sunday too
        ("0 30 2 * * MON-FRI", "2026-11-27T02:30:00", "2026-11-30T02:30:00"),  # strictly after
        ("0 */15 * * * *", "2026-11-27T07:04:35", "2026-11-27T07:15:00"),
        ("0 0 12 1 JAN ?", "2026-11-27T07:04:35", "2027-01-01T12:00:00"),
        ("0 0 0 29 2 *", "2026-11-27T07:04:35", "2028-02-29T00:00:00"),
        ("0 0 0 13 * 5", "2026-11-27T07:04:35", "2026-12-04T00:00:00"),  # day 13 OR a Friday
        ("0 5,10 1-3/2 * * *", "2026-11-27T01:07:00", "2026-11-27T01:10:00"),
    ],
)
def test_next_after(cron: str, now: str, expected: str) -> None:
    assert Cron.parse(cron).next_after(at(now)) == at(expected)


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 * * *",
        "30 0 0 * * *",
        "0 60 * * * *",
        "0 0 0 32 * *",
        "0 0 0 * 13 *",
        "0 */0 * * * *",
        "0 5-1 * * * *",
    ],
)
def test_invalid_crons_are_refused(cron: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(cron)


def test_schedule_types_map_to_crons() -> None:
    assert cron_for("Hourly", None) == "0 0 * * * *"
    assert cron_for("Daily", "") == "0 0 0 * * *"
    assert cron_for("Weekly", None) == "0 0 0 * * 0"
    assert cron_for("Custom", "0  0 3 * * *") == "0 0 3 * * *"
    assert cron_for("None", "ignored") == ""
    with pytest.raises(CronError):
        cron_for("Custom", "")
    with pytest.raises(CronError):
        cron_for("Fortnightly", None)
