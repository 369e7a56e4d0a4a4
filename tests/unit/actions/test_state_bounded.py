"""The action state stays bounded: ``g:actions`` holds only the limits and the breaker, each
order's actions are in its own records shard, and those are forgotten after the retention period
(issue 16: every action used to stay in ``g:actions`` for 14 days, serialized whole each commit).
"""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.engine import Engine, derived
from orderwatch.engine.actions import records_key
from orderwatch.engine.state import ACTION_RECORDS, ACTIONS, ActionRecords
from orderwatch.rulefiles import load_catalog

DAY0 = 1_790_000_000.0
CATALOG = load_catalog()


def _request(i: int, at: float, mode: str = "dry_run") -> derived.Intent:
    aid = f"act-{i}"
    return derived.Intent.model_construct(
        type=derived.INTENT,
        event_id=f"{derived.INTENT}|request|{aid}",
        kind="request",
        exception_id=f"ex-{i}",
        order_id=f"O{i}",
        occurred_ts=at,
        data={
            "action_id": aid,
            "type": "order.resync_status" if mode == "auto" else "fulfillment.hold",
            "exception_id": f"ex-{i}",
            "rule_id": "payment.paid_not_updated",
            "order_id": f"O{i}",
            "target": None,
            "params": {"reason": "test"},
            "mode": mode,
            "approval_ttl": 3600.0,
            "max_per_hour": 100,
        },
    )


def _size(engine: Engine, key: str) -> int:
    return len(orjson.dumps(engine.shards[key].to_dict()))


def _feed(engine: Engine, n: int, start: float, mode: str = "dry_run") -> float:
    at = start
    for i in range(n):
        at = start + i * 60.0
        engine.step(_request(int(start) + i, at, mode), at)  # type: ignore[arg-type]
    return at


def test_g_actions_does_not_grow_with_the_actions() -> None:
    engine = Engine(CATALOG)
    _feed(engine, 100, DAY0, "auto")  # one a minute: the hour's window is full
    small = _size(engine, ACTIONS)
    _feed(engine, 2_000, DAY0 + 86400, "auto")
    assert _size(engine, ACTIONS) <= small + 50  # the last hour's request times only
    records = [k for k in engine.shards if k.startswith(ACTION_RECORDS)]
    assert len(records) == 2_100
    assert all(len(engine.shards[k].actions) == 1 for k in records)  # type: ignore[attr-defined]


def test_a_step_writes_only_its_orders_records_and_the_limits() -> None:
    engine = Engine(CATALOG)
    at = _feed(engine, 500, DAY0)
    engine.take_dirty()
    engine.step(_request(10**9, at + 60, "auto"), at + 60)  # type: ignore[arg-type]
    written = engine.take_dirty()
    assert set(written) == {ACTIONS, records_key("O1000000000", "")}


def test_settled_records_are_forgotten_after_the_retention_period() -> None:
    engine = Engine(CATALOG, retention=86400.0)
    at = _feed(engine, 20, DAY0)
    assert sum(k.startswith(ACTION_RECORDS) for k in engine.shards) == 20
    engine.sweep(at + 2 * 86400 + 1)
    assert not any(k.startswith(ACTION_RECORDS) for k in engine.shards)


def test_an_action_awaiting_approval_keeps_its_records_until_it_expires() -> None:
    engine = Engine(CATALOG, retention=600.0)
    engine.step(_request(1, DAY0, "approval"), DAY0)  # type: ignore[arg-type]
    engine.take_actions()
    engine.sweep(DAY0 + 1800)  # past the retention, before the expiry (1 h)
    shard: Any = engine.shards.get(records_key("O1", "ex-1"))
    assert isinstance(shard, ActionRecords)
    assert shard.actions["act-1"]["status"] == "awaiting_approval"
    engine.sweep(DAY0 + 3601)
    assert [a.status for a in engine.take_actions()] == ["expired"]


def test_state_of_the_earlier_layout_is_moved_to_the_orders_and_keeps_working() -> None:
    """A ``g:actions`` written when every action was kept in it: after an upgrade the actions
    keep their status (nothing requested twice), an approval and an expiry still work."""
    old = Engine(CATALOG)
    waiting = {**_request(1, DAY0, "approval").data, "status": "awaiting_approval", "at": DAY0}
    planned = {**_request(2, DAY0).data, "status": "planned", "at": DAY0}
    expiring = {**_request(3, DAY0, "approval").data, "status": "awaiting_approval", "at": DAY0}
    legacy: dict[str, Any] = {
        "v": 2,
        "key": ACTIONS,
        "at": DAY0,
        "dl": {"exp|act-1": DAY0 + 3600, "exp|act-3": DAY0 + 3600, "evict": DAY0 + 14 * 86400},
        "actions": {"act-1": waiting, "act-2": planned, "act-3": expiring},
        "by_exception": {"ex-1": ["act-1"], "ex-2": ["act-2"], "ex-3": ["act-3"]},
        "holds": {"O2": {"ex-2": ["act-2", True]}},
        "requested": {},
        "results": {},
        "paused_until": {},
    }
    old.restore(ACTIONS, orjson.loads(orjson.dumps(legacy)))
    # the same request read again (a re-delivery after the upgrade): nothing new
    old.step(_request(2, DAY0 + 60), DAY0 + 60)  # type: ignore[arg-type]
    assert old.take_actions() == []
    assert "actions" not in old.shards[ACTIONS].to_dict()
    assert old.shards[records_key("O2", "")].holds == {"ex-2": ["act-2", True]}  # type: ignore[attr-defined]
    decide = derived.Intent.model_construct(
        type=derived.INTENT,
        event_id=f"{derived.INTENT}|decide|c1",
        kind="decide",
        exception_id="ex-1",
        order_id="O1",
        occurred_ts=DAY0 + 120,
        data={"command_id": "c1", "action_id": "act-1", "approve": True, "status": "open"},
    )
    old.step(decide, DAY0 + 120)  # type: ignore[arg-type]
    assert [(a.action_id, a.status) for a in old.take_actions()] == [("act-1", "requested")]
    old.sweep(DAY0 + 3601)
    assert [(a.action_id, a.status) for a in old.take_actions()] == [("act-3", "expired")]
    # an expiry of the earlier layout firing before any step moved the records
    fresh = Engine(CATALOG)
    fresh.restore(ACTIONS, orjson.loads(orjson.dumps(legacy)))
    fresh.sweep(DAY0 + 3601)
    assert sorted((a.action_id, a.status) for a in fresh.take_actions()) == [
        ("act-1", "expired"),
        ("act-3", "expired"),
    ]
