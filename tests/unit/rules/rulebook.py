"""Small helpers shared by the rule-book tests: read times and check an exception's card."""

from __future__ import annotations

from datetime import datetime

from orderwatch.events.exception import ExceptionEvent
from tests.factories import ts


def at(when: str) -> datetime:
    """``"10:10"`` (test day, UTC) or a full RFC 3339 string as an aware datetime."""
    return datetime.fromisoformat(ts(when))


def assert_card(e: ExceptionEvent, category: str, severity: str, owner: str) -> None:
    """The catalog facts (CONTRACT section 5) every exception of a rule carries."""
    assert (e.category, e.severity, e.owner) == (category, severity, owner)
    assert e.actions, "the playbook travels with the exception"
    assert e.summary and "?" not in e.summary, f"summary has an unfilled field: {e.summary}"
