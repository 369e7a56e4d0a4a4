"""The shell's part of operator commands: replies to their topic, flags to the order's partition.

Commands are routed like events (by the shard that owns their exception) and applied in that
partition's engine; the shell publishes each reply keyed by exception_id. A fraud window's flag
for an order leaves its engine and reaches the order's partition through the shard topic.
"""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.agents.shell import BATCH, partition_for
from orderwatch.engine.lifecycle import exception_id
from tests.agents.test_shell import PARTITIONS, Recorder, feed, make_shell
from tests.factories import command, created, paid, run, status, ts


class WithReplies(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.replies: list[tuple[bytes, bytes]] = []

    def send_reply(self, key: bytes, value: bytes) -> None:
        self.replies.append((key, value))


def test_a_command_gets_its_reply_keyed_by_exception_id_and_its_event() -> None:
    rec = WithReplies()
    shell = make_shell(rec, send_reply=rec.send_reply)
    ex: dict[str, Any] = {
        "exception_id": exception_id("payment.paid_not_updated", "O1", ts("10:10")),
        "rule_id": "payment.paid_not_updated",
        "subject": "O1",
    }
    ack = command("acknowledge", ex, "10:12", event_id="ack-1")
    events = [created("O1", "09:59"), paid("O1", "10:00"), status("T", "paid", "10:11"), ack]
    feed(shell, rec, events)
    feed(shell, rec, [ack])  # read again
    assert [e["state"] for e in rec.exceptions if e["subject"] == "O1"] == [
        "raised",
        "acknowledged",
    ]
    assert len(rec.replies) == 2 and rec.replies[0] == rec.replies[1]
    key, value = rec.replies[0]
    assert key == ex["exception_id"].encode()
    assert orjson.loads(value)["status"] == "acknowledged"
    result = run([*events, ack])  # replay: the same events, the same replies
    assert [e.state for e in result.of("payment.paid_not_updated")] == ["raised", "acknowledged"]
    assert result.replies == [v for _, v in rec.replies]


def test_a_fraud_windows_flag_travels_to_the_partition_that_owns_the_order() -> None:
    rec = WithReplies()
    shell = make_shell(rec, send_reply=rec.send_reply)
    burst = [
        created(f"B{i}", f"10:0{i}", customer_id="NEW", account_created_at=ts("09:00"))
        for i in range(5)
    ]
    feed(shell, rec, burst)
    flags = [(k, p) for k, v, p, _, _ in rec.shard if k != BATCH and v.startswith(b'{"type"')]
    assert sorted(k for k, _ in flags) == [f"o:B{i}".encode() for i in range(5)]
    assert all(p == partition_for(k, PARTITIONS) for k, p in flags)
    flagged = sorted(
        e["subject"] for e in rec.exceptions if e["rule_id"] == "fraud.new_account_burst"
    )
    assert flagged == [f"B{i}" for i in range(5)]
    assert flagged == sorted(e.subject for e in run(burst).of("fraud.new_account_burst"))
