"""Harbor's schedules: a 6-field cron (seconds first, and the seconds field must be 0,
as Harbor's ``ValidateCronString`` demands) or one of Hourly, Daily, Weekly, None.

    second minute hour day-of-month month day-of-week        (UTC)

Each field takes ``*`` or ``?``, numbers, ranges ``a-b``, steps ``*/n`` ``a-b/n`` ``a/n``,
lists ``a,b``, month names JAN-DEC and weekday names SUN-SAT (0 and 7 are Sunday). As in
robfig/cron (Harbor's scheduler): when both day fields are restricted, a day matching
either one fires; when one is ``*``, only the other counts.

Written here rather than taken from a library: the grammar is one page, and this keeps
Harbor's exact rules (six fields, seconds 0) without a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from regd.numbers import parse_uint

# Harbor's preset types and the crons it stores for them.
PRESETS: dict[str, str] = {
    "Hourly": "0 0 * * * *",
    "Daily": "0 0 0 * * *",
    "Weekly": "0 0 0 * * 0",
}
# Harbor's periodic schedule types, in the order the pages offer them ("Manual" is "run now").
SCHEDULE_TYPES = ("None", *PRESETS, "Custom")

_BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_NAMES = [
    {},
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
]
_SEARCH_DAYS = 366 * 5  # Feb 29 on a given weekday can be years away; give up after 5


class CronError(ValueError):
    pass


def _value(text: str, field: int) -> int:
    named = _NAMES[field].get(text.upper())
    if named is not None:
        return named
    value = parse_uint(text)
    if value is None:
        raise CronError(f"invalid value {text!r}")
    low, high = _BOUNDS[field]
    if not low <= value <= high:
        raise CronError(f"value {value} out of range {low}-{high}")
    return value


def _field(text: str, field: int) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is unrestricted (``*``/``?``)."""
    low, high = _BOUNDS[field]
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            parsed = parse_uint(step_text, minimum=1)
            if parsed is None:
                raise CronError(f"invalid step in {part!r}")
            step = parsed
        if spec in ("*", "?"):
            first, last = low, high
        elif "-" in spec:
            a, _, b = spec.partition("-")
            first, last = _value(a, field), _value(b, field)
            if first > last:
                raise CronError(f"invalid range {spec!r}")
        else:
            first = _value(spec, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    if field == 5 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values), text in ("*", "?")


@dataclass(frozen=True)
class Cron:
    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_any: bool
    weekdays_any: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """A Harbor cron, or CronError saying what is wrong with it."""
        fields = text.split()
        if len(fields) != 6:
            raise CronError(f"cron {text!r} must have 6 fields (second minute hour day month weekday)")
        if fields[0] != "0":
            raise CronError(f"cron {text!r}: the seconds field must be 0")
        try:
            parsed = [_field(f, i) for i, f in enumerate(fields)]
        except CronError as e:
            raise CronError(f"cron {text!r}: {e}") from None
        (sec, _), (minute, _), (hour, _), (day, day_any), (month, _), (weekday, weekday_any) = parsed
        return cls(
            " ".join(fields),
            tuple(sorted(sec)),
            tuple(sorted(minute)),
            tuple(sorted(hour)),
            day,
            month,
            weekday,
            day_any,
            weekday_any,
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays  # cron: 0 is Sunday
        if self.days_any or self.weekdays_any:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after ``moment`` (aware) that the cron fires, in UTC."""
        start = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        for second in self.seconds:
                            when = day.replace(hour=hour, minute=minute, second=second)
                            if when >= start:
                                return when
            day += timedelta(days=1)
        return None


def cron_for(type_: str, cron: str | None) -> str:
    """The cron a schedule of ``type_`` runs on, checked: the given one when there is one
    (Harbor's UI sends the preset's cron along), else the preset's. CronError for an
    unknown type or a bad cron; ``None`` has no cron ('')."""
    if type_ not in SCHEDULE_TYPES:
        expected = ", ".join(sorted(SCHEDULE_TYPES))
        raise CronError(f"unknown schedule type {type_!r}; expected one of {expected}")
    if type_ == "None":
        return ""
    text = cron or PRESETS.get(type_, "")
    if not text:
        raise CronError("a Custom schedule needs a cron")
    return Cron.parse(text).text
