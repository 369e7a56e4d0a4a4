"""What the action rule books share: a replay that keeps exceptions, replies and action events,
rule directories with one policy changed, and builders of commands and action results."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine
from orderwatch.events.actions import ActionEvent
from orderwatch.events.commands import CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import to_jsonl, ts

RULES = Path(__file__).resolve().parents[3] / "rules"


@dataclass
class Result:
    exceptions: list[ExceptionEvent]
    replies: list[CommandReply]
    actions: list[ActionEvent]
    #: the ``blacklist.added`` entries approved suggestions made (``replay --blacklist``)
    blacklist: list[dict[str, Any]]

    def of(self, kind: str) -> list[ActionEvent]:
        return [a for a in self.actions if a.type == kind]

    def statuses(self, kind: str | None = None) -> list[str]:
        return [a.status for a in self.actions if kind is None or a.type == kind]

    def exception(self, rule_id: str) -> ExceptionEvent:
        return next(e for e in self.exceptions if e.rule_id == rule_id)


def run(
    events: list[dict[str, Any]], until: str | None = None, rules: Path | None = None
) -> Result:
    out, err, replies, actions = io.BytesIO(), io.StringIO(), io.BytesIO(), io.BytesIO()
    entries = io.BytesIO()
    engine = Engine(load_catalog(rules))
    until_at = datetime.fromisoformat(ts(until)) if until else None
    replay(
        io.BytesIO(to_jsonl(events)).readlines(),
        engine,
        out,
        err,
        until_at,
        replies=replies,
        actions=actions,
        blacklist=entries,
    )
    assert err.getvalue() == "", err.getvalue()
    return Result(
        [ExceptionEvent.model_validate_json(x) for x in out.getvalue().splitlines()],
        [CommandReply.model_validate_json(x) for x in replies.getvalue().splitlines()],
        [ActionEvent.model_validate_json(x) for x in actions.getvalue().splitlines()],
        [orjson.loads(x) for x in entries.getvalue().splitlines()],
    )


def rules_with(tmp_path: Path, rule_id: str, block: str) -> Path:
    """A copy of ``rules/`` where ``rule_id``'s file has this ``remediation`` block."""
    folder = tmp_path / "rules"
    if not folder.exists():
        shutil.copytree(RULES, folder)
    path = folder / f"{rule_id}.yaml"
    text = path.read_text()
    if "remediation:" in text:
        text = text[: text.index("remediation:")]
    path.write_text(text + "remediation:\n" + block)
    return folder


def command(kind: str, cid: str, at: str, e: ExceptionEvent, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": cid,
        "type": f"command.{kind}",
        "occurred_at": ts(at),
        "source": "cli",
        "exception_id": e.exception_id,
        "rule_id": e.rule_id,
        "subject": e.subject,
        "actor": "alice",
        **fields,
    }


def result(ok: bool, action: ActionEvent, at: str, eid: str | None = None) -> dict[str, Any]:
    return {
        "event_id": eid or f"res-{action.action_id[:8]}-{at}",
        "type": "action.succeeded" if ok else "action.failed",
        "occurred_at": ts(at),
        "source": "oms",
        "action_id": action.action_id,
        "order_id": action.order_id,
    }
