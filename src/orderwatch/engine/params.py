"""Which parameters a rule runs with for one subject at one moment: overrides and calendars.

One threshold per rule does not fit a real shop (an economy carrier scans every two days, a
pre-sale channel ships in 15 days, during 双11 every carrier is slower, a warehouse works
9:00-18:00). A rule file may therefore carry ``overrides`` matched on the subject's own fields
(``carrier``, ``channel``, ``warehouse_id``, ...) and the named ``period`` its measured interval
starts in; ``rules/calendars.yaml`` names promotion periods that slow the clock of timeout rules
down and working-hour schedules that stop it outside working time.

Everything here is pure and deterministic: the same facts and times give the same parameters and
deadlines in the live worker and in replay (time zones come from ``zoneinfo``; no wall clock).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from orderwatch.engine.catalog import Rule

#: The fields an order keeps for overrides to match, in the order of ``OrderShard.facts``.
#: Set from the order's own events: ``channel`` and ``source`` from ``order.created``; ``country``,
#: ``province``, ``city`` from its current shipping address; ``carrier`` from its latest logistics
#: event; ``warehouse_id`` from its first inventory reservation; ``method`` from its first
#: succeeded payment.
ORDER_FACTS: tuple[str, ...] = (
    "channel",
    "source",
    "country",
    "province",
    "city",
    "carrier",
    "warehouse_id",
    "method",
)
FACT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ORDER_FACTS)}
#: The pseudo-field naming a calendar period (matched at the start of the measured interval).
PERIOD = "period"
NO_FACTS: tuple[str | None, ...] = (None,) * len(ORDER_FACTS)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
INF = float("inf")


@dataclass(frozen=True, slots=True)
class Period:
    """A named span of time, ``[start, end)`` in epoch seconds (from local dates and a zone).

    ``scale`` maps timeout rule ids to a factor: inside the period each second counts as
    ``1 / factor`` of a second toward that rule's threshold (2: thresholds take twice as long).
    """

    name: str
    start: float
    end: float
    scale: tuple[tuple[str, float], ...] = ()

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    def factor(self, rule_id: str) -> float | None:
        for rid, f in self.scale:
            if rid == rule_id:
                return f
        return None


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """A weekly schedule in a time zone, with holidays and extra working days (调休).

    ``hours`` are ``(start, end)`` seconds after local midnight, each within one day.
    """

    name: str
    time_zone: str
    days: frozenset[int]
    hours: tuple[tuple[int, int], ...]
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def works_on(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day in self.workdays or day.weekday() in self.days

    def intervals(self, day: date) -> tuple[tuple[float, float], ...]:
        """The working intervals of one local date as epoch seconds (DST-correct)."""
        return _intervals(self, day)

    def at(self, t: float) -> tuple[bool, float]:
        """Whether ``t`` is working time, and when that next changes (``INF``: never)."""
        tz = ZoneInfo(self.time_zone)
        day = datetime.fromtimestamp(t, tz).date()
        for offset in range(0, 400):
            d = day + timedelta(days=offset)
            for a, b in self.intervals(d):
                if offset == 0 and a <= t < b:
                    return True, b
                if a > t:
                    return False, a
        return False, INF


@functools.lru_cache(maxsize=4096)
def _intervals(wh: WorkingHours, day: date) -> tuple[tuple[float, float], ...]:
    if not wh.works_on(day):
        return ()
    tz = ZoneInfo(wh.time_zone)
    out = []
    for a, b in wh.hours:
        start = _local(day, a, tz)
        end = _local(day, b, tz)
        if end > start:
            out.append((start, end))
    return tuple(out)


def _local(day: date, seconds: int, tz: ZoneInfo) -> float:
    """Epoch seconds of ``day`` + ``seconds`` on the local wall clock (24:00 = next midnight)."""
    extra, seconds = divmod(seconds, 86400)
    d = day + timedelta(days=extra)
    wall = datetime.combine(d, time(seconds // 3600, seconds % 3600 // 60, seconds % 60), tz)
    return wall.timestamp()


def local_midnight(day: date, time_zone: str) -> float:
    return _local(day, 0, ZoneInfo(time_zone))


def advance(
    start: float,
    seconds: float,
    hours: WorkingHours | None,
    scales: tuple[tuple[float, float, float], ...],
) -> float:
    """When ``seconds`` of counted time have passed since ``start``.

    Time counts at rate 1, at ``1 / factor`` inside a scaling period ``(start, end, factor)``, and
    not at all outside the working hours when a schedule is given. Piecewise: each step runs to
    the next boundary of a period or a working interval.
    """
    t, remaining = start, seconds
    for _ in range(100_000):
        if remaining <= 0:
            return t
        rate, until = 1.0, INF
        if hours is not None:
            working, boundary = hours.at(t)
            if not working:
                if boundary == INF:
                    return INF
                t = boundary
                continue
            until = boundary
        for a, b, factor in scales:
            if a <= t < b:
                rate /= factor
                until = min(until, b)
            elif t < a:
                until = min(until, a)
        span = (until - t) * rate
        if span >= remaining:
            return t + remaining / rate
        remaining -= span
        t = until
    return INF


@dataclass(frozen=True, slots=True)
class Override:
    """One ``overrides:`` entry of a rule file, validated.

    ``when`` maps a field to the values it matches (any of them). ``params`` is the rule's whole
    parameter model with this entry's values applied; the other attributes are None when the
    entry leaves them as the rule has them (``escalate_after`` uses ``KEEP`` for that, since None
    means "never").
    """

    when: tuple[tuple[str, frozenset[str]], ...]
    label: str
    line: int | None
    params: Any = None
    severity: str | None = None
    owner: str | None = None
    escalate_after: Any = None
    working_hours: WorkingHours | None = None

    @property
    def specificity(self) -> int:
        return len(self.when)

    def matches(self, facts: Facts, periods: frozenset[str]) -> bool:
        for name, values in self.when:
            if name == PERIOD:
                if not (periods & values):
                    return False
            elif facts.get(name) not in values:
                return False
        return True


#: ``Override.escalate_after`` when the entry does not set it
KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Tuning:
    """What a rule file adds beyond its base values: overrides and calendar references."""

    overrides: tuple[Override, ...] = ()
    working_hours: WorkingHours | None = None
    #: every period of the calendar (``period`` matches and time scaling)
    periods: tuple[Period, ...] = ()

    #: no overrides, no working hours, no scaling period: the rule's base values everywhere
    #: (computed once: asked on every raise and every deadline)
    trivial: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        plain = not self.overrides and self.working_hours is None and not self.scales
        object.__setattr__(self, "trivial", plain)

    @property
    def scales(self) -> tuple[Period, ...]:
        return tuple(p for p in self.periods if p.scale)


NO_TUNING = Tuning()


@dataclass(frozen=True, slots=True)
class Facts:
    """The match fields of one subject (an order's ``facts`` tuple, or a stock key's parts)."""

    fields: tuple[str | None, ...] = NO_FACTS
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        i = FACT_INDEX.get(key)
        if i is not None and i < len(self.fields) and self.fields[i] is not None:
            return self.fields[i]
        for k, v in self.extra:
            if k == key:
                return v
        return None


def active_periods(periods: tuple[Period, ...], at: float) -> frozenset[str]:
    return frozenset(p.name for p in periods if p.contains(at))


def resolve(rule: Rule, facts: Facts, periods: frozenset[str]) -> Rule:
    """The rule as it applies to a subject with these facts in these periods.

    Most specific match wins (the most fields in ``when``); ``rules check`` refuses rule files
    where two equally specific overrides can match one subject without a more specific one to
    decide, so file order never decides. The result's ``applied`` names what was used, for the
    exception's evidence (the working hours and calendar periods are added by the engine,
    which knows the interval they were counted over).
    """
    tuning: Tuning = rule.tuning
    best: Override | None = None
    for o in tuning.overrides:
        if (best is None or o.specificity > best.specificity) and o.matches(facts, periods):
            best = o
    if best is None:
        return rule
    return with_override(rule, best)


def as_raised(rule: Rule, values: Mapping[str, Any]) -> Rule:
    """The rule for the later events of an exception raised with these evidence ``values``.

    The override it was raised with (named in ``values["override"]``) keeps applying while the
    rule set has one of that name or condition, so an exception's severity and owner do not
    change because its order changed carrier; else the rule's base values. Needs no shard: an
    open exception carries its evidence.
    """
    label = values.get("override")
    if label is not None:
        for o in rule.tuning.overrides:
            if o.label == label:
                return with_override(rule, o)
    return rule


def with_override(rule: Rule, best: Override) -> Rule:
    """The rule with one override's values applied."""
    return replace(
        rule,
        params=best.params if best.params is not None else rule.params,
        severity=best.severity or rule.severity,  # type: ignore[arg-type]
        owner=best.owner or rule.owner,  # type: ignore[arg-type]
        escalate_after=rule.escalate_after if best.escalate_after == KEEP else best.escalate_after,
        hours=best.working_hours or rule.hours,
        applied=(("override", best.label),),
    )


def scales_for(rule_id: str, periods: tuple[Period, ...]) -> tuple[tuple[float, float, float], ...]:
    out = []
    for p in periods:
        f = p.factor(rule_id)
        if f is not None:
            out.append((p.start, p.end, f))
    return tuple(out)


def calendar_names(rule_id: str, periods: tuple[Period, ...], start: float, end: float) -> str:
    """The scaling periods that overlap ``[start, end]``, as evidence reads them."""
    return ", ".join(
        f"{p.name} x{p.factor(rule_id):g}"
        for p in periods
        if p.factor(rule_id) is not None and p.start < end and p.end > start
    )


WEEKDAYS = _WEEKDAYS
