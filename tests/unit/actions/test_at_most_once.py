"""Hypothesis: an action is never requested twice for one exception, also after a restart from
the saved shards and a re-delivery of what was read before it (at-least-once input)."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.engine import Engine
from orderwatch.events.codec import decode_event, encode_action
from orderwatch.rulefiles import load_catalog
from tests.factories import to_jsonl
from tests.unit.actions.book import rules_with
from tests.unit.test_properties import UNTIL, histories

Event = dict[str, Any]


def _auto_rules() -> Path:
    """Every default action turned to auto: each one is a request to an executing system."""
    folder = Path(tempfile.mkdtemp(prefix="ow-actions-"))
    for rule_id, types in {
        "payment.paid_not_updated": ["order.resync_status"],
        "payment.duplicate": ["payment.refund"],
        "payment.after_cancel": ["payment.refund"],
        "fraud.blacklisted": ["fulfillment.hold"],
        "customer.invalid_address": ["fulfillment.hold"],
        "fraud.abnormal_quantity": ["fulfillment.hold"],
        "logistics.delivery_delayed": ["customer.notify"],
        "logistics.lost_or_damaged": ["customer.notify", "carrier.claim"],
        "inventory.oversold": ["customer.notify"],
        "fraud.new_account_burst": ["blacklist.suggest"],
    }.items():
        block = "".join(f"- type: {t}\n  mode: auto\n" for t in types)
        rules_with(folder, rule_id, block)
    return folder / "rules"


_CATALOG = load_catalog(_auto_rules())


def _feed(engine: Engine, events: list[Event], clock: float) -> tuple[list[bytes], float]:
    out: list[bytes] = []
    for raw in to_jsonl(events).splitlines():
        ev = decode_event(raw)
        clock = max(clock, ev.occurred_ts)
        engine.step(ev, clock)
        out += [encode_action(a) for a in engine.take_actions()]
    return out, clock


def _plain(events: list[Event]) -> list[bytes]:
    engine = Engine(_CATALOG)
    out, clock = _feed(engine, events, float("-inf"))
    engine.sweep(max(clock, datetime.fromisoformat(UNTIL).timestamp()))
    return out + [encode_action(a) for a in engine.take_actions()]


def _restarted(events: list[Event], cut: int, back: int, again: list[Event]) -> list[bytes]:
    """Read ``events[:cut]``, save every shard, start a new engine from the saved state, read
    again the last ``back`` events before the cut (not yet committed when it stopped) and
    ``again`` (re-deliveries), then the rest."""
    first = Engine(_CATALOG)
    out, clock = _feed(first, events[:cut], float("-inf"))
    saved = {k: orjson.loads(orjson.dumps(v)) for k, v in first.take_dirty().items() if v}
    second = Engine(_CATALOG)
    for key, value in saved.items():
        second.restore(key, value)
    more, clock = _feed(second, events[max(0, cut - back) : cut] + again + events[cut:], clock)
    second.sweep(max(clock, datetime.fromisoformat(UNTIL).timestamp()))
    return out + more + [encode_action(a) for a in second.take_actions()]


def _check_once(lines: list[bytes]) -> None:
    actions = [orjson.loads(x) for x in lines]
    per = Counter((a["action_id"], a["status"]) for a in actions)
    assert max(per.values(), default=0) <= 1, [k for k, n in per.items() if n > 1]
    requested = Counter(a["action_id"] for a in actions if a["status"] == "requested")
    assert max(requested.values(), default=0) <= 1
    # one action per exception, type and target
    ids = {(a["exception_id"], a["type"], a["target"]): a["action_id"] for a in actions}
    assert len(set(ids.values())) == len(ids)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), history=histories())
def test_never_requested_twice_after_restart_and_redelivery(
    data: st.DataObject, history: tuple[list[Event], dict[str, Any]]
) -> None:
    events, _ = history
    cut = data.draw(st.integers(0, len(events)), label="cut")
    back = data.draw(st.integers(0, 5), label="back")
    read = events[:cut]  # only what was read before can be delivered again
    again = (
        data.draw(st.lists(st.sampled_from(read), max_size=len(read)), label="again")
        if read
        else []
    )
    plain = _plain(events)
    _check_once(plain)
    restarted = _restarted(events, cut, back, again)
    _check_once(restarted)
    # and the same actions as without the restart and the re-deliveries
    if sorted(restarted) != sorted(plain):
        diff_a = sorted(set(restarted) - set(plain))
        diff_b = sorted(set(plain) - set(restarted))
        raise AssertionError(f"restart changed actions: {diff_a[:3]} vs {diff_b[:3]}")
