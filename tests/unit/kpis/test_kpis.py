"""KPI records (CONTRACT section 11): per UTC hour of event time, numerator and denominator per
method, warehouse and carrier, published when the clock passes the hour's end."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import orjson

from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    created,
    logistics,
    paid,
    payment_failed,
    plus,
    reserved,
    status,
    to_jsonl,
    ts,
)


def kpis(events: list[dict[str, Any]], until: str | None = None) -> list[dict[str, Any]]:
    out, err, records = io.BytesIO(), io.StringIO(), io.BytesIO()
    until_at = datetime.fromisoformat(ts(until)) if until else None
    replay(
        io.BytesIO(to_jsonl(events)).readlines(),
        Engine(load_catalog()),
        out,
        err,
        until_at,
        kpis=records,
    )
    assert err.getvalue() == ""
    return [orjson.loads(x) for x in records.getvalue().splitlines()]


def test_payment_success_rate_per_method_by_the_first_events_hour() -> None:
    events = [
        paid("O1", "10:05", payment_id="A", method="alipay"),
        paid("O1", "10:06", payment_id="A", method="alipay"),  # a re-callback: one payment
        payment_failed("O2", "10:10", payment_id="B"),
        payment_failed("O3", "10:59:59", payment_id="C"),
        paid("O3", "11:00:30", payment_id="C", method="wechat"),  # counted in 10:00
        paid("O2", "11:02", payment_id="B", method="alipay"),  # after 10:00 was published
        paid("O4", "11:30", payment_id="D"),
    ]
    records = kpis(events, until="12:02")
    pay = [
        (r["window_start"][11:16], r["method"], r["numerator"], r["denominator"])
        for r in records
        if r["kpi"] == "payment_success_rate"
    ]
    # a payment.failed carries no method (section 1): B is "unknown"; C takes the method of
    # its first event that has one (its success), in the hour of its first event (the failure)
    assert pay == [
        ("10:00", "alipay", 1, 1),
        ("10:00", "unknown", 0, 1),
        ("10:00", "wechat", 1, 1),
        ("11:00", "unknown", 1, 1),
    ]
    assert set(records[0]) == {
        "kpi",
        "window_start",
        "window_end",
        "method",
        "numerator",
        "denominator",
    }


def test_an_hour_is_published_once_the_clock_passes_its_end() -> None:
    events = [paid("O1", "10:05", payment_id="A")]
    assert kpis(events, until="11:00:30") == []
    assert len(kpis(events, until="11:01:01")) == 1


def _shipped_order(oid: str, paid_at: str, ship_after_h: float, wh: str) -> list[dict[str, Any]]:
    return [
        created(oid, paid_at),
        paid(oid, paid_at, payment_id=f"P-{oid}"),
        status(oid, "paid", paid_at),
        reserved(oid, plus(paid_at, minutes=1), warehouse_id=wh),
        logistics("shipped", oid, plus(paid_at, hours=ship_after_h)),
    ]


def test_on_time_shipment_per_warehouse_in_the_deadlines_hour() -> None:
    events = (
        _shipped_order("O1", "10:10", 20, "WH-A")  # deadline 11-22 10:10, shipped in time
        + _shipped_order("O2", "10:20", 50, "WH-A")  # shipped after the 48 h deadline
        + _shipped_order("O3", "10:30", 1, "WH-B")
    )
    records = kpis(sorted(events, key=lambda e: e["occurred_at"]), until="2026-11-23T00:00:00Z")
    ship = [r for r in records if r["kpi"] == "on_time_shipment_rate"]
    assert [
        (r["window_start"], r["warehouse_id"], r["numerator"], r["denominator"]) for r in ship
    ] == [
        ("2026-11-22T10:00:00Z", "WH-A", 1, 2),
        ("2026-11-22T10:00:00Z", "WH-B", 1, 1),
    ]


def test_on_time_delivery_per_carrier_only_with_a_promise() -> None:
    promise = "2026-11-22T12:00:00Z"
    on_time = [
        created("O1", "10:00", promised_delivery_by=promise),
        logistics("shipped", "O1", "11:00", carrier="SF"),
        logistics("delivered", "O1", "2026-11-22T11:00:00Z", carrier="SF"),
    ]
    late = [
        created("O2", "10:00", promised_delivery_by=promise),
        logistics("shipped", "O2", "11:00", carrier="SF"),
    ]
    no_promise = [created("O3", "10:00"), logistics("shipped", "O3", "11:00", carrier="SF")]
    events = sorted(on_time + late + no_promise, key=lambda e: e["occurred_at"])
    records = kpis(events, until="2026-11-22T13:05:00Z")
    deliv = [r for r in records if r["kpi"] == "on_time_delivery_rate"]
    assert [(r["window_start"], r["carrier"], r["numerator"], r["denominator"]) for r in deliv] == [
        ("2026-11-22T12:00:00Z", "SF", 1, 2)
    ]
