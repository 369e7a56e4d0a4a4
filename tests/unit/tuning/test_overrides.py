"""Rule book: overrides in a rule file, the most specific match wins, and the evidence says so."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.factories import address, created, logistics, paid, plus, reserved, run, status
from tests.unit.tuning.books import rules_dir

STALE = "logistics.tracking_stale"
NOT_SHIPPED = "logistics.not_shipped"
SHIPPED = "2026-11-21T08:00:00Z"

OVERRIDES = {
    STALE: {
        "overrides": [
            {"when": {"carrier": "carrier-sf"}, "params": {"threshold": "24h"}},
            {"when": {"carrier": ["carrier-eco", "carrier-post"]}, "params": {"threshold": "96h"}},
            {
                "name": "economy to the far west",
                "when": {"carrier": "carrier-eco", "province": "Xinjiang"},
                "params": {"threshold": "7d"},
                "severity": "low",
                "owner": "customer_service",
            },
        ]
    },
    NOT_SHIPPED: {
        "overrides": [
            {"when": {"channel": "presale"}, "params": {"threshold": "15d"}},
            {"when": {"warehouse_id": "WH-SLOW"}, "params": {"threshold": "72h"}},
            {
                "when": {"channel": "presale", "warehouse_id": "WH-SLOW"},
                "params": {"threshold": "16d"},
            },
        ]
    },
}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rules_dir(tmp_path_factory.mktemp("overrides"), OVERRIDES)


def _shipped(order: str, carrier: str, province: str = "Shanghai") -> list[dict[str, object]]:
    return [
        created(order, "09:00", shipping_address=address(province=province)),
        paid(order, "09:05"),
        status(order, "paid", "09:05"),
        logistics("shipped", order, SHIPPED, carrier=carrier),
    ]


@pytest.mark.parametrize(
    ("carrier", "province", "hours", "override", "severity", "owner"),
    [
        ("carrier-sf", "Shanghai", 24, "carrier=carrier-sf", "medium", "logistics"),
        ("carrier-eco", "Shanghai", 96, "carrier=carrier-eco|carrier-post", "medium", "logistics"),
        ("carrier-post", "Xinjiang", 96, "carrier=carrier-eco|carrier-post", "medium", "logistics"),
        ("carrier-eco", "Xinjiang", 168, "economy to the far west", "low", "customer_service"),
        ("carrier-jd", "Xinjiang", 72, None, "medium", "logistics"),
    ],
)
def test_the_most_specific_override_sets_the_threshold(
    rules: Path,
    carrier: str,
    province: str,
    hours: int,
    override: str | None,
    severity: str,
    owner: str,
) -> None:
    deadline = plus(SHIPPED, hours=hours)
    before = run(
        _shipped("O1", carrier, province), until=plus(deadline, seconds=-1), rules_dir=rules
    )
    assert before.of(STALE) == [], "one second before its own threshold: nothing"
    result = run(
        _shipped("O1", carrier, province), until=plus(deadline, seconds=1), rules_dir=rules
    )
    [raised] = result.of(STALE)
    assert raised.event_time == datetime.fromisoformat(deadline)
    assert (raised.severity, raised.owner) == (severity, owner)
    assert raised.evidence.values.get("override") == override
    assert raised.evidence.values["threshold"] == f"{hours // 24}d" if hours % 24 == 0 else True
    assert f"({raised.evidence.values['threshold']})" in raised.summary


def test_the_carrier_of_the_latest_scan_decides(rules: Path) -> None:
    """A parcel handed from SF to an economy carrier is measured by the economy threshold."""
    handover = logistics("scanned", "O1", plus(SHIPPED, hours=10), carrier="carrier-eco")
    events = [*_shipped("O1", "carrier-sf"), handover]
    quiet = run(events, until=plus(SHIPPED, hours=10 + 95), rules_dir=rules)
    assert quiet.of(STALE) == []
    [raised] = run(events, until=plus(SHIPPED, hours=10 + 97), rules_dir=rules).of(STALE)
    assert raised.evidence.values["override"] == "carrier=carrier-eco|carrier-post"


@pytest.mark.parametrize(
    ("channel", "warehouse", "days"),
    [("presale", None, 15), (None, "WH-SLOW", 3), ("presale", "WH-SLOW", 16), ("app", "WH1", 2)],
)
def test_not_shipped_by_channel_and_warehouse(
    rules: Path, channel: str | None, warehouse: str | None, days: int
) -> None:
    events = [created("O1", "09:00", channel=channel), paid("O1", "10:00")]
    if warehouse:
        events.append(reserved("O1", "10:01", warehouse_id=warehouse))
    due = plus("10:00", days=days)
    assert run(events, until=plus(due, seconds=-1), rules_dir=rules).of(NOT_SHIPPED) == []
    [raised] = run(events, until=plus(due, seconds=1), rules_dir=rules).of(NOT_SHIPPED)
    assert raised.event_time == datetime.fromisoformat(due)


def test_escalation_follows_the_overridden_severity(rules: Path) -> None:
    """The override's severity sets the escalation default (low: never), on every event."""
    events = _shipped("O1", "carrier-eco", "Xinjiang")
    result = run(events, until=plus(SHIPPED, days=30), rules_dir=rules)
    assert result.states(STALE) == ["raised"]
    scan = logistics("scanned", "O1", plus(SHIPPED, days=8), carrier="carrier-eco")
    _, resolved = run([*events, scan], rules_dir=rules).of(STALE)
    assert resolved.state == "resolved" and resolved.severity == "low"
    assert resolved.evidence.values["override"] == "economy to the far west"


def test_no_overrides_no_trace_in_the_evidence() -> None:
    [raised] = run(_shipped("O1", "carrier-sf"), until=plus(SHIPPED, hours=73)).of(STALE)
    assert "override" not in raised.evidence.values


def test_sync_drift_by_warehouse(tmp_path: Path) -> None:
    """A stock rule matches the sku and warehouse of its key."""
    from tests.factories import snapshot

    folder = rules_dir(
        tmp_path,
        {
            "inventory.sync_drift": {
                "overrides": [
                    {"when": {"warehouse_id": "WH-BIG"}, "params": {"min_difference": 50}}
                ]
            }
        },
    )
    events = []
    for wh in ("WH1", "WH-BIG"):
        events += [
            snapshot("SKU-9", "10:00", 100, "wms", warehouse_id=wh),
            snapshot("SKU-9", "10:01", 80, "erp", warehouse_id=wh),
        ]
    result = run(events, until="11:00", rules_dir=folder)
    assert [e.warehouse_id for e in result.of("inventory.sync_drift")] == ["WH1"]


def test_rules_check_lists_the_overrides(rules: Path) -> None:
    from typer.testing import CliRunner

    from orderwatch.cli import app

    result = CliRunner().invoke(app, ["rules", "check", str(rules)])
    assert result.exit_code == 0, result.output
    assert "carrier=carrier-eco|carrier-post" in result.output
    assert "severity=low, owner=customer_service" in result.output
    assert "rules version " in result.output


def test_an_exception_keeps_the_override_it_was_raised_with(rules: Path) -> None:
    """Raised for an economy parcel to Xinjiang (low, customer service); the scan that resolves
    it comes from another carrier, whose override would say medium: the resolution still says
    low and customer service, as the raise did."""
    events = _shipped("O1", "carrier-eco", "Xinjiang")
    scan = logistics("scanned", "O1", plus(SHIPPED, days=8), carrier="carrier-sf")
    raised, resolved = run([*events, scan], rules_dir=rules).of(STALE)
    assert (raised.severity, raised.owner) == ("low", "customer_service")
    assert (resolved.severity, resolved.owner) == ("low", "customer_service")
    assert resolved.evidence.values["override"] == "economy to the far west"
