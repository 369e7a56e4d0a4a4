"""The weekly review: known exceptions in, known figures out, in the CSVs and on the HTML page.

The fixture reads like a week's log: ten paid_not_updated exceptions resolved after 10, 20, ...,
100 minutes (p50 50 min, p90 90 min, max 100 min), two of them escalated; three invalid
addresses in Shanghai and Hangzhou; two lost parcels with carriers; oversold SKUs.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orderwatch.cli import app
from orderwatch.events.exception import Evidence, ExceptionEvent
from orderwatch.reports.summary import (
    ReadStats,
    compute,
    human,
    percentile,
    read_jsonl,
    render_html,
    write_report,
)

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)

_RULES: dict[str, tuple[str, str, str]] = {
    "payment.paid_not_updated": ("payment", "high", "tech"),
    "customer.invalid_address": ("customer_info", "medium", "customer_service"),
    "logistics.lost_or_damaged": ("logistics", "critical", "logistics"),
    "inventory.oversold": ("inventory", "critical", "warehouse"),
}


def change(
    exception_id: str,
    rule_id: str,
    state: str,
    *,
    event_time: datetime,
    detected_at: datetime | None = None,
    subject: str = "O1",
    level: int = 0,
    sku: str | None = None,
    **values: Any,
) -> ExceptionEvent:
    category, severity, owner = _RULES[rule_id]
    return ExceptionEvent.model_validate(
        {
            "exception_id": exception_id,
            "rule_id": rule_id,
            "category": category,
            "severity": severity,
            "state": state,
            "subject": subject,
            "order_id": subject,
            "sku": sku,
            "warehouse_id": "WH1" if sku else None,
            "detected_at": detected_at or event_time,
            "event_time": event_time,
            "summary": f"{rule_id} {state}",
            "evidence": Evidence(event_ids=["ev-1"], values=values),
            "owner": owner,
            "actions": ["look"],
            "escalation_level": level,
        }
    )


def week() -> list[ExceptionEvent]:
    events: list[ExceptionEvent] = []
    pnu = "payment.paid_not_updated"
    for i in range(1, 11):
        at = T0 + timedelta(hours=i)
        xid = f"pnu-{i}"
        events.append(change(xid, pnu, "raised", event_time=at, subject=f"O{i}"))
        if i >= 9:
            events.append(change(xid, pnu, "escalated", event_time=at, subject=f"O{i}", level=1))
        if i == 10:
            events.append(change(xid, pnu, "escalated", event_time=at, subject=f"O{i}", level=2))
        done = at + timedelta(minutes=10 * i)
        events.append(
            change(
                xid,
                pnu,
                "resolved",
                event_time=at,
                detected_at=done,
                subject=f"O{i}",
                level=2 if i == 10 else (1 if i == 9 else 0),
            )
        )
    # A re-delivered raised event is the same exception, not an eleventh one.
    events.append(events[0])

    addr = "customer.invalid_address"
    sh = {"province": "Shanghai", "city": "Shanghai"}
    # 18:30 in Beijing is 10:30 UTC: the hour table is in UTC.
    local = datetime.fromisoformat("2026-11-17T18:30:00+08:00")
    events.append(change("ad-1", addr, "raised", event_time=local, subject="O1", **sh))
    events.append(change("ad-2", addr, "raised", event_time=T0, subject="O20", **sh))
    events.append(change("ad-2", addr, "escalated", event_time=T0, subject="O20", level=1, **sh))
    events.append(
        change(
            "ad-3",
            addr,
            "raised",
            event_time=T0,
            subject="O21",
            province="Zhejiang",
            city="Hangzhou",
        )
    )
    # The fix moved the order to Beijing: the review counts where the problem was.
    events.append(
        change(
            "ad-3",
            addr,
            "resolved",
            event_time=T0,
            detected_at=T0 + timedelta(hours=4),
            subject="O21",
            province="Beijing",
            city="Beijing",
        )
    )

    lost = "logistics.lost_or_damaged"
    events.append(change("lo-1", lost, "raised", event_time=T0, subject="O1", carrier="SF"))
    events.append(change("lo-2", lost, "raised", event_time=T0, subject="O30", carrier="JD"))

    over = "inventory.oversold"
    events.append(change("ov-1", over, "raised", event_time=T0, subject="O40", sku="SKU-1"))
    events.append(change("ov-2", over, "raised", event_time=T0, subject="O41", sku="=HYPERLINK()"))
    events.append(
        change(
            "ov-3", over, "raised", event_time=T0, subject="<script>alert(1)</script>", sku="SKU-1"
        )
    )
    return events


def breakdown(report: Any, key: str) -> dict[str, int]:
    return dict(next(b for b in report.breakdowns if b.key == key).rows)


def test_counts_distinct_exceptions_by_every_attribute() -> None:
    report = compute(week())

    assert report.exceptions == 18
    assert breakdown(report, "rule") == {
        "payment.paid_not_updated": 10,
        "customer.invalid_address": 3,
        "inventory.oversold": 3,
        "logistics.lost_or_damaged": 2,
    }
    assert breakdown(report, "category") == {
        "payment": 10,
        "customer_info": 3,
        "inventory": 3,
        "logistics": 2,
    }
    assert breakdown(report, "owner")["customer_service"] == 3
    assert breakdown(report, "severity") == {"high": 10, "critical": 5, "medium": 3}
    assert breakdown(report, "province") == {"Shanghai": 2, "Zhejiang": 1}
    assert breakdown(report, "city") == {"Shanghai / Shanghai": 2, "Zhejiang / Hangzhou": 1}
    assert breakdown(report, "carrier") == {"JD": 1, "SF": 1}
    assert breakdown(report, "sku") == {"SKU-1": 2, "=HYPERLINK()": 1}
    hours = breakdown(report, "hour_utc")
    assert len(hours) == 24
    assert hours["10"] == 7 + 1  # seven at 10:00 UTC, and 18:30+08:00
    assert [hours[f"{h}"] for h in range(11, 21)] == [1] * 10
    assert sum(hours.values()) == 18


def test_time_to_resolve_and_escalation_rate_per_rule() -> None:
    rules = {r.rule_id: r for r in compute(week()).rules}

    pnu = rules["payment.paid_not_updated"]
    assert (pnu.exceptions, pnu.resolved, pnu.escalated) == (10, 10, 2)
    assert pnu.p50 == timedelta(minutes=50)
    assert pnu.p90 == timedelta(minutes=90)
    assert pnu.max == timedelta(minutes=100)
    assert pnu.escalation_rate == pytest.approx(0.2)

    addr = rules["customer.invalid_address"]
    assert (addr.resolved, addr.escalated) == (1, 1)
    assert addr.p50 == addr.max == timedelta(hours=4)
    assert addr.escalation_rate == pytest.approx(1 / 3)

    lost = rules["logistics.lost_or_damaged"]
    assert (lost.resolved, lost.p50, lost.escalation_rate) == (0, None, 0.0)


def test_top_subjects_rank_by_exception_count() -> None:
    top = compute(week(), top=3).top_subjects

    assert len(top) == 3
    assert (top[0].subject, top[0].exceptions) == ("O1", 3)
    assert top[0].rules == (
        "customer.invalid_address",
        "logistics.lost_or_damaged",
        "payment.paid_not_updated",
    )


def test_an_exception_raised_before_the_input_counts_without_a_resolve_time() -> None:
    pnu = "payment.paid_not_updated"
    only_resolved = [
        change("x", pnu, "resolved", event_time=T0, detected_at=T0 + timedelta(hours=1))
    ]

    report = compute(only_resolved)

    assert report.exceptions == 1
    assert report.rules[0].resolved == 1
    assert report.rules[0].p50 is None


def test_percentile_is_nearest_rank() -> None:
    values = [timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert percentile(values, 50) == timedelta(seconds=2)
    assert percentile(values, 90) == timedelta(seconds=4)
    assert percentile(values[:1], 90) == timedelta(seconds=1)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_tables_hold_the_figures(tmp_path: Path) -> None:
    write_report(compute(week()), tmp_path)

    ttr = {r["rule_id"]: r for r in read_csv(tmp_path / "time_to_resolve_by_rule.csv")}
    assert ttr["payment.paid_not_updated"] == {
        "rule_id": "payment.paid_not_updated",
        "resolved": "10",
        "p50_seconds": "3000",
        "p90_seconds": "5400",
        "max_seconds": "6000",
    }
    assert ttr["logistics.lost_or_damaged"]["p50_seconds"] == ""
    esc = {r["rule_id"]: r for r in read_csv(tmp_path / "escalation_by_rule.csv")}
    assert esc["payment.paid_not_updated"]["escalation_rate"] == "0.2000"
    assert esc["customer.invalid_address"]["escalated"] == "1"
    rules = {r["rule_id"]: r["exceptions"] for r in read_csv(tmp_path / "by_rule.csv")}
    assert rules["payment.paid_not_updated"] == "10"
    provinces = read_csv(tmp_path / "by_province.csv")
    assert provinces == [
        {"province": "Shanghai", "exceptions": "2"},
        {"province": "Zhejiang", "exceptions": "1"},
    ]
    hours = read_csv(tmp_path / "by_hour_utc.csv")
    assert [h["hour_utc"] for h in hours] == [f"{h:02d}" for h in range(24)]
    skus = {r["sku"] for r in read_csv(tmp_path / "by_sku.csv")}
    assert "'=HYPERLINK()" in skus  # a spreadsheet shows it as text, never runs it
    subjects = read_csv(tmp_path / "top_subjects.csv")
    assert subjects[0]["subject"] == "O1"
    expected = {
        "by_rule.csv",
        "by_category.csv",
        "by_owner.csv",
        "by_severity.csv",
        "by_province.csv",
        "by_city.csv",
        "by_sku.csv",
        "by_carrier.csv",
        "by_hour_utc.csv",
        "time_to_resolve_by_rule.csv",
        "escalation_by_rule.csv",
        "response_by_owner.csv",
        "resolutions_by_rule.csv",
        "top_subjects.csv",
        "report.html",
    }
    assert {p.name for p in tmp_path.iterdir()} == expected


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one, and records URLs and text."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "rect"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in {"href", "src", "xlink:href", "action"}]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack, f"</{tag}> without an open tag"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_well_formed_self_contained_and_shows_the_figures() -> None:
    page = render_html(compute(week()), ReadStats("week.jsonl", 25, 1))

    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert checker.urls == []
    assert "script" not in checker.tags
    assert "http://" not in page
    assert "https://" not in page
    assert "url(" not in page
    text = " ".join(checker.text)
    assert "<script>alert(1)</script>" in text  # shown as text, escaped in the markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for figure in ("50m 00s", "1h 30m", "1h 40m", "20.0%", "33.3%", "4h 00m"):
        assert figure in text, figure
    assert "payment.paid_not_updated" in text
    assert "Shanghai / Shanghai" in text
    assert "(UTC)" in text
    assert "25 records read, 1 skipped" in text
    assert page.count("<svg") >= 9


def test_reader_skips_bad_lines_and_says_which(tmp_path: Path) -> None:
    good = week()[:3]
    lines = [e.model_dump_json().encode() + b"\n" for e in good]
    lines.insert(1, b"{not json\n")
    lines.insert(3, b'{"exception_id": "x"}\n')
    lines.append(b"\n")
    err = io.StringIO()
    stats = ReadStats("test")
    seen: list[int] = []

    events = read_jsonl(lines, err, stats, seen.append)

    assert events == good
    assert (stats.records, stats.skipped) == (6, 2)
    messages = err.getvalue().splitlines()
    assert messages[0].startswith("line 2: invalid_json")
    assert messages[1].startswith("line 4: schema")
    assert sum(seen) == sum(len(line) for line in lines)


def test_human_durations() -> None:
    assert human(timedelta(seconds=42)) == "42s"
    assert human(timedelta(minutes=4, seconds=10)) == "4m 10s"
    assert human(timedelta(hours=1, minutes=5)) == "1h 05m"
    assert human(timedelta(days=2, hours=3)) == "2d 03h"
    assert human(None) == "–"


def test_cli_writes_the_report_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "exceptions.jsonl"
    source.write_bytes(
        b"".join(e.model_dump_json().encode() + b"\n" for e in week()) + b"garbage\n"
    )
    out = tmp_path / "out"

    result = CliRunner().invoke(app, ["report", str(source), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "18 exceptions" in result.stdout
    assert f"line {len(week()) + 1}: invalid_json" in result.stderr
    assert (out / "report.html").is_file()
    assert len(list(out.glob("*.csv"))) == 14


def test_cli_needs_exactly_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 2
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr


# --- v2: the operators' loop ------------------------------------------------------------------


def v2(ex: str, rule_id: str, state: str, seq: int, status: str, minutes: int, **f: Any) -> Any:
    t0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    event = change(ex, rule_id, state, event_time=t0, detected_at=t0 + timedelta(minutes=minutes))
    return event.model_copy(update={"seq": seq, "status": status, **f})


def test_mtta_mttr_by_owner_and_resolutions_by_rule() -> None:
    pnu, lost = "payment.paid_not_updated", "logistics.lost_or_damaged"
    events = [
        # tech: acked at 10 min (and again later: the first counts), resolved by the rule at 60
        v2("a", pnu, "raised", 1, "open", 0),
        v2("a", pnu, "acknowledged", 2, "acknowledged", 10, acknowledged_by="x"),
        v2("a", pnu, "acknowledged", 3, "acknowledged", 40, acknowledged_by="x"),
        v2("a", pnu, "resolved", 4, "resolved", 60, resolved_by="rule"),
        # tech: acked at 30, resolved by an operator as a false positive at 90
        v2("b", pnu, "raised", 1, "open", 0),
        v2("b", pnu, "acknowledged", 2, "acknowledged", 30),
        v2(
            "b",
            pnu,
            "resolved",
            3,
            "resolved",
            90,
            resolved_by="operator",
            resolution="false_positive",
        ),
        # logistics: resolved as fixed, reopened, resolved again as fixed at 300 (the last counts)
        v2("c", lost, "raised", 1, "open", 0),
        v2("c", lost, "resolved", 2, "resolved", 100, resolved_by="operator", resolution="fixed"),
        v2("c", lost, "reopened", 3, "open", 120),
        v2("c", lost, "resolved", 4, "resolved", 300, resolved_by="operator", resolution="fixed"),
        # logistics: reopened and still open: no time to resolve
        v2("d", lost, "raised", 1, "open", 0),
        v2("d", lost, "resolved", 2, "resolved", 10, resolved_by="operator", resolution="fixed"),
        v2("d", lost, "reopened", 3, "open", 20),
        # inhibited, then commented: counted, nothing else
        v2("e", pnu, "inhibited", 1, "inhibited", 0, inhibited_by="z"),
        v2("e", pnu, "commented", 2, "inhibited", 5, note="n"),
    ]
    report = compute(list(reversed(events)) + events[:3])  # any order, re-deliveries harmless
    owners = {o.owner: o for o in report.owners}
    tech = owners["tech"]
    assert (tech.exceptions, tech.acknowledged, tech.resolved) == (3, 2, 2)
    assert tech.mtta == timedelta(minutes=20) and tech.p50_tta == timedelta(minutes=10)
    assert tech.mttr == timedelta(minutes=75)
    logistics = owners["logistics"]
    assert (logistics.acknowledged, logistics.resolved) == (0, 1)
    assert logistics.mtta is None and logistics.mttr == timedelta(minutes=300)
    res = {r.rule_id: r for r in report.resolutions}
    assert (res[pnu].by_rule, res[pnu].by_operator, res[pnu].false_positive) == (1, 1, 1)
    assert res[pnu].false_positive_rate == 1.0
    assert (res[lost].resolved, res[lost].by_operator, res[lost].fixed) == (1, 1, 1)
    assert report.resolutions[0].rule_id == pnu, "most false positives first"
    page = render_html(report)
    assert "False positives by rule" in page and "MTTA" in page
