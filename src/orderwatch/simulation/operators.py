"""A simulated on-call operator for the demo: acknowledges, snoozes and resolves exceptions.

It works like any team's tool would (CONTRACT section 8): it reads ``order-exceptions``, decides
from the exception events alone, and sends commands to ``order-exception-commands`` keyed by
``exception_id``, with ``expected_status`` set to the status it last saw. It never touches the
worker's state. What it does, so the demo shows every part of the loop:

* acknowledges about one open exception in two (chosen by a hash of the exception_id, so a run
  is reproducible), after a few seconds of "thinking";
* snoozes the first exception it acknowledged, for an hour;
* resolves acknowledged notifications (rules that never resolve by themselves) by hand: the first
  ``fraud.*`` one as a ``false_positive``, the others as ``fixed``; and about one acknowledged
  resolvable exception in three as ``fixed`` (the others wait for their own resolving event,
  or their acknowledgement timeout).

``Operator`` is pure (it takes ``now``; tests drive it); ``run_operator`` is the Kafka shell.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from orderwatch.commands_client import Topics, build_command, parse_reply
from orderwatch.engine.catalog import RULE_DEFS

#: ``source`` of its commands: a reader of the topics can tell the robot from a person.
SOURCE = "sim-operator"


def _pick(exception_id: str, salt: str, one_in: int) -> bool:
    """A stable choice per exception: the same run makes the same decisions."""
    digest = hashlib.sha256(f"{salt}|{exception_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % one_in == 0


def _resolvable(rule_id: str) -> bool:
    rule = RULE_DEFS.get(rule_id)
    return rule is None or rule.resolvable


@dataclass
class Operator:
    """Decides, from the exception events read, which command to send and when.

    Attributes:
        actor: the operator's name on every command.
        think: seconds between seeing something and acting on it.
        ack_one_in: acknowledge about one open exception in this many.
        fix_one_in: resolve about one acknowledged resolvable exception in this many as fixed.
        snooze_for: the snooze's duration (the contract's ``for``).
    """

    actor: str = "ops-demo"
    think: float = 3.0
    ack_one_in: int = 2
    fix_one_in: int = 3
    snooze_for: str = "1h"
    #: exception_id -> the latest event read (by seq)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (due, order, exception_id, kind, fields, status it was planned in)
    _plan: list[tuple[float, int, str, str, dict[str, Any], str]] = field(default_factory=list)
    _order: int = 0
    _done: set[tuple[str, str]] = field(default_factory=set)
    snoozed: str | None = None
    false_positive: str | None = None
    #: commands sent, by type (resolve: by resolution)
    sent: Counter[str] = field(default_factory=Counter)

    def read(self, event: dict[str, Any], now: float) -> None:
        """One exception event from the topic; plans what to do about it."""
        ex_id = event.get("exception_id")
        if not isinstance(ex_id, str):
            return
        seen = self.latest.get(ex_id)
        if seen is not None and seen.get("seq", 1) >= event.get("seq", 1):
            return  # re-delivered or older
        self.latest[ex_id] = event
        status, state = event.get("status"), event.get("state")
        if status == "open" and state in ("raised", "escalated"):
            if _pick(ex_id, "ack", self.ack_one_in):
                self._plan_once(ex_id, "acknowledge", {}, now, "open")
        elif status == "acknowledged" and event.get("acknowledged_by") == self.actor:
            self._after_ack(event, now)

    def _after_ack(self, event: dict[str, Any], now: float) -> None:
        ex_id, rule_id = event["exception_id"], str(event.get("rule_id"))
        if self.snoozed is None:
            self.snoozed = ex_id
            self._plan_once(ex_id, "snooze", {"for": self.snooze_for}, now, "acknowledged")
        elif not _resolvable(rule_id):
            if self.false_positive is None and rule_id.startswith("fraud."):
                self.false_positive = ex_id
                fields = {
                    "resolution": "false_positive",
                    "note": "known wholesale customer, checked by phone",
                }
            else:
                fields = {"resolution": "fixed", "note": "handled"}
            self._plan_once(ex_id, "resolve", fields, now, "acknowledged")
        elif _pick(ex_id, "fix", self.fix_one_in):
            self._plan_once(
                ex_id,
                "resolve",
                {"resolution": "fixed", "note": "fixed by hand"},
                now,
                "acknowledged",
            )

    def _plan_once(
        self, ex_id: str, kind: str, fields: dict[str, Any], now: float, status: str
    ) -> None:
        if (ex_id, kind) in self._done:
            return
        self._done.add((ex_id, kind))
        self._order += 1
        heapq.heappush(self._plan, (now + self.think, self._order, ex_id, kind, fields, status))

    def due(self, now: float) -> list[dict[str, Any]]:
        """The commands whose time has come, as JSON objects for the commands topic.

        A plan made for a status the exception has left meanwhile (resolved by its rule, taken
        by someone else) is dropped, as a person would on looking again.
        """
        out: list[dict[str, Any]] = []
        while self._plan and self._plan[0][0] <= now:
            _, _, ex_id, kind, fields, status = heapq.heappop(self._plan)
            event = self.latest.get(ex_id)
            if event is None or event.get("status") != status:
                continue
            out.append(
                build_command(
                    kind,
                    ex_id,
                    str(event["rule_id"]),
                    str(event["subject"]),
                    self.actor,
                    expected_status=status,
                    fields=fields,
                    command_id=f"{SOURCE}-{kind}-{ex_id}",
                    source=SOURCE,
                )
            )
            self.sent[kind if kind != "resolve" else f"resolve:{fields['resolution']}"] += 1
        return out


async def run_operator(
    topics: Topics,
    stop: asyncio.Event,
    operator: Operator | None = None,
    on_reply: Callable[[bool], None] | None = None,
) -> Operator:
    """Read exceptions (and replies), send the operator's commands, until ``stop`` is set."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    operator = operator or Operator()
    consumer = AIOKafkaConsumer(
        topics.exceptions,
        topics.results,
        bootstrap_servers=topics.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        **topics.kafka,
    )
    producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", **topics.kafka)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == topics.results:
                        reply = parse_reply(record.value)
                        mine = reply is not None and reply.command_id.startswith(SOURCE)
                        if reply is not None and mine and on_reply is not None:
                            on_reply(reply.accepted)
                        continue
                    try:
                        event = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(event, dict):
                        operator.read(event, now)
            for command in operator.due(now):
                await producer.send(
                    topics.commands,
                    orjson.dumps(command),
                    key=str(command["exception_id"]).encode(),
                )
    finally:
        await producer.stop()
        await consumer.stop()
    return operator
