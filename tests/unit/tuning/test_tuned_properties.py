"""Hypothesis with a tuned rule set: re-delivering any events, anywhere, changes nothing.

The facts an order keeps for overrides (carrier, warehouse, channel...) and the working-hours and
period arithmetic must be as idempotent as the rest of the engine: the same histories as
``tests/unit/test_properties.py``, replayed with overrides that match them.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import to_jsonl
from tests.unit.test_properties import PROPERTY, UNTIL, Event, histories
from tests.unit.tuning.books import rules_dir

CALENDAR = """
periods:
  sale:
    start: 2026-11-20
    end: 2026-11-20
    time_zone: Asia/Shanghai
    scale:
      logistics.tracking_stale: 3
      logistics.not_shipped: 2
working_hours:
  office:
    time_zone: Asia/Shanghai
    days: [mon, tue, wed, thu, fri]
    hours: ["09:00-12:00", "13:00-18:00"]
"""
EDITS: dict[str, dict[str, object]] = {
    "logistics.tracking_stale": {
        "overrides": [{"when": {"carrier": "carrier-sf"}, "params": {"threshold": "30h"}}]
    },
    "logistics.not_shipped": {
        "overrides": [
            {
                "when": {"warehouse_id": "WH1"},
                "working_hours": "office",
                "params": {"threshold": "9h"},
            }
        ]
    },
    "payment.paid_not_updated": {
        "overrides": [{"when": {"country": "CN"}, "params": {"threshold": "7m"}, "severity": "low"}]
    },
    "fraud.abnormal_quantity": {
        "overrides": [{"when": {"province": "Shanghai"}, "params": {"max_quantity": 5}}]
    },
    "customer.invalid_address": {"overrides": [{"when": {"period": "sale"}, "owner": "warehouse"}]},
}


def _catalog() -> Any:
    import tempfile

    return load_catalog(rules_dir(Path(tempfile.mkdtemp(prefix="tuned-props-")), EDITS, CALENDAR))


_TUNED = _catalog()


def _output(events: list[Event]) -> list[bytes]:
    out, err = io.BytesIO(), io.StringIO()
    until = datetime.fromisoformat(UNTIL)
    replay(io.BytesIO(to_jsonl(events)).readlines(), Engine(_TUNED), out, err, until)
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


@PROPERTY
@given(data=st.data(), history=histories())
def test_redelivering_with_overrides_and_calendars_changes_nothing(
    data: st.DataObject, history: tuple[list[Event], dict[str, Any]]
) -> None:
    events, _ = history
    redelivered = list(events)
    picks = data.draw(
        st.lists(st.integers(0, len(events) - 1), max_size=len(events)), label="copies of"
    )
    for index in picks:
        original = redelivered.index(events[index])
        slot = data.draw(st.integers(original + 1, len(redelivered)), label="slot")
        redelivered.insert(slot, events[index])
    assert _output(redelivered) == _output(events)
