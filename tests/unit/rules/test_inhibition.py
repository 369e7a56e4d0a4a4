"""Inhibition (CONTRACT section 9): one root cause pages once, both ways and on the same tick.

- payment.orphan explains payment.paid_not_updated: a payment for an order the OMS never
  published falls due for both at 10:10 (the same tick), and the orphan is judged first.
- inventory.oversold explains logistics.not_shipped: a paid order short of stock.
- logistics.lost_or_damaged (a notification) explains tracking_stale and delivery_delayed until a
  person resolves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orderwatch.errors import RuleFileError
from orderwatch.rulefiles import default_rules_dir, load_catalog
from tests.factories import (
    command,
    created,
    logistics,
    paid,
    reservation_failed,
    reserved,
    run,
    status,
)
from tests.unit.rules.helpers import carrier_exception
from tests.unit.rules.rulebook import at

PNU, ORPHAN = "payment.paid_not_updated", "payment.orphan"
NOT_SHIPPED, OVERSOLD = "logistics.not_shipped", "inventory.oversold"
D3 = "2026-11-22T"


def tick(when: str) -> dict[str, Any]:
    return status("T", "pending_payment", when)


def trail(result: Any, *rules: str) -> list[tuple[str, str, str | None]]:
    return [(e.rule_id, e.state, e.status) for e in result.exceptions if e.rule_id in rules]


# --- inhibitor first, on the same tick ----------------------------------------------------------


def test_orphan_and_paid_not_updated_due_on_the_same_tick_page_once() -> None:
    result = run([paid("O3", "10:00"), tick("10:11")])
    assert trail(result, PNU, ORPHAN) == [
        (ORPHAN, "raised", "open"),
        (PNU, "inhibited", "inhibited"),
    ]
    orphan, target = result.of(ORPHAN)[0], result.of(PNU)[0]
    assert target.inhibited_by == orphan.exception_id and target.seq == 1
    assert target.escalation_level == 0


def test_inhibited_never_escalates_and_is_raised_when_the_inhibitor_resolves() -> None:
    result = run([paid("O3", "10:00"), tick("12:00"), created("O3", "12:30"), tick("13:30:01")])
    assert trail(result, PNU) == [
        (PNU, "inhibited", "inhibited"),
        (PNU, "raised", "open"),
        (PNU, "escalated", "open"),
    ]
    inhibited, released, escalated = result.of(PNU)
    assert released.exception_id == inhibited.exception_id and released.seq == 2
    assert released.inhibited_by is None and released.detected_at == at("12:30")
    assert escalated.detected_at == at("13:30:01"), "next escalation escalate_after later"
    assert [e.state for e in result.of(ORPHAN)] == ["raised", "escalated", "escalated", "resolved"]


def test_resolved_meanwhile_by_its_own_condition_it_is_not_raised_again() -> None:
    events = [
        paid("O3", "10:00"),
        tick("10:11"),
        status("O3", "paid", "10:20"),
        created("O3", "10:30"),
    ]
    result = run(events, until="14:00")
    assert trail(result, PNU) == [(PNU, "inhibited", "inhibited"), (PNU, "resolved", "resolved")]
    assert result.of(PNU)[1].resolved_by == "rule"


def test_an_operator_resolving_the_inhibitor_releases_the_target() -> None:
    events = [paid("O3", "10:00"), tick("10:11")]
    orphan = run(events).of(ORPHAN)[0]
    result = run([*events, command("resolve", orphan, "10:20", resolution="fixed")])
    assert trail(result, PNU, ORPHAN)[2:] == [
        (ORPHAN, "resolved", "resolved"),
        (PNU, "raised", "open"),
    ]


def test_an_inhibited_exception_accepts_only_comment_assign_and_resolve() -> None:
    events = [paid("O3", "10:00"), tick("10:11")]
    target = run(events).of(PNU)[0]
    cmds = [
        command("acknowledge", target, "10:12"),
        command("snooze", target, "10:13", for_="1h"),
        command("unacknowledge", target, "10:14"),
        command("comment", target, "10:15", note="waiting for the OMS"),
        command("assign", target, "10:16", assignee="bob"),
        command("resolve", target, "10:17", resolution="duplicate"),
    ]
    result = run([*events, *cmds])
    assert [result.reply(c["event_id"])["reason"] for c in cmds] == [
        "invalid_transition",
        "invalid_transition",
        "invalid_transition",
        None,
        None,
        None,
    ]
    assert trail(result, PNU)[1:] == [
        (PNU, "commented", "inhibited"),
        (PNU, "assigned", "inhibited"),
        (PNU, "resolved", "resolved"),
    ]


# --- target first ---------------------------------------------------------------------------------


def paid_order() -> list[dict[str, Any]]:
    return [created("S1", "10:00"), paid("S1", "10:01"), status("S1", "paid", "10:02")]


def test_target_first_gets_one_extra_inhibited_event_then_is_raised_again() -> None:
    events = [
        *paid_order(),
        tick(f"{D3}10:02:01Z"),  # logistics.not_shipped raised (48 h after paid)
        reservation_failed("S1", f"{D3}11:00:00Z"),  # inventory.oversold: explains it
        reserved("S1", f"{D3}12:00:00Z", available_after=3),  # stock found: oversold resolved
    ]
    result = run(events)
    # (oversold, critical, escalates every 15 min meanwhile: left out here)
    assert [t for t in trail(result, NOT_SHIPPED, OVERSOLD) if t[1] != "escalated"] == [
        (NOT_SHIPPED, "raised", "open"),
        (OVERSOLD, "raised", "open"),
        (NOT_SHIPPED, "inhibited", "inhibited"),
        (OVERSOLD, "resolved", "resolved"),
        (NOT_SHIPPED, "raised", "open"),
    ]
    assert [e.seq for e in result.of(NOT_SHIPPED)] == [1, 2, 3]
    assert result.of(NOT_SHIPPED)[1].inhibited_by == result.of(OVERSOLD)[0].exception_id


def test_an_acknowledged_target_loses_its_acknowledgement_and_timers_when_inhibited() -> None:
    base = [*paid_order(), tick(f"{D3}10:02:01Z")]
    target = run(base).of(NOT_SHIPPED)[0]
    events = [
        *base,
        command("acknowledge", target, f"{D3}10:05:00Z"),
        reservation_failed("S1", f"{D3}11:00:00Z"),
        tick("2026-11-23T06:00:00Z"),  # past the 8 h acknowledgement timeout: nothing
        reserved("S1", "2026-11-23T07:00:00Z", available_after=3),
        tick("2026-11-23T11:00:01Z"),  # 4 h after the release: escalated
    ]
    result = run(events)
    assert trail(result, NOT_SHIPPED) == [
        (NOT_SHIPPED, "raised", "open"),
        (NOT_SHIPPED, "acknowledged", "acknowledged"),
        (NOT_SHIPPED, "inhibited", "inhibited"),
        (NOT_SHIPPED, "raised", "open"),
        (NOT_SHIPPED, "escalated", "open"),
    ]
    assert result.of(NOT_SHIPPED)[2].acknowledged_by is None


def test_shipped_while_inhibited_resolves_it_as_usual() -> None:
    events = [
        *paid_order(),
        tick(f"{D3}10:02:01Z"),
        reservation_failed("S1", f"{D3}11:00:00Z"),
        logistics("shipped", "S1", f"{D3}12:00:00Z"),
    ]
    result = run(events)
    assert trail(result, NOT_SHIPPED)[-1] == (NOT_SHIPPED, "resolved", "resolved")


# --- a notification as the inhibitor


def test_lost_or_damaged_inhibits_tracking_stale_until_a_person_resolves_it() -> None:
    base = [
        created("L1", "10:00"),
        paid("L1", "10:01"),
        status("L1", "shipped", "10:02"),
        logistics("shipped", "L1", "10:03"),
        carrier_exception("L1", "11:00", "lost"),
    ]
    stale_at = "2026-11-23T11:00:01Z"  # 72 h without a carrier event
    lost = run(base).of("logistics.lost_or_damaged")[0]
    result = run(
        [
            *base,
            tick(stale_at),
            command("resolve", lost, "2026-11-23T12:00:00Z", resolution="fixed"),
        ]
    )
    assert trail(result, "logistics.tracking_stale") == [
        ("logistics.tracking_stale", "inhibited", "inhibited"),
        ("logistics.tracking_stale", "raised", "open"),
    ]
    assert result.of("logistics.tracking_stale")[1].detected_at == at("2026-11-23T12:00:00Z")


# --- rule files


def test_the_default_pairs_come_from_the_contract() -> None:
    catalog = load_catalog()
    assert catalog[PNU].inhibited_by == (ORPHAN,)
    assert catalog["logistics.tracking_stale"].inhibited_by == ("logistics.lost_or_damaged",)
    assert catalog["logistics.delivery_delayed"].inhibited_by == ("logistics.lost_or_damaged",)
    assert catalog[NOT_SHIPPED].inhibited_by == (OVERSOLD,)
    assert catalog[ORPHAN].inhibited_by == ()
    assert (catalog[OVERSOLD].ack_timeout, catalog[PNU].ack_timeout) == (1800.0, 7200.0)
    assert catalog["logistics.orphan"].ack_timeout == 8 * 3600.0
    assert catalog["order.creation_failed"].ack_timeout is None


def rules_with(tmp_path: Path, rule_id: str, extra: str) -> Path:
    for source in default_rules_dir().glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.stem == rule_id:
            text += extra
        (tmp_path / source.name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("rule_id", "extra", "message"),
    [
        (OVERSOLD, "inhibited_by: [payment.orphanx]\n", "unknown rule 'payment.orphanx'"),
        (OVERSOLD, "inhibited_by: [inventory.oversold]\n", "cannot be inhibited by itself"),
        (OVERSOLD, "inhibited_by: [logistics.not_shipped]\n", "cycle"),
        (OVERSOLD, "inhibited_by: [inventory.sync_drift]\n", "not about an order"),
        (OVERSOLD, "ack_timeout: soon\n", "not a duration"),
    ],
)
def test_rules_check_refuses_bad_inhibitions_with_file_and_line(
    tmp_path: Path, rule_id: str, extra: str, message: str
) -> None:
    with pytest.raises(RuleFileError) as err:
        load_catalog(rules_with(tmp_path, rule_id, extra))
    assert message in str(err.value)
    assert err.value.path.endswith(f"{rule_id}.yaml") and err.value.line is not None


def test_a_rule_file_can_drop_an_inhibition_and_the_ack_timeout(tmp_path: Path) -> None:
    catalog = load_catalog(rules_with(tmp_path, PNU, "inhibited_by: []\nack_timeout: never\n"))
    assert catalog[PNU].inhibited_by == () and catalog[PNU].ack_timeout is None
    result = run([paid("O3", "10:00"), tick("10:11")], rules_dir=tmp_path)
    assert trail(result, PNU) == [(PNU, "raised", "open")]
