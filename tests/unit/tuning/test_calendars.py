"""Rule book: calendar periods and working hours, on the detector's clock (event time in replay).

Times are exact: a timeout fires when the clock passes its deadline, so each case checks the
tick before the deadline, the deadline itself (nothing yet) and the tick after.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from orderwatch.engine.params import WorkingHours, advance
from tests.factories import created, logistics, paid, plus, run, status
from tests.unit.tuning.books import rules_dir

STALE = "logistics.tracking_stale"
NOT_SHIPPED = "logistics.not_shipped"
#: 2026-11-10 00:00 in Shanghai (UTC+8), and the end of 2026-11-20 there
D11_START = "2026-11-09T16:00:00Z"
D11_END = "2026-11-20T16:00:00Z"

CALENDAR = """
periods:
  double11:
    start: 2026-11-10
    end: 2026-11-20
    time_zone: Asia/Shanghai
    scale:
      logistics.tracking_stale: 2
working_hours:
  berlin:
    time_zone: Europe/Berlin
    days: [mon, tue, wed, thu, fri]
    hours: ["09:00-18:00"]
  shanghai:
    time_zone: Asia/Shanghai
    days: [mon, tue, wed, thu, fri]
    hours: ["09:00-12:00", "13:00-18:00"]
    holidays: [2026-10-01]
    workdays: [2026-10-10]
"""

EDITS = {
    NOT_SHIPPED: {
        "params": {"threshold": "48h"},
        "overrides": [
            {"when": {"period": "double11", "channel": "mall"}, "params": {"threshold": "120h"}},
            {
                "when": {"channel": "berlin-shop"},
                "working_hours": "berlin",
                "params": {"threshold": "2h"},
            },
            {
                "when": {"channel": "cn-shop"},
                "working_hours": "shanghai",
                "params": {"threshold": "4h"},
            },
        ],
    }
}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rules_dir(tmp_path_factory.mktemp("calendars"), EDITS, CALENDAR)


def _fires_at(events: list[dict[str, object]], rule: str, due: str, rules: Path) -> list[object]:
    """Nothing one second before ``due`` nor at it; raised one second after, at ``due``."""
    assert run(events, until=plus(due, seconds=-1), rules_dir=rules).of(rule) == []
    assert run(events, until=due, rules_dir=rules).of(rule) == [], "fires only once passed"
    raised = run(events, until=plus(due, seconds=1), rules_dir=rules).of(rule)
    assert [r.event_time for r in raised] == [datetime.fromisoformat(due)]
    return list(raised)


def _shipped_at(at: str) -> list[dict[str, object]]:
    return [
        created("O1", plus(at, days=-1)),
        paid("O1", plus(at, days=-1)),
        status("O1", "paid", plus(at, days=-1)),
        logistics("shipped", "O1", at),
    ]


@pytest.mark.parametrize(
    ("shipped", "due"),
    [
        # all 72h before the period: untouched (due exactly at its start)
        (plus(D11_START, hours=-72), D11_START),
        # 24h counted before, the other 48h at half speed inside
        (plus(D11_START, hours=-24), plus(D11_START, hours=96)),
        # the tick before the start, at it, and after it
        (plus(D11_START, seconds=-1), plus(D11_START, hours=144, seconds=-2)),
        (D11_START, plus(D11_START, hours=144)),
        (plus(D11_START, seconds=1), plus(D11_START, hours=144, seconds=1)),
        # 10 h before the end: 5 h counted inside, 67 h after
        (plus(D11_END, hours=-10), plus(D11_END, hours=67)),
        (D11_END, plus(D11_END, hours=72)),
    ],
)
def test_a_period_slows_the_threshold_down(rules: Path, shipped: str, due: str) -> None:
    [raised] = _fires_at(_shipped_at(shipped), STALE, due, rules)
    inside = datetime.fromisoformat(shipped) < datetime.fromisoformat(D11_END) and (
        datetime.fromisoformat(due) > datetime.fromisoformat(D11_START)
    )
    assert ("calendar" in raised.evidence.values) == inside  # type: ignore[attr-defined]
    if inside:
        assert raised.evidence.values["calendar"] == "double11 x2"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("paid_at", "hours", "override"),
    [
        (plus(D11_START, seconds=-1), 48, None),
        (D11_START, 120, "channel=mall, period=double11"),
        (plus(D11_END, seconds=-1), 120, "channel=mall, period=double11"),
        (D11_END, 48, None),
    ],
)
def test_a_period_override_is_judged_when_the_interval_starts(
    rules: Path, paid_at: str, hours: int, override: str | None
) -> None:
    events = [created("O1", plus(paid_at, hours=-1), channel="mall"), paid("O1", paid_at)]
    [raised] = _fires_at(events, NOT_SHIPPED, plus(paid_at, hours=hours), rules)
    assert raised.evidence.values.get("override") == override  # type: ignore[attr-defined]


def test_working_hours_across_a_weekend_and_a_clock_change(rules: Path) -> None:
    """Berlin leaves summer time on Sunday 2026-10-25. Paid Friday 17:00 CEST (15:00Z) with two
    working hours to ship: one hour on Friday, the other on Monday 09:00-10:00 CET (08:00Z)."""
    events = [
        created("O1", "2026-10-23T14:00:00Z", channel="berlin-shop"),
        paid("O1", "2026-10-23T15:00:00Z"),
    ]
    [raised] = _fires_at(events, NOT_SHIPPED, "2026-10-26T09:00:00Z", rules)
    assert raised.evidence.values["working_hours"] == "berlin"  # type: ignore[attr-defined]
    assert raised.evidence.values["threshold"] == "2h"  # type: ignore[attr-defined]


def test_paid_at_night_counts_from_the_next_morning(rules: Path) -> None:
    """Shanghai: paid Tuesday 03:00, four working hours: 09:00-12:00, then 13:00-14:00."""
    events = [
        created("O1", "2026-10-19T18:00:00Z", channel="cn-shop"),
        paid("O1", "2026-10-19T19:00:00Z"),  # Tue 03:00 +08:00
    ]
    _fires_at(events, NOT_SHIPPED, "2026-10-20T06:00:00Z", rules)  # Tue 14:00 +08:00


def test_holidays_and_extra_workdays() -> None:
    """National Day (Thu 2026-10-01) is off; Saturday 2026-10-10 is worked (调休)."""
    hours = WorkingHours(
        "shanghai",
        "Asia/Shanghai",
        frozenset(range(5)),
        ((9 * 3600, 18 * 3600),),
        frozenset({date(2026, 10, 1)}),
        frozenset({date(2026, 10, 10)}),
    )

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    # Wed 17:00 local, 2h: 1h on Wednesday, Thursday off, 1h on Friday morning
    due = advance(at("2026-09-30T17:00:00+08:00"), 7200, hours, ())
    assert datetime.fromtimestamp(due, UTC) == datetime.fromisoformat("2026-10-02T02:00:00+00:00")
    # Fri 17:00 local, 2h: 1h on Friday, 1h on the worked Saturday
    due = advance(at("2026-10-09T17:00:00+08:00"), 7200, hours, ())
    assert datetime.fromtimestamp(due, UTC) == datetime.fromisoformat("2026-10-10T02:00:00+00:00")


def test_no_calendar_no_change() -> None:
    """The shipped rules name no period scale and no working hours: 72h stays 72h."""
    shipped = D11_START
    [raised] = run(_shipped_at(shipped), until=plus(shipped, hours=72, seconds=1)).of(STALE)
    assert raised.event_time == datetime.fromisoformat(plus(shipped, hours=72))
    assert "calendar" not in raised.evidence.values


def test_working_hours_for_the_whole_rule_and_a_period_on_an_order_rule(tmp_path: Path) -> None:
    """``working_hours`` at the top of a rule file applies to every order; a ``period`` override
    of a rule judged on an event (abnormal quantity) is judged at the event's time."""
    folder = rules_dir(
        tmp_path,
        {
            NOT_SHIPPED: {"working_hours": "shanghai", "params": {"threshold": "4h"}},
            "fraud.abnormal_quantity": {
                "overrides": [{"when": {"period": "double11"}, "params": {"max_quantity": 50}}]
            },
        },
        CALENDAR,
    )
    events = [created("O1", "2026-10-19T18:00:00Z"), paid("O1", "2026-10-19T19:00:00Z")]
    [raised] = _fires_at(events, NOT_SHIPPED, "2026-10-20T06:00:00Z", folder)
    assert raised.evidence.values["working_hours"] == "shanghai"  # type: ignore[attr-defined]
    assert "override" not in raised.evidence.values  # type: ignore[attr-defined]

    def big(order: str, at: str) -> dict[str, object]:
        items = [{"sku": "SKU-1", "quantity": 30, "unit_price": "1.00"}]
        return created(order, at, items=items, total="30.00")

    result = run(
        [big("IN", plus(D11_START, seconds=1)), big("OUT", plus(D11_START, seconds=-1))],
        rules_dir=folder,
    )
    assert [e.order_id for e in result.of("fraud.abnormal_quantity")] == ["OUT"]
