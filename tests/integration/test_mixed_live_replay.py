"""Live == replay on one mixed file of events, commands and action results (issue 16 acceptance).

One file mixes input events of every stream, operators' ``command.approve`` / ``command.reject``
/ ``command.resolve`` and executors' ``action.succeeded`` / ``action.failed``. Produced to the
real broker in phases (each once the previous phase's effects are published, as a person or an
executor acts on what they see), the real worker publishes on ``order-actions``, ``order-kpis``
and the blacklist topic what ``orderwatch replay --actions --kpis --blacklist`` writes for the
same file, record for record. Fields left out of the comparison, and why:

* ``at`` of an action event and ``occurred_at`` of a blacklist entry: the detector's clock when
  the status was reached. Live each shard partition has its own clock (event time on the
  routers' watermark, as ``detected_at`` of exceptions), replay one clock for all.

Covered: an automatic resync and its success, a refund approved and its failure, another
rejected, a hold planned and released after a resolve, KPI hours (payment success by method,
on-time delivery by carrier), and a ``blacklist.suggest`` approved: its ``blacklist.added`` goes to
the blacklist topic, the worker reads it back, and the customer's next order is
``fraud.blacklisted`` (a hold planned for it), as in replay.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    created,
    end_ticks,
    logistics,
    paid,
    payment_failed,
    refunded,
    status,
    to_jsonl,
    ts,
)
from tests.integration.harness import Collector, Topics, WorkerProcess, produce, wait_until
from tests.integration.test_actions_live import _cmd, _result, _rules

pytestmark = pytest.mark.integration

Event = dict[str, Any]


@dataclass
class Out:
    actions: list[bytes]
    kpis: list[bytes]
    blacklist: list[bytes]
    exceptions: list[bytes]


def offline(events: list[Event], rules: Path) -> Out:
    out, err = io.BytesIO(), io.StringIO()
    actions, kpis, entries = io.BytesIO(), io.BytesIO(), io.BytesIO()
    replay(
        io.BytesIO(to_jsonl(events)).readlines(),
        Engine(load_catalog(rules)),
        out,
        err,
        None,
        actions=actions,
        kpis=kpis,
        blacklist=entries,
    )
    assert err.getvalue() == ""
    return Out(
        actions.getvalue().splitlines(),
        kpis.getvalue().splitlines(),
        entries.getvalue().splitlines(),
        out.getvalue().splitlines(),
    )


def _action(raw: bytes) -> bytes:
    data = orjson.loads(raw)
    data.pop("at")
    return orjson.dumps(data)


def _entry(raw: bytes) -> bytes:
    data = orjson.loads(raw)
    data.pop("occurred_at")
    return orjson.dumps(data)


def first_phase() -> list[Event]:
    events: list[Event] = [
        # an automatic resync (the demo setting): O1 paid, its status not updated
        created("O1", "10:00"),
        paid("O1", "10:00", payment_id="PA", method="alipay"),
        # two duplicate payments: one refund to approve, one to reject
        created("O2", "10:00"),
        paid("O2", "10:01", payment_id="P1", method="wechat"),
        paid("O2", "10:02", payment_id="P2", method="wechat"),
        status("O2", "paid", "10:02:30"),
        created("O4", "10:00"),
        paid("O4", "10:01", payment_id="P3"),
        paid("O4", "10:02", payment_id="P4"),
        status("O4", "paid", "10:02:30"),
        # a hold (dry run) to be released when its exception is resolved
        created("O3", "10:00", items=[{"sku": "S", "quantity": 50, "unit_price": "1.00"}]),
        # a failed payment, and an order delivered on time (KPIs)
        created("F1", "10:00"),
        payment_failed("F1", "10:03", payment_id="PF1"),
        created("D1", "10:00", promised_delivery_by=ts("10:50")),
        paid("D1", "10:01", payment_id="PD", method="card"),
        status("D1", "paid", "10:01:30"),
        logistics("shipped", "D1", "10:05"),
        logistics("delivered", "D1", "10:09"),
    ]
    # three orders of customer C7 refunded: fraud.frequent_refunds suggests C7 for the blacklist
    for n in (1, 2, 3):
        oid = f"R{n}"
        events += [
            created(oid, "10:00", customer_id="C7"),
            paid(oid, f"10:0{n}", payment_id=f"PR{n}", method="card"),
            status(oid, "paid", f"10:0{n}:30"),
            refunded(oid, f"10:0{n + 3}", payment_id=f"PR{n}"),
        ]
    return [*events, status("T1", "pending_payment", "10:11"), *end_ticks(ts("10:12"))]


def second_phase(seen: Out) -> list[Event]:
    """What people and executors do about the first phase's actions."""
    actions = [orjson.loads(x) for x in seen.actions]

    def one(kind: str, order_id: str) -> dict[str, Any]:
        [a] = [x for x in actions if x["type"] == kind and x["order_id"] == order_id]
        return dict(a)

    resync, keep, drop = one("order.resync_status", "O1"), one("payment.refund", "O2"), None
    drop = one("payment.refund", "O4")
    suggest = one("blacklist.suggest", "R3")
    hold = one("fulfillment.hold", "O3")

    def decide(kind: str, cid: str, at: str, a: dict[str, Any], **f: Any) -> Event:
        return _cmd(kind, cid, at, a["exception_id"], a["rule_id"], a["order_id"], **f)

    return [
        _result(True, resync["action_id"], "O1", "10:13"),
        decide("approve", "c1", "10:14", keep, action_id=keep["action_id"]),
        decide("reject", "c3", "10:14:10", drop, action_id=drop["action_id"]),
        decide("approve", "c4", "10:14:20", suggest, action_id=suggest["action_id"]),
        decide("resolve", "c2", "10:15", hold, resolution="fixed"),
    ]


def third_phase(seen: Out) -> list[Event]:
    refund = next(
        orjson.loads(x)
        for x in seen.actions
        if b'"payment.refund"' in x and b'"O2"' in x and b'"requested"' in x
    )
    return [
        status("O1", "paid", "10:16"),
        _result(False, refund["action_id"], "O2", "10:17"),
        # the blacklisted customer's next order
        created("O9", "10:18", customer_id="C7"),
        # every partition's clock past 11:01: the 10:00 KPI hour is published
        *end_ticks(ts("11:30")),
    ]


def test_the_scenario_covers_what_it_should(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    one = first_phase()
    two = second_phase(offline(one, rules))
    three = third_phase(offline(one + two, rules))
    done = offline(one + two + three, rules)
    got = Counter((a["type"], a["status"]) for a in map(orjson.loads, done.actions))
    for kind, status_ in [
        ("order.resync_status", "requested"),
        ("order.resync_status", "succeeded"),
        ("payment.refund", "requested"),
        ("payment.refund", "failed"),
        ("payment.refund", "rejected"),
        ("fulfillment.hold", "planned"),
        ("fulfillment.release", "planned"),
        ("blacklist.suggest", "succeeded"),
    ]:
        assert got[(kind, status_)] >= 1, (kind, status_)
    [entry] = map(orjson.loads, done.blacklist)
    assert (entry["kind"], entry["value"]) == ("customer_id", "C7")
    assert "approved by alice" in entry["reason"]
    assert any(b'"fraud.blacklisted"' in x and b'"O9"' in x for x in done.exceptions)
    kpis = {(k["kpi"], k.get("method") or k.get("carrier")) for k in map(orjson.loads, done.kpis)}
    assert ("payment_success_rate", "card") in kpis
    assert ("on_time_delivery_rate", "carrier-sf") in kpis


async def test_actions_kpis_and_blacklist_live_equal_replay(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    await _live_equals_replay(broker, topics, tmp_path, workers, restart=False)


async def test_after_a_kill_9_and_a_restart_on_the_store_no_action_is_asked_twice(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The worker is killed (SIGKILL) after the decisions and restarted on its RocksDB store:
    what it had not committed is read again and its outputs may be published again
    (at-least-once), but every action event is one replay gives, byte for byte (the same
    statuses, nothing requested twice with another outcome), and none is missing."""
    await _live_equals_replay(broker, topics, tmp_path, workers, restart=True)


async def _live_equals_replay(
    broker: EmbeddedBroker,
    topics: Topics,
    tmp_path: Path,
    workers: list[WorkerProcess],
    restart: bool,
) -> None:
    rules = _rules(tmp_path)
    settings = {"clock": "event", "rules_dir": str(rules)}
    if restart:
        settings["store"] = "rocksdb"
    worker = WorkerProcess(broker.bootstrap, topics, tmp_path, **settings).start()
    workers.append(worker)
    async with (
        Collector(broker.bootstrap, topics.actions) as acts,
        Collector(broker.bootstrap, topics.kpis) as kpis,
        Collector(broker.bootstrap, topics.blacklist) as entries,
    ):

        def live() -> Out:
            return Out(
                [_action(r.value) for r in acts.records],
                [r.value for r in kpis.records],
                [_entry(r.value) for r in entries.records],
                [],
            )

        async def settle(sent: list[Event]) -> Out:
            """Wait until the worker has published (at least) what replay gives so far."""
            want = offline(sent, rules)
            wanted = (
                {_action(x) for x in want.actions},
                set(want.kpis),
                {_entry(x) for x in want.blacklist},
            )

            def enough(_: Any) -> bool:
                got = live()
                return (
                    set(got.actions) >= wanted[0]
                    and set(got.kpis) >= wanted[1]
                    and set(got.blacklist) >= wanted[2]
                )

            try:
                await acts.wait_for(enough, 90, "live ⊇ replay's actions, KPIs, entries")
            except AssertionError as err:
                got = live()
                raise AssertionError(
                    f"{err}\nmissing actions: {sorted(wanted[0] - set(got.actions))}"
                    f"\nmissing kpis: {sorted(wanted[1] - set(got.kpis))}"
                    f"\nmissing entries: {sorted(wanted[2] - set(got.blacklist))}"
                ) from None
            return want

        sent = first_phase()
        await produce(broker.bootstrap, topics, sent)
        seen = await settle(sent)
        two = second_phase(seen)
        await produce(broker.bootstrap, topics, two)
        sent += two
        seen = await settle(sent)
        # the worker has read its own blacklist entry back before the customer's next order
        wait_until(
            lambda: (
                worker.metric(
                    "orderwatch_events_consumed_total",
                    topic=topics.blacklist,
                    type="blacklist.added",
                )
                >= 1
            ),
            30,
            "the worker to read the blacklist entry back",
        )
        if restart:
            worker.kill()
            worker = WorkerProcess(broker.bootstrap, topics, tmp_path, **settings).start()
            workers.append(worker)
        three = third_phase(seen)
        await produce(broker.bootstrap, topics, three)
        sent += three
        want = await settle(sent)
        got = live()
        if restart:  # at-least-once: a record may be published again, never a different one
            assert set(got.actions) == {_action(x) for x in want.actions}
            assert set(got.kpis) == set(want.kpis)
            assert set(got.blacklist) == {_entry(x) for x in want.blacklist}
            requested = Counter(
                orjson.loads(x)["action_id"]
                for x in set(got.actions)
                if orjson.loads(x)["status"] == "requested"
            )
            assert max(requested.values()) == 1
            return
        # record for record: the same multiset, each published once
        assert Counter(got.actions) == Counter(_action(x) for x in want.actions)
        assert Counter(got.kpis) == Counter(want.kpis)
        assert Counter(got.blacklist) == Counter(_entry(x) for x in want.blacklist)
        for record in acts.records:  # keyed by order_id
            assert record.key == orjson.loads(record.value)["order_id"].encode()
        for record in entries.records:  # keyed by the entry's value
            assert record.key == orjson.loads(record.value)["value"].encode()
