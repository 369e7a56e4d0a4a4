"""An unexpected exception on one message's path costs that message only, and leaves no trace in
the state (``ORDERWATCH_ON_PROCESSING_ERROR=dead_letter``), or stops the worker (``fail``).

The engine here raises on a marker event *after* it has changed the shard, which is the case
that matters: a half-applied shard would change every later verdict on that order.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orderwatch.agents.shell import INTERNAL_ERROR, positions_key
from orderwatch.engine import Engine
from orderwatch.engine.state import Shard
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import InboundEvent
from tests.agents.test_shell import Recorder, feed, keyset, make_shell, scenario
from tests.factories import paid, run, status

MARKER = "boom-"


class BoomEngine(Engine):
    """Raises on events whose id starts with ``MARKER``, after applying them to the shard."""

    def _apply(self, shard: Shard, event: InboundEvent, at: float) -> None:
        super()._apply(shard, event, at)
        if event.event_id.startswith(MARKER):
            raise KeyError("13812345678")  # an exception quoting input: must not leak


def with_markers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenario with two marker events in the middle: one for an order with state (a
    status change that would resolve its paid-not-updated exception) and one new order's."""
    half = len(events) // 2
    markers = [
        status("O3", "paid", "10:05", event_id=f"{MARKER}1"),
        paid("O-new", "10:06", event_id=f"{MARKER}2"),
    ]
    return events[:half] + markers + events[half:]


def test_a_failing_step_is_dead_lettered_and_leaves_the_state_as_it_was() -> None:
    events = scenario()
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])
    assert any(e[1] == "payment.paid_not_updated" for e in expected)

    rec = Recorder()
    shell = make_shell(rec, engine=BoomEngine)
    feed(shell, rec, with_markers(events))
    shell.sweep()
    assert sorted(set(keyset(rec.exceptions))) == expected, "exactly the valid events' exceptions"

    # one dead letter per shard the event failed on: the status change's order; the payment's
    # order, the rate windows and the KPI shard
    routes = len(Engine.route(decode_event(orjson.dumps(paid("O-new", "10:06")))))
    assert len(rec.dlq) == 1 + routes and shell.counters.failed == 1 + routes
    bodies = sorted(orjson.loads(body)["event_id"] for body, _ in rec.dlq)
    assert bodies == [f"{MARKER}1"] + [f"{MARKER}2"] * routes, "the message itself"
    headers = dict(rec.dlq[0][1])
    assert headers["orderwatch.error.reason"] == INTERNAL_ERROR.encode()
    assert headers["__connect.errors.exception.class.name"] == b"KeyError"
    assert headers["orderwatch.error.stage"] == b"detect"
    message = headers["__connect.errors.exception.message"]
    assert message == b"KeyError: <11 chars>", "the input it quoted is not in the headers"

    # the state: what a shell that never saw the markers holds
    clean = Recorder()
    reference = make_shell(clean)
    feed(reference, clean, events)
    reference.sweep()
    shell.persist()
    reference.persist()
    # (a tombstone and no entry recover the same: the shard made to hold a parked marker; the
    # input offsets read differ by the markers)
    assert state(rec.changelog) == state(clean.changelog)


def state(changelog: dict[tuple[int, bytes], bytes | None]) -> dict[tuple[int, bytes], Any]:
    """What a changelog recovers, without the positions each partition read from its inputs."""
    return {
        (p, key): v
        for (p, key), v in changelog.items()
        if v is not None and key != positions_key(p).encode()
    }


def test_a_failure_while_routing_costs_that_message_only() -> None:
    events = scenario()
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])

    original = Engine.route

    def route(event: InboundEvent) -> tuple[str, ...]:
        if event.event_id.startswith(MARKER):
            raise TypeError("unhashable type: 'list'")
        return original(event)

    rec = Recorder()
    shell = make_shell(rec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "route", staticmethod(route))
        feed(shell, rec, with_markers(events))
    shell.sweep()
    assert sorted(set(keyset(rec.exceptions))) == expected
    assert [dict(h)["orderwatch.error.stage"] for _, h in rec.dlq] == [b"route", b"route"]
    assert dict(rec.dlq[0][1])["__connect.errors.exception.message"] == (
        b"TypeError: unhashable type: 'list'"
    )


def test_the_fail_policy_lets_the_error_through_to_stop_the_worker() -> None:
    rec = Recorder()
    shell = make_shell(rec, engine=BoomEngine, on_error="fail")
    with pytest.raises(KeyError):
        feed(shell, rec, with_markers(scenario()))
    assert rec.dlq == []


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_error"):
        make_shell(Recorder(), on_error="ignore")
