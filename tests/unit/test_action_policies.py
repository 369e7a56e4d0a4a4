"""Action policies in rule files (CONTRACT section 10): defaults that execute nothing, and
mistakes reported with the file and the line by ``orderwatch rules check``."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from orderwatch.errors import RuleFileError
from orderwatch.rulefiles import load_catalog

RULES = Path(__file__).resolve().parents[2] / "rules"


def _with(tmp_path: Path, rule_id: str, block: str) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / f"{rule_id}.yaml"
    text = path.read_text()
    if "remediation:" in text:
        text = text[: text.index("remediation:")]
    path.write_text(text + block)
    return folder


def test_defaults_are_the_contracts_table_and_nothing_executes() -> None:
    catalog = load_catalog()
    got = {
        rule.rule_id: [(p.type, p.mode) for p in rule.remediation]
        for rule in catalog.values()
        if rule.remediation
    }
    assert got == {
        "payment.paid_not_updated": [("order.resync_status", "dry_run")],
        "payment.duplicate": [("payment.refund", "approval")],
        "payment.after_cancel": [("payment.refund", "approval")],
        "fraud.blacklisted": [("fulfillment.hold", "dry_run")],
        "customer.invalid_address": [("fulfillment.hold", "dry_run")],
        "fraud.abnormal_quantity": [("fulfillment.hold", "dry_run")],
        "logistics.delivery_delayed": [("customer.notify", "dry_run")],
        "logistics.lost_or_damaged": [("customer.notify", "dry_run"), ("carrier.claim", "dry_run")],
        "inventory.oversold": [("customer.notify", "dry_run")],
        "fraud.frequent_refunds": [("blacklist.suggest", "approval")],
    }
    for rule in catalog.values():
        for p in rule.remediation:
            assert p.mode != "auto", "nothing is executed unless someone turns it on"
            assert p.approval_ttl == 24 * 3600 and p.max_per_hour == 100
    [hold] = catalog["customer.invalid_address"].remediation
    assert hold.not_shipped, "a hold for a bad address only before shipping"


def test_a_policy_with_mode_conditions_ttl_and_limit(tmp_path: Path) -> None:
    block = (
        "remediation:\n"
        "- type: payment.refund\n"
        "  mode: auto\n"
        "  when: {max_amount: '200.00'}\n"
        "  approval_ttl: 2h\n"
        "  max_per_hour: 10\n"
    )
    catalog = load_catalog(_with(tmp_path, "payment.duplicate", block))
    [p] = catalog["payment.duplicate"].remediation
    assert (p.type, p.mode, p.max_amount, p.approval_ttl, p.max_per_hour) == (
        "payment.refund",
        "auto",
        Decimal("200.00"),
        7200.0,
        10,
    )


def test_an_empty_list_turns_the_defaults_off(tmp_path: Path) -> None:
    catalog = load_catalog(_with(tmp_path, "payment.duplicate", "remediation: []\n"))
    assert catalog["payment.duplicate"].remediation == ()


@pytest.mark.parametrize(
    ("rule_id", "block", "line_offset", "words"),
    [
        ("payment.duplicate", "- type: payment.refund\n  mode: sometimes\n", 2, "mode"),
        ("payment.duplicate", "- type: payment.refunds\n", 1, "type"),
        ("fraud.abnormal_quantity", "- type: payment.refund\n", 1, "cannot serve"),
        ("fraud.blacklisted", "- type: fulfillment.hold\n  params: {colour: red}\n", 2, "colour"),
        (
            "fraud.blacklisted",
            "- type: fulfillment.hold\n  when: {max_amount: '1.00'}\n",
            2,
            "max_amount",
        ),
        ("payment.duplicate", "- type: payment.refund\n  approval_ttl: soon\n", 2, "duration"),
        ("payment.duplicate", "- type: payment.refund\n  max_per_hour: 0\n", 2, "max_per_hour"),
        ("fraud.blacklisted", "- type: fulfillment.hold\n- type: fulfillment.hold\n", 2, "twice"),
        ("fraud.blacklisted", "- type: fulfillment.release\n", 1, "type"),
    ],
)
def test_mistakes_name_the_file_and_line(
    tmp_path: Path, rule_id: str, block: str, line_offset: int, words: str
) -> None:
    folder = _with(tmp_path, rule_id, "remediation:\n" + block)
    path = folder / f"{rule_id}.yaml"
    header = path.read_text().splitlines().index("remediation:") + 1
    with pytest.raises(RuleFileError) as caught:
        load_catalog(folder)
    err = caught.value
    assert err.path == str(path)
    assert err.line == header + line_offset, err
    assert words in err.message, err.message
