"""The shell's part of blacklist.suggest and of the action records (CONTRACT section 10).

An approved suggestion's ``blacklist.added`` leaves the action partition's engine for the blacklist
topic, keyed by its value; read back like any blacklist change it reaches every partition, so the
customer's next order is ``fraud.blacklisted``, as in replay. Each order's action records live in
the engine that owns ``g:actions`` (never where their own key would hash): they are written to
its changelog partition and a recovery from the table puts them back there.
"""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.agents.shell import partition_for
from orderwatch.engine.state import ACTION_RECORDS, ACTIONS
from tests.agents.test_shell import PARTITIONS, Recorder, feed, make_shell
from tests.factories import created, paid, plus, refunded
from tests.unit.actions.book import command
from tests.unit.actions.book import run as replay_run

DAY0 = "2026-11-01T10:00:00Z"


class WithOutputs(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.actions: list[dict[str, Any]] = []
        self.entries: list[tuple[bytes, bytes]] = []

    def send_action(self, key: bytes, value: bytes) -> None:
        self.actions.append(orjson.loads(value))

    def send_blacklist(self, key: bytes, value: bytes) -> None:
        self.entries.append((key, value))


def _refunds() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n, day in enumerate((0, 5, 10), 1):
        at = plus(DAY0, days=day)
        events += [
            created(f"O{n}", at, customer_id="C7"),
            paid(f"O{n}", plus(at, minutes=1), payment_id=f"P{n}"),
            refunded(f"O{n}", plus(at, hours=1), payment_id=f"P{n}"),
        ]
    return events


def test_an_approved_suggestion_reaches_the_blacklist_topic_and_every_partition() -> None:
    offline = replay_run(_refunds())
    [suggest] = offline.of("blacklist.suggest")
    approve = command(
        "approve",
        "c1",
        plus(DAY0, days=11),
        offline.exception("fraud.frequent_refunds"),
        action_id=suggest.action_id,
    )
    nxt = created("O9", plus(DAY0, days=12), customer_id="C7")
    rec = WithOutputs()
    shell = make_shell(rec, send_action=rec.send_action, send_blacklist=rec.send_blacklist)
    feed(shell, rec, _refunds())
    feed(shell, rec, [approve])  # once the suggestion is published, as a person would
    [(key, value)] = rec.entries
    entry = orjson.loads(value)
    assert key == b"C7" and entry["type"] == "blacklist.added" and entry["value"] == "C7"
    # the worker reads its blacklist topic: the entry is routed to every partition
    feed(shell, rec, [entry, nxt])
    assert [e["subject"] for e in rec.exceptions if e["rule_id"] == "fraud.blacklisted"] == ["O9"]
    # what replay gives for the same input (it reads the entry back at once)
    want = replay_run([*_refunds(), approve, nxt])
    assert want.blacklist == [entry]
    assert [(a["action_id"], a["status"]) for a in rec.actions] == [
        (a.action_id, a.status) for a in want.actions
    ]


def test_action_records_live_and_recover_beside_g_actions() -> None:
    offline = replay_run(_refunds())
    [suggest] = offline.of("blacklist.suggest")
    rec = WithOutputs()
    shell = make_shell(rec, send_action=rec.send_action)
    feed(shell, rec, _refunds())
    home = partition_for(ACTIONS.encode(), PARTITIONS)
    records = ACTION_RECORDS + "O3"
    assert partition_for(records.encode(), PARTITIONS) != home, "the test needs another partition"
    assert records in shell.engines[home].shards
    shell.persist()
    assert (home, records.encode()) in rec.changelog
    table = [(k, v) for (_, k), v in rec.changelog.items()]
    again = make_shell(Recorder())
    again.restore(table, set(range(PARTITIONS)))
    restored = again.engines[home].shards[records]
    assert suggest.action_id in restored.actions  # type: ignore[attr-defined]
    assert all(records not in e.shards for p, e in again.engines.items() if p != home)
