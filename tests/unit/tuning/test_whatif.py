"""``orderwatch rules diff`` on a generated day with a known difference.

The simulator injects abnormal quantities and stale parcels into healthy traffic and says which
subjects it made anomalous. The new rule set raises the quantity limit above anything ordered
(every injected abnormal quantity is no longer raised) and gives stale tracking to customer
service at low severity (every stale parcel changes severity and owner, nothing else moves).
Operators had marked two quantity cases and one stale parcel as false positives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from orderwatch.cli import app
from orderwatch.reports.whatif import WhatIf
from tests.unit.tuning.books import rules_dir

QUANTITY = "fraud.abnormal_quantity"
STALE = "logistics.tracking_stale"


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("whatif")
    path = folder / "day.jsonl"
    args = ["simulate", "--to-file", str(path), "--orders", "300", "--seed", "3"]
    args += ["--anomalies", "10", "--mix", f"{QUANTITY},{STALE}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest: dict[str, Any] = json.loads(Path(f"{path}.manifest.json").read_text())
    return path, manifest


def _subjects(manifest: dict[str, Any], rule_id: str) -> set[str]:
    return {e["subject"] for e in manifest["expected"] if e["rule_id"] == rule_id}


def _verdict(rule_id: str, subject: str, resolution: str, seq: int) -> bytes:
    return orjson.dumps(
        {
            "exception_id": f"x-{rule_id}-{subject}",
            "rule_id": rule_id,
            "subject": subject,
            "state": "resolved",
            "seq": seq,
            "resolution": resolution,
        }
    )


def test_a_generated_day_with_a_known_difference(
    day: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, manifest = day
    quantity, stale = _subjects(manifest, QUANTITY), _subjects(manifest, STALE)
    assert len(quantity) >= 2 and stale, manifest["expected"]
    old = rules_dir(tmp_path / "old", {})
    new = rules_dir(
        tmp_path / "new",
        {
            QUANTITY: {"params": {"max_quantity": 100_000}},
            STALE: {"severity": "low", "owner": "customer_service"},
        },
    )
    fp_quantity = sorted(quantity)[:2]
    fp_stale = sorted(stale)[0]
    verdicts = tmp_path / "exceptions.jsonl"
    verdicts.write_bytes(
        b"\n".join(
            [
                *(_verdict(QUANTITY, s, "false_positive", 2) for s in fp_quantity),
                _verdict(STALE, fp_stale, "false_positive", 2),
                # reopened afterwards: no longer a known false positive
                _verdict(STALE, "SO-REOPENED", "false_positive", 2),
                orjson.dumps({"exception_id": f"x-{STALE}-SO-REOPENED", "seq": 3}),
            ]
        )
        + b"\n"
    )
    out = tmp_path / "diff.json"
    result = CliRunner().invoke(
        app,
        [
            "rules",
            "diff",
            "--events",
            str(path),
            "--until",
            manifest["until"],
            "--resolutions",
            str(verdicts),
            "--json",
            str(out),
            str(old),
            str(new),
        ],
    )
    assert result.exit_code == 0, result.output
    diff = WhatIf.from_json(out.read_bytes())
    by_rule = {r.rule_id: r for r in diff.rules}
    q, s = by_rule[QUANTITY], by_rule[STALE]
    assert set(q.removed) == quantity and q.new == 0 and not q.added
    assert set(s.changed) == stale and not s.removed and not s.added and not s.moved
    assert s.changes[sorted(stale, key=s.changed.index)[0]] == (
        "severity medium -> low, owner logistics -> customer_service"
    )
    others = [r for r in diff.rules if r.rule_id not in (QUANTITY, STALE)]
    assert not any(r.differs for r in others), "nothing else changes"
    assert diff.false_positives_known == 3
    assert (q.false_positives_avoided, s.false_positives_avoided) == (2, 0)
    assert s.false_positives_kept == 1
    text = result.output
    assert f"{QUANTITY}: {len(quantity)} -> 0 raised" in text
    assert f"- no longer: {len(quantity)}" in text
    assert "known false positives: 3; the new set avoids 2, still raises 1" in text

    page = CliRunner().invoke(app, ["report", "--what-if", str(out), "--out", str(tmp_path)])
    assert page.exit_code == 0, page.output
    html = (tmp_path / "what-if.html").read_text(encoding="utf-8")
    assert f"<h2>{QUANTITY}</h2>" in html and "known false positives avoided" in html
    assert json.loads(out.read_text())["new_version"] in html


def test_the_same_rules_differ_in_nothing(day: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, manifest = day
    same = rules_dir(tmp_path, {})
    result = CliRunner().invoke(
        app,
        [
            "rules",
            "diff",
            "--events",
            str(path),
            "--until",
            manifest["until"],
            str(same),
            str(same),
        ],
    )
    assert result.exit_code == 0 and "no difference" in result.output


def test_an_invalid_new_set_is_reported_with_its_line(
    day: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, _ = day
    old = rules_dir(tmp_path / "old", {})
    new = rules_dir(tmp_path / "new", {STALE: {"params": {"threshold": "soon"}}})
    result = CliRunner().invoke(app, ["rules", "diff", "--events", str(path), str(old), str(new)])
    assert result.exit_code == 2
    assert "logistics.tracking_stale.yaml:" in result.output and "not a duration" in result.output
