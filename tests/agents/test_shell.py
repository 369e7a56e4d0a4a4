"""The shell's decisions without Kafka: what it dead-letters, where it routes, what it persists.

The shell is handed plain send functions; these tests record what it sends. Restart safety is
checked the way the worker lives it: a second shell recovers from the first one's changelog writes
and carries on, and together they give exactly what one uninterrupted engine gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.agents import envelope
from orderwatch.agents.shell import (
    BATCH,
    CAUGHT_UP_FOR,
    READ_TO,
    WATERMARK_HEADER,
    ShardMessage,
    Shell,
    broadcast_key,
    partition_for,
    positions_key,
)
from orderwatch.engine import Engine
from orderwatch.engine.silence import SilenceMonitor
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog
from tests.factories import blacklist, created, end_ticks, logistics, paid, plus, run, status

PARTITIONS = 4
CATALOG = load_catalog()


class Recorder:
    """Collects what the shell sends, and delivers shard messages the way Kafka would."""

    def __init__(self) -> None:
        self.shard: list[ShardMessage] = []
        self.dlq: list[tuple[bytes, list[tuple[str, bytes]]]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.headers: list[dict[str, bytes]] = []
        self.changelog: dict[tuple[int, bytes], bytes | None] = {}
        self.offset = 0

    def send_shard(
        self, key: bytes, value: bytes, partition: int | None, headers: Any = None
    ) -> None:
        p = partition if partition is not None else partition_for(key, PARTITIONS)
        stamp = dict(headers or {}).get(WATERMARK_HEADER)
        self.shard.append((key, value, p, None, stamp))

    def send_dlq(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.dlq.append((value, headers))

    def send_exception(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        body = orjson.loads(value)
        assert key.decode() == body["subject"]
        self.exceptions.append(body)
        self.headers.append(dict(headers))

    def send_changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.changelog[(partition, key)] = value


def routed(rec: Recorder) -> list[tuple[bytes, int]]:
    """(shard key, partition) of every event inside the envelopes sent so far."""
    return [
        (key, p)
        for k, value, p, _, _ in rec.shard
        if k == BATCH
        for key, *_ in envelope.unpack(value)
    ]


def make_shell(
    rec: Recorder, clock: str = "event", engine: type[Engine] = Engine, **kw: Any
) -> Shell:
    """A shell that owns every partition (as after its first recovery, with an empty table)."""
    shell = Shell(
        lambda: engine(CATALOG, reorder=True),
        PARTITIONS,
        clock=clock,
        send_shard=rec.send_shard,
        send_dlq=rec.send_dlq,
        send_exception=rec.send_exception,
        send_changelog=rec.send_changelog,
        **kw,
    )
    shell.restore([], set(range(PARTITIONS)))
    return shell


def feed(shell: Shell, rec: Recorder, events: list[dict[str, Any]]) -> None:
    """Route events, report the (caught-up) watermark, and process what reached the shards."""
    start = len(rec.shard)
    end = rec.offset + len(events)
    shell.look([("orders", 0)], lambda topic, partition: end)
    for e in events:
        shell.route(orjson.dumps(e), "orders", 0, rec.offset)
        rec.offset += 1
    shell.flush()
    shell.send_watermarks([("orders", 0)], lambda topic, partition: end)
    shell.caught_up_since = -1e18  # caught up long ago: the watermark is the largest time read
    shell.send_watermarks([("orders", 0)], lambda topic, partition: end)
    # and what stage 2 itself sends to the shard topic (fraud flags for orders' shards), until
    # nothing new arrives, as a consumer of the topic would read it
    while start < len(rec.shard):
        batch, start = rec.shard[start:], len(rec.shard)
        shell.process(batch)


def keyset(exceptions: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return sorted(
        (e["exception_id"], e["rule_id"], e["state"], e["escalation_level"]) for e in exceptions
    )


def test_bad_messages_go_to_the_dead_letter_path_with_reason_headers() -> None:
    rec = Recorder()
    shell = make_shell(rec)
    shell.route(b"{not json", "orders", 2, 41)
    shell.route(b"\xff\xfe", "payment-callbacks", 1, 7)
    shell.route(orjson.dumps({**paid("O1", "10:00"), "amount": 1.5}), "payment-callbacks", 0, 3)
    shell.route(b"x" * 2_000_000, "orders", 0, 9)
    reasons = [dict(h)["orderwatch.error.reason"] for _, h in rec.dlq]
    assert reasons == [b"invalid_json", b"invalid_utf8", b"schema", b"too_large"]
    first = dict(rec.dlq[0][1])
    assert first["__connect.errors.topic"] == b"orders"
    assert (first["__connect.errors.partition"], first["__connect.errors.offset"]) == (b"2", b"41")
    assert len(rec.dlq[3][0]) <= 64 * 1024, "a huge body is truncated in the DLQ copy"
    assert dict(rec.dlq[3][1])["orderwatch.error.original_size"] == b"2000000"
    assert rec.shard == [] and shell.counters.invalid == 4


def test_events_are_routed_by_their_own_fields_not_the_producer_key() -> None:
    rec = Recorder()
    shell = make_shell(rec)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 3, 0)
    assert rec.shard == [], "held until the end of the router's batch"
    shell.flush()
    keys = sorted(k.decode()[:2] for k, _ in routed(rec))
    assert keys == ["a:", "c:", "o:", "p:"]
    for key, p in routed(rec):
        assert p == partition_for(key, PARTITIONS), "each item in its key's shard partition"
    assert b"o:O1" in dict(routed(rec))
    assert len(rec.shard) == len({p for _, p in routed(rec)}), "one envelope per partition"


def test_blacklist_entries_reach_every_partition() -> None:
    rec = Recorder()
    shell = make_shell(rec)
    shell.route(orjson.dumps(blacklist("customer_id", "C9")), "blacklist", 0, 0)
    shell.flush()
    assert sorted(p for _, p in routed(rec)) == list(range(PARTITIONS))
    assert set(routed(rec)) == {(broadcast_key(p).encode(), p) for p in range(PARTITIONS)}


def scenario() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [blacklist("customer_id", "C-bad", "09:00")]
    for i in range(12):
        oid = f"O{i}"
        at = plus("10:00", minutes=i)
        events += [created(oid, at, customer_id=f"C{i}"), paid(oid, plus(at, minutes=1))]
        if i % 3 == 0:
            events.append(status(oid, "paid", plus(at, minutes=5)))
    events.append(created("O-bad", "10:30", customer_id="C-bad"))
    return events + end_ticks("13:00")


def test_a_restarted_shell_recovers_from_the_changelog_and_agrees_with_replay() -> None:
    events = scenario()
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])
    assert {e[1] for e in expected} >= {"payment.paid_not_updated", "fraud.blacklisted"}

    rec = Recorder()
    first = make_shell(rec)
    half = len(events) // 2
    feed(first, rec, events[:half])
    first.sweep()
    first.persist()  # what the worker does right before Faust commits the offsets read so far
    # read after the commit, then killed: what it changed never reached the changelog, and the
    # next process reads these events again from the committed offset
    feed(first, rec, events[half:])
    first.sweep()

    # a new process: only the changelog survives
    second = Shell(
        lambda: Engine(CATALOG, reorder=True),
        PARTITIONS,
        clock="event",
        send_shard=rec.send_shard,
        send_dlq=rec.send_dlq,
        send_exception=rec.send_exception,
        send_changelog=rec.send_changelog,
    )
    items = [(key, value) for (_, key), value in rec.changelog.items()]
    second.restore(items, set(range(PARTITIONS)))
    feed(second, rec, events[half:])
    second.sweep()
    assert sorted(set(keyset(rec.exceptions))) == expected


def test_a_shard_changed_by_many_batches_is_written_once_per_commit() -> None:
    rec = Recorder()
    shell = make_shell(rec)
    for step in (created("O1", "10:00"), paid("O1", "10:01"), status("O1", "paid", "10:02")):
        feed(shell, rec, [step])
    assert rec.changelog == {}  # nothing written between commits
    written = shell.persist()
    order_key = [key for (_, key) in rec.changelog if key.endswith(b"O1")]
    assert written == len(rec.changelog) and len(order_key) == 1
    assert orjson.loads(rec.changelog[(partition_for(order_key[0], PARTITIONS), order_key[0])])
    assert shell.persist() == 0  # and nothing again until something changes


def test_the_watermark_waits_for_the_stream_that_is_behind() -> None:
    """Payments read far ahead of orders must not fire payment.orphan for orders not read yet."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    orders = [created(f"O{i}", plus("10:00", minutes=i)) for i in range(3)]
    payments = [paid(f"O{i}", plus("10:01", minutes=i)) for i in range(3)]
    payments.append(paid("O-late", "11:00"))
    payments.append(paid("O0", "12:00"))  # a gateway re-callback: payments are read up to noon
    # orders partition: 3 messages exist (high watermark 3) but none has been read yet
    high = {("payment-callbacks", 0): len(payments), ("orders", 0): 3}
    assigned = list(high)

    def read(topic: str, events: list[dict[str, Any]]) -> None:
        start = len(rec.shard)
        shell.look(assigned, lambda t, p: high[(t, p)])
        for i, e in enumerate(events):
            shell.route(orjson.dumps(e), topic, 0, i)
        shell.flush()
        shell.send_watermarks(assigned, lambda t, p: high[(t, p)])
        shell.process(rec.shard[start:])
        shell.sweep()

    read("payment-callbacks", payments)
    assert [e for e in rec.exceptions if e["rule_id"] == "payment.orphan"] == []
    read("orders", orders)
    assert [e for e in rec.exceptions if e["rule_id"] == "payment.orphan"] == [], (
        "just caught up: a high watermark may be stale, the watermark still holds"
    )
    wall[0] += 2  # caught up for longer than a fetch takes: the clock moves to noon
    read("orders", [])
    orphans = {e["order_id"] for e in rec.exceptions if e["rule_id"] == "payment.orphan"}
    assert orphans == {"O-late"}, "only the order that never came"


def test_revoked_partitions_are_forgotten_and_recovered_by_the_next_owner() -> None:
    rec = Recorder()
    shell = make_shell(rec)
    feed(shell, rec, scenario())
    owned = shell.owned
    assert owned
    shell.revoke(owned)
    assert shell.owned == set()
    # a stray message for a partition no longer owned is not applied nor persisted, but handed
    # on to the partition's new owner
    before = dict(rec.changelog)
    sent = len(rec.shard)
    item = (b"o:O1", orjson.dumps(created("O1", "23:00")))
    stray = (BATCH, envelope.pack([(*item, "orders/0", 640)]), 0, None, None)
    shell.process([stray])
    assert shell.engines == {} and rec.changelog == before
    # without its source: the new owner reads every item, whatever it read from that input
    assert rec.shard[sent:] == [(BATCH, envelope.pack_v1([item]), 0, None, None)]
    assert envelope.unpack(rec.shard[-1][1]) == [(*item, envelope.NO_SOURCE, -1)]
    assert shell.counters.requeued == 1
    shell.restore([(k, v) for (_, k), v in rec.changelog.items()], owned)
    assert sum(len(e.shards) for e in shell.engines.values()) > 0


def test_a_second_recovery_callback_rebuilds_from_the_whole_table() -> None:
    """Faust calls the recovery callbacks of an interrupted recovery (half the table read),
    then those of the new assignment's recovery: the engines must come from the second."""
    rec = Recorder()
    shell = make_shell(rec)
    feed(shell, rec, scenario())
    shell.persist()
    owned = shell.owned
    table = [(k, v) for (_, k), v in rec.changelog.items()]
    shell.revoke(owned)
    shell.restore(table[: len(table) // 3], owned)  # the interrupted recovery's callback
    shell.restore(table, owned)  # the new assignment's
    again = make_shell(Recorder())
    again.restore(table, owned)
    assert {p: set(e.shards) for p, e in shell.engines.items()} == {
        p: set(e.shards) for p, e in again.engines.items()
    }


def test_exceptions_carry_cloudevents_headers_with_a_stable_id() -> None:
    rec = Recorder()
    shell = make_shell(rec, source="/orderwatch/test")
    feed(shell, rec, scenario())
    assert rec.exceptions
    for body, headers in zip(rec.exceptions, rec.headers, strict=True):
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_id"].decode() == (
            f"{body['exception_id']}:{body['state']}:{body['escalation_level']}:{body['seq']}"
        )
        assert headers["ce_type"] == f"com.orderwatch.exception.{body['state']}".encode()
        assert headers["ce_source"] == b"/orderwatch/test"
        assert headers["content-type"] == b"application/json"


@pytest.mark.parametrize("silent_stream", ["orders", "logistics"])
def test_a_silent_stream_raises_one_exception_and_holds_its_timeouts(silent_stream: str) -> None:
    wall = [1_000_000.0]
    monitor = SilenceMonitor(
        dict(CATALOG),
        {"orders": "orders", "payment-callbacks": "payments", "logistics": "logistics"},
    )
    monitor.observe("orders", "oms", wall[0])
    monitor.observe("logistics", "carrier-sf", wall[0])
    monitor.observe("payment-callbacks", "pay-gateway", wall[0])
    other = "payment-callbacks"
    # 16 minutes later only the other stream has flowed
    wall[0] += 16 * 60
    monitor.observe(other, "pay-gateway", wall[0])
    keep = {"orders", "logistics"} - {silent_stream}
    for stream in keep:
        monitor.observe(stream, "x", wall[0])
    raised, held = monitor.check(wall[0])
    subjects = {(e.rule_id, e.subject, e.state) for e in raised}
    assert ("system.source_silent", silent_stream, "raised") in subjects
    if silent_stream == "orders":
        assert "payment.paid_not_updated" in held
    else:
        assert "logistics.tracking_stale" in held
    # traffic returns: the exception resolves, and the hold lifts after the release delay
    wall[0] += 1
    monitor.observe(silent_stream, "back", wall[0])
    resolved, still_held = monitor.check(wall[0])
    assert ("system.source_silent", silent_stream, "resolved") in {
        (e.rule_id, e.subject, e.state) for e in resolved
    }
    assert still_held, "held until the backlog has had time to arrive"
    _, released = monitor.check(wall[0] + monitor.release_after + 1)
    assert released == frozenset()


def test_held_deadlines_are_judged_after_the_hold_lifts() -> None:
    engine = Engine(CATALOG)
    from datetime import datetime

    from tests.factories import ts

    def at(t: str) -> float:
        return datetime.fromisoformat(ts(t).replace("Z", "+00:00")).timestamp()

    from orderwatch.events.codec import decode_event

    engine.hold(frozenset({"payment.paid_not_updated"}))
    for e in (created("O1", "10:00"), paid("O1", "10:01")):
        engine.step(decode_event(orjson.dumps(e)), at(e["occurred_at"]))
    assert engine.sweep(at("10:30")) == [], "held: the orders stream is silent"
    # the silent stream's backlog arrives: the status was set in time after all
    engine.step(decode_event(orjson.dumps(status("O1", "paid", "10:05"))), at("10:30"))
    engine.hold(frozenset())
    assert engine.sweep(at("10:31")) == []
    # and without the status the held timeout fires once released
    engine2 = Engine(CATALOG)
    engine2.hold(frozenset({"payment.paid_not_updated"}))
    for e in (created("O2", "10:00"), paid("O2", "10:01")):
        engine2.step(decode_event(orjson.dumps(e)), at(e["occurred_at"]))
    assert engine2.sweep(at("10:30")) == []
    engine2.hold(frozenset())
    assert [x.rule_id for x in engine2.sweep(at("10:31"))] == ["payment.paid_not_updated"]


def test_envelopes_close_before_they_outgrow_a_kafka_message() -> None:
    rec = Recorder()
    shell = make_shell(rec, clock="wall")
    big = created("O1", "10:00")
    big["note"] = "x" * 60_000  # an unknown field: carried, ignored by the model
    for i in range(20):
        shell.route(orjson.dumps({**big, "order_id": "O1", "event_id": f"E{i}"}), "orders", 0, i)
    shell.flush()
    sizes = [len(value) for k, value, *_ in rec.shard if k == BATCH]
    assert len(sizes) > 1 and max(sizes) <= envelope.MAX_BYTES
    assert [k for k, _ in routed(rec)].count(b"o:O1") == 20, "nothing lost across envelopes"


def test_an_envelope_this_worker_cannot_read_is_dead_lettered_not_dropped() -> None:
    """A later worker's format reaching this one in a rolling update, or a foreign writer."""
    rec = Recorder()
    shell = make_shell(rec)
    shell.process([(BATCH, b"OWB9" + b"\x00" * 40, 2, None, None)])
    assert shell.counters.failed == 1 and len(rec.dlq) == 1
    body, headers = rec.dlq[0]
    assert body.startswith(b"OWB9")
    assert dict(headers)["__connect.errors.exception.class.name"] == b"EnvelopeError"


def test_a_torn_envelope_is_refused_whole() -> None:
    items = [(b"o:O1", b"{}", "orders/0", 64), (b"o:O2", b"{}", "orders/1", 65)]
    value = envelope.pack(items)
    assert envelope.unpack(value) == items
    for cut in (len(value) - 1, len(envelope.MAGIC) + 3, len(envelope.MAGIC) + 8):
        with pytest.raises(envelope.EnvelopeError):
            envelope.unpack(value[:cut])
    old = envelope.pack_v1([(b"o:O1", b"{}")])  # an older worker's envelope is still read
    assert envelope.unpack(old) == [(b"o:O1", b"{}", envelope.NO_SOURCE, -1)]
    with pytest.raises(envelope.EnvelopeError):
        envelope.unpack(old[:-1])
    with pytest.raises(envelope.EnvelopeError):
        envelope.unpack(b'{"type": "order.created"}')


def occurred(event: dict[str, Any]) -> float:
    return decode_event(orjson.dumps(event)).occurred_ts


def test_a_router_whose_inputs_change_cannot_move_the_clock_on_its_old_report() -> None:
    """After a rebalance, a stamp is never read against the inputs the router used to cover."""
    rec = Recorder()
    shell = make_shell(rec)
    both = [("orders", 0), ("orders", 1)]

    def backlog(topic: str, partition: int) -> int:
        return 100  # a backlog left everywhere: the watermark is the slowest input's time

    start = len(rec.shard)
    shell.look(both, backlog)
    first = created("O1", "10:00")
    shell.route(orjson.dumps(first), "orders", 0, 0)
    shell.route(orjson.dumps(created("O2", "10:05")), "orders", 1, 0)
    shell.send_watermarks(both, backlog)
    shell.process(rec.shard[start:])
    assert set(shell.event_clock.values()) == {occurred(first)}

    # a rebalance gives orders/1 to a worker that has not reported yet; orders/0 reads ahead
    start = len(rec.shard)
    shell.look([("orders", 0)], backlog)
    shell.route(orjson.dumps(created("O3", "12:00")), "orders", 0, 1)
    shell.flush()
    shell.send_watermarks([("orders", 0)], backlog, expected=both)
    shell.process(rec.shard[start:])
    assert set(shell.event_clock.values()) == {occurred(first)}, "orders/1 is nobody's yet"


def test_an_input_with_nothing_left_to_read_does_not_hold_the_watermark() -> None:
    """Once it has looked so for longer than a fetch takes (``CAUGHT_UP_FOR``), not at once."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    both = [("orders", 0), ("orders", 1)]
    high = {("orders", 0): 100, ("orders", 1): 50}
    # orders/1 came from another worker that read and committed all of it
    start = {("orders", 0): 0, ("orders", 1): 50}
    first = created("O1", "10:00")
    shell.look(both, lambda t, p: high[(t, p)], lambda t, p: start[(t, p)])
    shell.route(orjson.dumps(first), "orders", 0, 0)
    assert shell.watermark()[0] == float("-inf"), "its high watermark may be a fetch old"
    wall[0] += 2
    assert shell.watermark()[0] == occurred(first)
    # not knowing where the consumer stands, the unread partition must hold it back
    shell.look(both, lambda t, p: high[(t, p)])
    assert shell.watermark()[0] == float("-inf")


def test_a_router_that_joins_while_input_is_written_does_not_vouch_for_it_at_first_look() -> None:
    """The join/leave rebalance test: a second worker's first fetch showed every partition it
    was given at its committed offset; it reported "nothing behind" (infinity) and the clock
    passed the events written there a moment later, before anyone had routed them."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    inputs = [("orders", 0), ("payment-callbacks", 0)]
    high = {("orders", 0): 40, ("payment-callbacks", 0): 20}
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: high[(t, p)])
    assert shell.watermark()[0] == float("-inf")
    high[("orders", 0)] = 45  # the next fetch: the writer's new orders
    wall[0] += 0.5
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: {("orders", 0): 40}.get((t, p), 20))
    assert shell.watermark()[0] == float("-inf"), "orders/0 has five events to read"


def test_the_blacklist_is_read_before_the_clock_passes_what_it_names() -> None:
    """Exempt from holding the watermark at its (old) last time, the blacklist still holds it
    while it has something unread, and lets go once it has been read to its end for a while."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0], watermark_exempt={"blacklist"})
    inputs = [("orders", 0), ("blacklist", 0)]
    high = {("orders", 0): 100, ("blacklist", 0): 2}
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: 0)
    first = created("O1", "10:00")
    shell.route(orjson.dumps(first), "orders", 0, 0)
    old = blacklist("customer_id", "C9", "00:00:30")
    shell.route(orjson.dumps(old), "blacklist", 0, 0)
    wall[0] += 5
    assert shell.watermark()[0] == occurred(old), "one entry still unread"
    shell.route(orjson.dumps(blacklist("customer_id", "C1", "09:59")), "blacklist", 0, 1)
    assert shell.watermark()[0] == occurred(blacklist("customer_id", "C1", "09:59"))
    wall[0] += 2  # read to its end for longer than a fetch takes: the orders alone count
    assert shell.watermark()[0] == occurred(first)
    assert shell.watermark()[1] == occurred(first), "its times are not the stream's"


def test_events_within_their_envelopes_watermark_are_read_in_time_order_without_waiting() -> None:
    """An envelope's stamp covers its own events: those at or before the clock it gives are
    read at their own time, in time order; only those beyond it wait, in the shell, and are
    parked in their shard when the state is written (before an offset commit)."""
    parked: list[str] = []

    class Counting(Engine):
        def _park(self, shard: Any, event: Any, occurred: float) -> None:
            parked.append(event.order_id)
            super()._park(shard, event, occurred)

    rec = Recorder()
    shell = make_shell(rec, engine=Counting)
    both = [("orders", 0), ("orders", 1)]

    def backlog(topic: str, partition: int) -> int:
        return 100

    shell.send_watermarks(both, backlog)  # the router covers both inputs, nothing read yet
    shell.process(rec.shard)
    start = len(rec.shard)
    shell.look(both, backlog)
    late = created("O3", "10:10")
    shell.route(orjson.dumps(late), "orders", 0, 0)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 1)
    shell.route(orjson.dumps(created("O2", "10:05")), "orders", 1, 0)
    shell.flush()  # stamp: orders/0 read to 10:10, orders/1 to 10:05 -> watermark 10:05
    shell.process(rec.shard[start:])
    waiting = [e[3].order_id for queue in shell.waiting.values() for e in queue]  # type: ignore[attr-defined]
    assert set(waiting) == {"O3"}, "only the event beyond the watermark waits (each copy)"
    assert parked == [] and shell.parked == len(waiting)
    assert max(shell.event_clock.values()) == occurred(created("O2", "10:05"))
    shell.persist()
    assert set(parked) == {"O3"}, "parked in its shards before the state is written"
    assert shell.waiting == {} and shell.parked == len(waiting)


def test_stage_two_reuses_what_stage_one_decoded_and_forgets_it_after_the_last_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import orderwatch.agents.shell as shell_module

    rec = Recorder()
    shell = make_shell(rec)
    decodes: list[bytes] = []

    def counting(raw: bytes) -> Any:
        decodes.append(raw)
        return decode_event(raw)

    monkeypatch.setattr(shell_module, "decode_event", counting)
    event = created("O1", "10:00")  # routed to its order and to its address/phone/customer
    feed(shell, rec, [event])
    copies = len(routed(rec))
    assert copies > 1
    assert len(decodes) == 1  # stage 1 only: every copy stage 2 read came from it
    assert shell.decoded == {}
    assert shell.counters.processed == copies

    # a partition this worker does not own is decoded by its owner, not kept here
    shell.revoke(set(range(PARTITIONS)))
    shell.route(orjson.dumps(created("O2", "10:05")), "orders", 0, rec.offset)
    assert shell.decoded == {}


def test_a_caught_up_router_that_goes_silent_stops_vouching_for_its_inputs() -> None:
    """A worker killed with -9 while caught up said "nothing behind" (an infinite watermark) in
    its last report, which stays live until it expires: the clock must not go past what it had
    read on the strength of that report while its inputs wait for the takeover."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    t10, t12, t1230 = (occurred(created("O", at)) for at in ("10:00", "12:00", "12:30"))

    def report(router: str, covers: str, hi: float) -> None:
        body = orjson.dumps({"covers": [covers], "expect": ["orders/0", "orders/1"]})
        shell._heard(0, f"{router} inf {hi!r}".encode(), body)

    report("a/1", "orders/0", t12)
    report("b/1", "orders/1", t10)
    assert shell.event_clock[0] == t12, "both caught up: the largest time read"
    wall[0] += 3  # b is gone; a reads on
    report("a/1", "orders/0", t1230)
    assert shell.event_clock[0] == t12, "b's inputs may hold events after 10:00 it never read"
    wall[0] += 10  # b expired: nobody covers orders/1 until the takeover
    report("a/1", "orders/0", t1230)
    assert shell.event_clock[0] == t12
    shell._heard(  # the takeover: a's new generation covers both
        0,
        f"a/2 inf {t1230!r}".encode(),
        orjson.dumps({"covers": ["orders/0", "orders/1"], "expect": ["orders/0", "orders/1"]}),
    )
    assert shell.event_clock[0] == t1230


def route_from(shell: Shell, rec: Recorder, events: list[dict[str, Any]], offset: int) -> None:
    """``feed`` with the input offsets given: a router reading the input from ``offset``."""
    start = len(rec.shard)
    end = offset + len(events)
    shell.look([("orders", 0)], lambda topic, partition: end)
    for i, e in enumerate(events):
        shell.route(orjson.dumps(e), "orders", 0, offset + i)
    shell.flush()
    shell.caught_up_since = -1e18
    shell.send_watermarks([("orders", 0)], lambda topic, partition: end)
    while start < len(rec.shard):
        batch, start = rec.shard[start:], len(rec.shard)
        shell.process(batch)


@contextlib.contextmanager
def restarted(rec: Recorder, store: str, tmp_path: Path) -> Iterator[Shell]:
    """A new process's shell over what the changelog holds: the table recovered, or each
    partition's RocksDB store (``store``)."""
    shell = make_shell(rec)
    shell.assigned = set()
    if store == "table":
        items = [(key, value) for (_, key), value in rec.changelog.items()]
        shell.restore(items, set(range(PARTITIONS)))
        yield shell
        return
    from rocksdict import Options, Rdict

    from orderwatch.agents import store as local

    dbs = {
        p: Rdict(str(tmp_path / f"p{p}"), options=Options(raw_mode=True)) for p in range(PARTITIONS)
    }
    try:
        for p, db in dbs.items():
            local.apply_writes(db, {k: v for (part, k), v in rec.changelog.items() if part == p})
        writer = local.Writer(store=None, changelog="c")
        writer.db = lambda partition: dbs[partition]  # type: ignore[method-assign]
        shell.restore_store(set(range(PARTITIONS)), writer.timers, writer.loader, 1000)
        yield shell
    finally:
        for db in dbs.values():
            db.close()


@pytest.mark.parametrize("store", ["table", "rocksdb"])
def test_the_positions_read_survive_a_restart(store: str, tmp_path: Path) -> None:
    """Stage 2 committed everything, stage 1 nothing (its commit lags): the router reads the
    whole input again, and every item is known as a copy from the positions recovered."""
    events = scenario()
    rec = Recorder()
    first = make_shell(rec)
    route_from(first, rec, events, 0)
    first.sweep()
    first.persist()
    published = len(rec.exceptions)
    with restarted(rec, store, tmp_path) as second:
        route_from(second, rec, events, 0)
        second.sweep()
    assert second.counters.copies == first.counters.queued
    assert second.counters.processed == 0 and rec.exceptions[published:] == []


@pytest.mark.parametrize("store", ["table", "rocksdb"])
def test_copies_routed_again_after_a_crash_are_known_even_when_their_shards_are_gone(
    store: str, tmp_path: Path
) -> None:
    """The fail-policy crash, without a broker: a worker reads the whole day, its clock goes
    three weeks on (the day's shards are forgotten), and it dies before committing. Its
    successor reads the dead one's envelopes again from the shard topic, then its own router
    routes the same input offsets again: those copies must not come as new orders."""
    later = plus("13:00", days=21)
    day = scenario()[:-PARTITIONS]  # without its end ticks
    for i in range(4):  # orders shipped and delivered: a copy of their tracking, as a new order
        oid, at = f"D{i}", plus("10:00", minutes=i)
        day += [
            created(oid, at),
            paid(oid, plus(at, minutes=1)),
            status(oid, "paid", plus(at, minutes=2)),
            logistics("shipped", oid, plus(at, hours=2)),
            status(oid, "shipped", plus(at, hours=2)),
            logistics("delivered", oid, plus(at, hours=20)),
            status(oid, "delivered", plus(at, hours=20)),
        ]
    day.sort(key=lambda e: e["occurred_at"])
    events = day + end_ticks(later)
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])

    rec = Recorder()
    first = make_shell(rec)
    half = len(events) // 2
    route_from(first, rec, events[:half], 0)
    first.sweep()
    first.persist()  # the last commit: the shard topic's offset and the changelog
    committed = len(rec.shard)
    route_from(first, rec, events[half:], half)
    first.sweep()
    assert sorted(set(keyset(rec.exceptions))) == expected
    published = len(rec.exceptions)

    with restarted(rec, store, tmp_path) as second:
        # stage 2 reads on from the committed offset: the dead one's envelopes and reports
        second.process(rec.shard[committed:])
        # stage 1 reads on from the last committed input offset: copies of what was routed
        route_from(second, rec, events[half:], half)
        second.sweep()
    assert second.counters.copies > 0
    assert set(keyset(rec.exceptions[published:])) <= set(expected), "nothing under a new id"
    assert sorted(set(keyset(rec.exceptions))) == expected


def test_a_write_between_commits_does_not_vouch_for_events_waiting_in_memory() -> None:
    """``DIRTY_LIMIT`` writes a partition's shards between commits: the positions it has read
    wait for the commit, or a crash then would skip, as copies, events that waited in memory."""

    def read(shell: Shell, rec: Recorder) -> None:
        start = len(rec.shard)
        inputs = [("orders", 0), ("orders", 1)]
        shell.look(inputs, lambda topic, partition: 100)  # more to read: the clock holds
        shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
        shell.route(orjson.dumps(created("O2", "12:00")), "orders", 1, 0)
        shell.flush()
        shell.process(rec.shard[start:])

    waiting = partition_for(b"o:O2", PARTITIONS)
    rec = Recorder()
    first = make_shell(rec)
    read(first, rec)
    assert "o:O2" in [e[2] for e in first.waiting[waiting]], "ahead of the clock (10:00)"
    first._persist(waiting, commit=False)  # the batch's write at DIRTY_LIMIT, then a kill -9
    second = make_shell(rec)
    second.assigned = set()
    second.restore([(key, value) for (_, key), value in rec.changelog.items()], set(range(4)))
    read(second, rec)  # the input again from its committed offset
    assert second.counters.copies == 0
    assert "o:O2" in [e[2] for e in second.waiting[waiting]]
    second.persist()  # a commit: what waited is parked in its shard, the positions written
    positions = orjson.loads(rec.changelog[(waiting, positions_key(waiting).encode())] or b"{}")
    assert positions[READ_TO]["orders/1"] < envelope.PER_MESSAGE, "offset 0"
    assert "o:O2" in second.engines[waiting].shards


def test_a_restart_on_the_local_store_keeps_the_blacklist(tmp_path: Path) -> None:
    """The blacklist is engine memory beside the cached shards: a restart on RocksDB reads each
    partition's copy back (it once forgot it: ``fraud.blacklisted`` missed after a kill -9)."""
    events = scenario()
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])
    rec = Recorder()
    first = make_shell(rec)
    half = len(events) // 2
    feed(first, rec, events[:half])
    first.sweep()
    first.persist()
    with restarted(rec, "rocksdb", tmp_path) as second:
        feed(second, rec, events[half:])
        second.sweep()
    assert sorted(set(keyset(rec.exceptions))) == expected


def test_inputs_read_too_far_ahead_of_the_slowest_one_with_a_backlog_are_paused() -> None:
    """Watermark alignment: a partition more than the drift past the slowest input that still has
    something to read is paused; one read to its end holds the others back only until it is idle
    (``CAUGHT_UP_FOR``) and is not paused meanwhile; the blacklist (exempt) neither pauses nor is
    paused; no drift, no pause."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, watermark_exempt={"blacklist"}, wall=lambda: wall[0])
    high = {("orders", 0): 100, ("payment-callbacks", 0): 100, ("logistics", 0): 100}
    high[("blacklist", 0)] = 100
    inputs = list(high)
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: 0)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
    assert shell.ahead(60.0) == {("orders", 0)}, "payments, logistics unread: may be older"
    shell.route(orjson.dumps(paid("O1", "10:01")), "payment-callbacks", 0, 0)
    shell.route(orjson.dumps(logistics("shipped", "O1", "12:00")), "logistics", 0, 0)
    shell.route(orjson.dumps(blacklist("customer_id", "C9", "15:00")), "blacklist", 0, 0)
    assert shell.ahead(60.0) == {("logistics", 0)}, "two hours ahead of orders at 10:00"
    assert shell.ahead(3 * 3600.0) == set()
    assert shell.ahead(0.0) == set(), "no drift: alignment off"
    assert shell.ahead(30.0) == {("payment-callbacks", 0), ("logistics", 0)}
    # orders read to its end: it holds the clock at 10:00:30 until idle, and is not paused
    shell.route(orjson.dumps(created("O2", "10:00:30")), "orders", 0, 99)
    assert shell.ahead(60.0) == {("logistics", 0)}, "payments (10:01) is the slowest now"
    shell.route(orjson.dumps(paid("O2", "11:59:30")), "payment-callbacks", 0, 99)
    assert shell.ahead(60.0) == {("payment-callbacks", 0), ("logistics", 0)}, (
        "orders, read to its end a moment ago, still holds the clock at 10:00:30"
    )
    wall[0] += CAUGHT_UP_FOR
    assert shell.ahead(60.0) == set(), "orders idle: logistics alone has a backlog, never paused"


def test_empty_inputs_hold_a_backfill_in_kafka_until_they_are_idle() -> None:
    """An empty partition (the commands topic) holds the watermark at -inf for
    ``CAUGHT_UP_FOR``: whatever is read meanwhile would wait in memory (a fifth of the alignment
    test's backlog), so every partition read from is paused until the empty one is idle."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    high = {("orders", 0): 100, ("logistics", 0): 100, ("commands", 0): 0}
    inputs = list(high)
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: 0)
    assert shell.ahead(60.0) == set(), "nothing read: nothing to pause"
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
    assert shell.ahead(60.0) == {("orders", 0)}, "the empty commands partition holds at -inf"
    shell.route(orjson.dumps(logistics("shipped", "O1", "12:00")), "logistics", 0, 0)
    assert shell.ahead(60.0) == {("orders", 0), ("logistics", 0)}
    wall[0] += CAUGHT_UP_FOR / 2
    assert shell.ahead(60.0) == {("orders", 0), ("logistics", 0)}, "not idle yet"
    wall[0] += CAUGHT_UP_FOR / 2
    assert shell.ahead(60.0) == {("logistics", 0)}, "commands idle: orders (10:00) is the clock"


def test_during_a_hold_the_inputs_read_on_until_the_read_ahead_is_spent() -> None:
    """A clock held by an input with nothing left to read (the empty commands partition, or one
    just read to its end) ends by itself within ``CAUGHT_UP_FOR``: with ``hold_read_ahead`` the
    others read on meanwhile, aligned to the slowest one with a backlog, until that many records
    wait past the clock; then they are paused at the clock, as without it."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0], hold_read_ahead=3)
    high = {("orders", 0): 100, ("logistics", 0): 100, ("commands", 0): 0}
    shell.look(list(high), lambda t, p: high[(t, p)], lambda t, p: 0)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
    shell.route(orjson.dumps(logistics("shipped", "O1", "10:00:30")), "logistics", 0, 0)
    assert shell.watermark()[0] == float("-inf"), "the empty commands partition holds it"
    assert shell.ahead(60.0) == set(), "two records past the clock: both read on"
    shell.route(orjson.dumps(logistics("shipped", "O2", "12:00")), "logistics", 0, 1)
    assert shell.ahead(60.0) == {("orders", 0), ("logistics", 0)}, "three: paused at the clock"
    wall[0] += CAUGHT_UP_FOR
    assert shell.ahead(60.0) == {("logistics", 0)}, "hold over: aligned to orders (10:00) again"
    # orders, read to its end, holds the clock at 10:10 until idle: logistics, the backlog,
    # reads on until three of its records are past that clock
    shell.route(orjson.dumps(created("O3", "10:10")), "orders", 0, 99)
    assert shell.ahead(60.0) == set(), "orders ran dry: logistics reads on"
    shell.route(orjson.dumps(logistics("shipped", "O3", "12:30")), "logistics", 0, 2)
    assert shell.ahead(60.0) == set(), "two past the clock"
    shell.route(orjson.dumps(logistics("shipped", "O4", "13:00")), "logistics", 0, 3)
    assert shell.ahead(60.0) == {("logistics", 0)}, "three past the clock: paused at 10:10"
    wall[0] += CAUGHT_UP_FOR
    assert shell.ahead(60.0) == set(), "orders idle: logistics alone, never paused"


def test_with_a_lead_an_input_reads_that_many_records_past_the_clock_before_it_pauses() -> None:
    """``align_lead``: a partition past the drift is paused only once it holds that many records
    the clock has not reached, so a fetch of every input is read at once (by event time alone a
    backfill was read one partition a fetch); the records the clock passes stop counting."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    shell.align_lead = 3
    high = {("orders", 0): 100, ("logistics", 0): 100}
    inputs = list(high)
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: 0)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
    for i in range(2):
        shell.route(orjson.dumps(logistics("shipped", f"O{i}", f"1{2 + i}:00")), "logistics", 0, i)
    assert shell.ahead(60.0) == set(), "logistics two hours ahead, but two records: read on"
    shell.route(orjson.dumps(logistics("shipped", "O3", "14:00")), "logistics", 0, 2)
    assert shell.ahead(60.0) == {("logistics", 0)}, "three records past the clock (10:00)"
    shell.route(orjson.dumps(created("O4", "12:30")), "orders", 0, 1)
    assert shell.ahead(60.0) == set(), "the clock (12:30) passed the one at 12:00: two left"
    assert len(shell.lead[("logistics", 0)]) == 2
    assert len(shell.lead[("orders", 0)]) == 0, "the slowest input's records are never ahead"


def test_the_parked_count_follows_the_clock() -> None:
    """``Shell.parked``: events applied ahead of their partition's clock, until it reaches them."""
    rec = Recorder()
    wall = [1_000_000.0]
    shell = make_shell(rec, wall=lambda: wall[0])
    inputs = [("orders", 0), ("payment-callbacks", 0)]
    high = {("orders", 0): 10, ("payment-callbacks", 0): 10}
    shell.look(inputs, lambda t, p: high[(t, p)], lambda t, p: 0)
    shell.route(orjson.dumps(created("O1", "10:00")), "orders", 0, 0)
    for i in range(3):
        shell.route(
            orjson.dumps(paid(f"O{i}", plus("11:00", minutes=i))), "payment-callbacks", 0, i
        )
    shell.flush()
    shell.send_watermarks(inputs, lambda t, p: high[(t, p)])
    shell.process(rec.shard)
    per_payment = shell.parked // 3  # a copy in each shard a payment is routed to
    assert shell.parked == 3 * per_payment > 0, "three payments read an hour ahead of the orders"
    shell.route(orjson.dumps(created("O9", "11:01:30")), "orders", 0, 1)
    start = len(rec.shard)
    shell.flush()
    shell.send_watermarks(inputs, lambda t, p: high[(t, p)])
    shell.process(rec.shard[start:])
    assert shell.parked == per_payment, "the clock (11:01:30) has reached two of them"
    shell.revoke(shell.owned)
    assert shell.parked == 0


Streams = dict[str, list[bytes]]
High = dict[tuple[str, int], int]


def uneven_backlog() -> tuple[Streams, High, list[tuple[str, str, str, int]]]:
    """A simulated day as two inputs (orders, everything else) and replay's exceptions."""
    from orderwatch.simulation.traffic import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=5, orders=40, anomaly_rate=0.3))
    day = list(sim.events())
    events = day + end_ticks(sim.manifest()["until"])
    expected = keyset([e.model_dump(mode="json") for e in run(events).exceptions])
    streams: Streams = {"orders": [], "others": []}
    for e in events:
        streams["orders" if e["type"].startswith("order.") else "others"].append(orjson.dumps(e))
    return streams, {(topic, 0): len(values) for topic, values in streams.items()}, expected


def route_unevenly(router: Shell, streams: Streams, read: dict[str, int], high: High) -> None:
    """One round of stage 1 over ``uneven_backlog``: 40 orders, 10 of the rest, watermarks."""
    inputs = list(high)
    router.look(inputs, lambda t, p: high[(t, p)])
    for topic, chunk in (("orders", 40), ("others", 10)):
        for value in streams[topic][read[topic] : read[topic] + chunk]:
            router.route(value, topic, 0, read[topic])
            read[topic] += 1
    router.flush()
    router.send_watermarks(inputs, lambda t, p: high[(t, p)])


def detect(rec: Recorder, start: int, detector: Shell) -> int:
    """Stage 2 over the shard messages from ``start`` until none is left; where it ended."""
    while start < len(rec.shard):
        batch, start = rec.shard[start:], len(rec.shard)
        detector.process(batch)
    return start


@pytest.mark.parametrize("commit_every", [0, 3])
def test_a_backlog_read_unevenly_parks_most_events_and_the_day_agrees_with_replay(
    commit_every: int,
) -> None:
    """A backlog read unevenly (many orders, then few of the other streams): many events are
    read ahead of the clock and wait, parked in their shards, until it reaches them; with
    commits between (``commit_every`` rounds) or not, the day's exceptions are replay's."""
    streams, high, expected = uneven_backlog()
    inputs = list(high)
    rec = Recorder()
    shell = make_shell(rec)
    read = dict.fromkeys(streams, 0)
    most_parked, rounds, start = 0, 0, 0
    while any(read[t] < len(v) for t, v in streams.items()):
        route_unevenly(shell, streams, read, high)
        start = detect(rec, start, shell)
        most_parked = max(most_parked, shell.parked)
        rounds += 1
        if commit_every and rounds % commit_every == 0:
            shell.persist()
        shell.sweep()
    shell.caught_up_since = -1e18  # caught up long ago: the clock moves to the largest time read
    shell.send_watermarks(inputs, lambda t, p: high[(t, p)])
    detect(rec, start, shell)
    shell.sweep()
    assert most_parked > 0, "the orders read ahead waited"
    assert shell.parked == 0
    assert sorted(set(keyset(rec.exceptions))) == expected


@pytest.mark.parametrize("crash_round", [4, 7])
def test_events_waiting_in_the_shell_survive_a_crash_after_a_commit(crash_round: int) -> None:
    """Events read ahead of the clock wait in the shell, in memory (``Shell.waiting``). A commit
    (``persist``, then the offsets of every envelope read so far) must not cover one of them in
    memory alone: stage 2 killed after a commit and recovered from the changelog, reading the
    shard topic again from the committed position, gives exactly replay's exceptions."""
    streams, high, expected = uneven_backlog()
    inputs = list(high)
    rec = Recorder()
    router = make_shell(rec)  # stage 1 (its stage 2 is never used)
    detector = make_shell(rec)  # stage 2, killed once
    read = dict.fromkeys(streams, 0)
    rounds = start = committed = 0
    waited_at_crash = 0
    while any(read[t] < len(v) for t, v in streams.items()):
        route_unevenly(router, streams, read, high)
        start = detect(rec, start, detector)
        rounds += 1
        if rounds % 3 == 0:
            detector.persist()  # the commit: the state first, then every offset read so far
            committed = start
        detector.sweep()
        if rounds == crash_round:
            waited_at_crash = sum(len(queue) for queue in detector.waiting.values())
            # killed: only the changelog and the committed position survive
            detector = make_shell(rec)
            detector.restore(
                [(key, value) for (_, key), value in rec.changelog.items()], set(range(PARTITIONS))
            )
            start = committed
    router.caught_up_since = -1e18  # caught up long ago: the clock moves to the largest time read
    router.send_watermarks(inputs, lambda t, p: high[(t, p)])
    detect(rec, start, detector)
    detector.sweep()
    assert waited_at_crash > 0, "events were waiting in the shell when it was killed"
    assert detector.parked == 0
    assert sorted(set(keyset(rec.exceptions))) == expected
