"""A finished order is compacted (``engine.orders.compact``) and still decides like one that is not.

An order delivered, cancelled or closed with nothing open drops the fields no later input can
read. These tests hold the compacted engine against one whose ``compact`` does nothing, on the
same input: late and repeated events after the order finished (a late payment after a cancel, a
second payment, a refund, a status regression after delivery, a late address change, a carrier
event, a repeated creation...), in a table and as a property over random lives. Each compacted
order is also written and read back (JSON, as the store holds it) after every event, so what is
dropped is also what a restart would not find.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from unittest import mock

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.engine import Engine, orders
from orderwatch.engine.state import (
    FORMAT_VERSION,
    ORDER,
    OrderShard,
    Shard,
    shard_from_dict,
)
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    address,
    address_changed,
    created,
    logistics,
    paid,
    payment_failed,
    plus,
    refunded,
    reserved,
    status,
    to_jsonl,
)

BASE = "2026-11-20T08:00:00Z"
UNTIL = plus(BASE, days=20)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CATALOG = load_catalog()
_REAL_COMPACT = orders.compact

Event = dict[str, Any]


def _at(minutes: int) -> str:
    return plus(BASE, minutes=minutes)


def _slots(shard: Shard) -> Iterator[str]:
    for cls in type(shard).__mro__:
        yield from getattr(cls, "__slots__", ())


def _stored_and_read_back(s: OrderShard) -> None:
    """``compact``, then the shard as the store would give it back after a restart."""
    _REAL_COMPACT(s)
    if not orders.finished(s):
        return
    COMPACTED.append(s.key)
    fresh = shard_from_dict(orjson.loads(orjson.dumps(s.to_dict())))
    for name in _slots(s):
        setattr(s, name, getattr(fresh, name))


COMPACTED: list[str] = []


@contextmanager
def _compaction(kind: str) -> Iterator[None]:
    replacement = {"off": lambda s: None, "stored": _stored_and_read_back}.get(kind)
    if replacement is None:
        yield
        return
    with mock.patch.object(orders, "compact", replacement):
        yield


def _output(events: list[Event], kind: str) -> list[bytes]:
    """What ``orderwatch replay`` writes (exceptions, KPI records), compaction ``on``/``off``/
    ``stored`` (compacted, written and read back after each event)."""
    out, err, kpis = io.BytesIO(), io.StringIO(), io.BytesIO()
    with _compaction(kind):
        replay(
            io.BytesIO(to_jsonl(events)).readlines(),
            Engine(_CATALOG),
            out,
            err,
            datetime.fromisoformat(UNTIL),
            kpis=kpis,
        )
    assert err.getvalue() == ""
    return out.getvalue().splitlines() + kpis.getvalue().splitlines()


def _same_either_way(events: list[Event]) -> list[bytes]:
    kept = _output(events, "off")
    assert _output(events, "on") == kept
    assert _output(events, "stored") == kept
    return kept


# --- what compaction drops, and what it keeps ---------------------------------------------------


def _delivered_order() -> list[Event]:
    return [
        created("O1", _at(0)),
        paid("O1", _at(5)),
        status("O1", "paid", _at(6)),
        logistics("shipped", "O1", _at(60)),
        status("O1", "shipped", _at(61)),
        logistics("scanned", "O1", _at(120)),
        logistics("delivered", "O1", _at(600)),
        status("O1", "delivered", _at(601)),
    ]


def _engine_after(events: list[Event]) -> Engine:
    engine = Engine(_CATALOG)
    replay(
        io.BytesIO(to_jsonl(events)).readlines(),
        engine,
        io.BytesIO(),
        io.StringIO(),
        datetime.fromisoformat(_at(700)),
    )
    return engine


def test_a_delivered_order_drops_its_history_and_keeps_what_late_events_read() -> None:
    shard = _engine_after(_delivered_order()).shards[ORDER + "O1"]
    assert isinstance(shard, OrderShard) and orders.finished(shard)
    for gone in (
        "status_eid",
        "paid_status_eid",
        "shipped_eid",
        "last_logi_eid",
        "first_logi_at",
        "first_logi_eid",
        "logi_shipped_at",
        "address_eid",
    ):
        assert getattr(shard, gone) is None, gone
    for kept in ("created_eid", "created_at", "total", "status", "status_at", "delivered_at"):
        assert getattr(shard, kept) is not None, kept
    assert shard.payments["P1"].event_id is not None and shard.payments["P1"].at is not None
    stored = shard.to_dict()
    assert stored["v"] == FORMAT_VERSION
    assert shard_from_dict(orjson.loads(orjson.dumps(stored))).to_dict() == stored


def test_an_open_order_is_not_compacted() -> None:
    events = _delivered_order()[:5]  # shipped, not delivered
    shard = _engine_after(events).shards[ORDER + "O1"]
    assert isinstance(shard, OrderShard) and not orders.finished(shard)
    assert shard.shipped_eid is not None and shard.first_logi_eid is not None


def test_a_shard_stored_before_compaction_loads_and_is_compacted_at_its_next_event() -> None:
    with _compaction("off"):
        engine = _engine_after(_delivered_order())
    old = engine.shards[ORDER + "O1"].to_dict()
    assert old["shipped_eid"] and old["status_eid"]
    for data in (old, {k: v for k, v in old.items() if k != "v"}):  # version 2, and 1 (no "v")
        fresh = Engine(_CATALOG)
        fresh.restore(ORDER + "O1", orjson.loads(orjson.dumps(data)))
        shard = fresh.shards[ORDER + "O1"]
        assert isinstance(shard, OrderShard) and shard.shipped_eid is not None
        fresh.step(_event(status("O1", "delivered", _at(601))), datetime.fromisoformat(_at(700)))
        assert shard.shipped_eid is None and shard.status_eid is None


def _event(raw: Event) -> Any:
    from orderwatch.events.inbound import EVENT_ADAPTER

    return EVENT_ADAPTER.validate_python(raw)


# --- late and repeated events after the order finished: a table --------------------------------

_CANCELLED = [
    created("O1", _at(0)),
    payment_failed("O1", _at(3)),
    status("O1", "cancelled", _at(30)),
]

#: (what finished the order, what comes after it, a rule the late events must raise or "")
LATE: list[tuple[str, list[Event], list[Event], str]] = [
    (
        "payment after cancel",
        _CANCELLED,
        [paid("O1", _at(40), payment_id="P9")],
        "payment.after_cancel",
    ),
    (
        "payment after cancel, then its refund",
        _CANCELLED,
        [paid("O1", _at(40), payment_id="P9"), refunded("O1", _at(90), payment_id="P9")],
        "payment.after_cancel",
    ),
    (
        "a second payment after delivery",
        _delivered_order(),
        [paid("O1", _at(700), payment_id="P2")],
        "payment.duplicate",
    ),
    (
        "a second payment of another amount, read twice",
        _delivered_order(),
        [paid("O1", _at(700), payment_id="P2", amount="5.00", event_id="late-p2")] * 2,
        "payment.amount_mismatch",
    ),
    (
        "status regression after delivery",
        _delivered_order(),
        [status("O1", "paid", _at(800))],
        "order.status_regression",
    ),
    (
        "the whole life read again",
        _delivered_order(),
        _delivered_order(),
        "",
    ),
    (
        "late address change to an invalid address",
        _delivered_order(),
        [address_changed("O1", _at(650), shipping_address=address(line1="x"))],
        "customer.invalid_address",
    ),
    (
        "an older invalid address read after the newer valid one",
        [*_delivered_order(), address_changed("O1", _at(620))],
        [address_changed("O1", _at(610), shipping_address=address(line1="x"))],
        "",
    ),
    (
        "an earlier shipment and a carrier event read late",
        _delivered_order(),
        [
            logistics("shipped", "O1", _at(30), carrier="carrier-yto"),
            logistics("scanned", "O1", _at(900), carrier="carrier-yto"),
        ],
        "",
    ),
    (
        "a rejection after delivery, and a failed payment",
        _delivered_order(),
        [
            {**logistics("exception", "O1", _at(700)), "kind": "rejected"},
            payment_failed("O1", _at(710)),
        ],
        "logistics.rejected",
    ),
    (
        "cancelled, then reopened and paid",
        _CANCELLED,
        [status("O1", "paid", _at(50)), paid("O1", _at(51))],
        "",
    ),
    (
        "a refund read before its payment, after delivery",
        _delivered_order(),
        [refunded("O1", _at(700), payment_id="P3"), paid("O1", _at(650), payment_id="P3")],
        "",
    ),
    (
        "an earlier paid status and a reservation read late",
        _delivered_order(),
        [status("O1", "paid", _at(2)), reserved("O1", _at(3))],
        "",
    ),
]


def test_every_late_case_finishes_its_order_first() -> None:
    for name, before, _, _ in LATE:
        engine = _engine_after(before)
        shard = engine.shards[ORDER + "O1"]
        assert isinstance(shard, OrderShard) and orders.finished(shard), name


def test_late_and_repeated_events_after_a_finished_order_decide_the_same() -> None:
    for name, before, after, expected in LATE:
        lines = _same_either_way(before + after)
        rules = {orjson.loads(line).get("rule_id") for line in lines}
        assert not expected or expected in rules, (name, rules)


# --- the same over random lives ----------------------------------------------------------------


@st.composite
def lives(draw: st.DrawFn) -> list[Event]:
    """Orders that often finish (delivered, cancelled, closed) and then read late events: new
    payments, refunds, status changes, carrier events, address changes, copies of earlier ones,
    at any time before or after the finish."""
    events: list[Event] = []
    for n in range(draw(st.integers(1, 3))):
        oid = f"O{n}"
        total = draw(st.sampled_from(["199.00", "5.00"]))
        life: list[Event] = [created(oid, _at(0), total=total)]
        kinds = [
            "paid",
            "paid2",
            "failed",
            "refund",
            "status",
            "shipped",
            "scanned",
            "delivered",
            "rejected",
            "address",
            "reserved",
        ]
        t = 0
        for _ in range(draw(st.integers(2, 12))):
            t += draw(st.sampled_from([1, 30, 600, 3000]))
            at = _at(t - draw(st.sampled_from([0, 0, 0, 10, 2000])))  # some read late
            kind = draw(st.sampled_from(kinds))
            if kind in ("paid", "paid2"):
                pid = "P1" if kind == "paid" else f"P{draw(st.integers(2, 4))}"
                life.append(paid(oid, at, payment_id=pid, amount=total))
            elif kind == "failed":
                life.append(payment_failed(oid, at))
            elif kind == "refund":
                life.append(refunded(oid, at, payment_id=f"P{draw(st.integers(1, 3))}"))
            elif kind == "status":
                new = draw(st.sampled_from(["paid", "shipped", "delivered", "cancelled", "closed"]))
                life.append(status(oid, new, at))
            elif kind == "rejected":
                life.append({**logistics("exception", oid, at), "kind": "rejected"})
            elif kind == "address":
                line = draw(st.sampled_from(["100 Nanjing East Road", "x"]))
                life.append(address_changed(oid, at, shipping_address=address(line1=line)))
            elif kind == "reserved":
                life.append(reserved(oid, at))
            else:
                life.append(logistics(kind, oid, at))
        # copies of earlier events, read again at the end
        life += draw(st.lists(st.sampled_from(life), max_size=3))
        events += life
    return events


@PROPERTY
@given(events=lives())
def test_compacted_orders_decide_like_kept_ones_whatever_comes_late(events: list[Event]) -> None:
    _same_either_way(events)


def test_the_random_lives_do_compact_orders() -> None:
    """The property is not empty: its lives finish orders that are then compacted.

    Derandomized: the examples are the same on every run, so this count cannot flake."""
    compacting = 0

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(events=lives())
    def run(events: list[Event]) -> None:
        nonlocal compacting
        COMPACTED.clear()
        _output(events, "stored")
        compacting += bool(COMPACTED)

    run()
    assert compacting >= 30


def test_the_times_read_for_compaction_are_the_times_in_their_order() -> None:
    """``orders._times`` spells ``_TIMES`` out as slot reads: the same fields, in that order."""
    shard = OrderShard(ORDER + "O1")
    for i, name in enumerate(orders._TIMES):
        setattr(shard, name, float(i))
    assert orders._times(shard) == tuple(getattr(shard, n) for n in orders._TIMES)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([None, 0, 1, 2, 3]), min_size=12, max_size=12),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_equal_times_of_a_finished_order_end_as_one_object_the_first_of_them(
    values: list[int | None], fresh: list[bool]
) -> None:
    """``compact`` leaves each kept time equal to what it was and the very object of the first
    kept time equal to it (in ``_TIMES`` order), whether the equal ones were one object, some
    objects or all different; ``seen`` times that are one object already (the check that skips
    the sharing) change nothing."""
    shard = OrderShard(ORDER + "O1")
    pool = [1_763_600_000.25 + v for v in range(4)]
    for name, value, new in zip(orders._TIMES, values, fresh, strict=True):
        if value is not None:
            # a fresh object of the same value, or the pool's one (shared by all that take it)
            setattr(shard, name, float(repr(pool[value])) if new else pool[value])
    shard.delivered_at = shard.delivered_at or float(repr(pool[0]))  # finished: delivered
    before = orders._times(shard)
    orders.compact(shard)
    after = orders._times(shard)
    kept = [i for i, t in enumerate(after) if t is not None]
    for i in kept:
        assert after[i] == before[i]
        first = next(j for j in kept if before[j] == before[i])
        assert after[i] is before[first]
    orders.compact(shard)  # again: nothing to share, nothing moves
    assert all(a is b for a, b in zip(orders._times(shard), after, strict=True))
