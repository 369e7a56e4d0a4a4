"""``orderwatch report``: the weekly review of exceptions, as one HTML page plus CSV tables.

Operations teams run it after the fact (a post-mortem, a weekly review), so it reads what
orderwatch already published: a JSONL file of exception events (``orderwatch replay`` output or a
topic dump) or the exceptions topic itself, from the beginning to its end offsets at start-up.

The figures come from :func:`compute`, a pure function over a list of ``ExceptionEvent`` so that
tests pin them without files or a broker; readers and writers around it are thin. The HTML page
is self-contained (inline CSS and SVG, no script, no external URL) so it can be mailed or attached
to a ticket and still render offline.
"""

from __future__ import annotations

import asyncio
import csv
import html
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from orderwatch.errors import OrderwatchError
from orderwatch.events.exception import ExceptionEvent

#: Called with the number of bytes (file) or records (topic) consumed since the previous call.
Progress = Callable[[int], None]

#: Label used in count tables when a value is absent; only the always-present fields use it.
NONE_LABEL = "(none)"


class ReportError(OrderwatchError):
    """The report cannot be built: its input cannot be read or holds no exception at all."""


# --------------------------------------------------------------------------------------------
# The figures (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    """Exception counts by one attribute; ``covered`` says how many exceptions carried it.

    Attributes such as province or carrier only exist for some rules, so a reader needs the
    coverage to tell "few exceptions in Shanghai" from "few exceptions that record a province".
    """

    key: str
    title: str
    column: str
    rows: list[tuple[str, int]]
    covered: int
    note: str = ""
    #: Keep rows in key order (hours of the day) instead of the largest first.
    ordinal: bool = False


@dataclass(frozen=True)
class RuleStats:
    """Per rule: how many exceptions, how fast they were resolved, how often they escalated."""

    rule_id: str
    exceptions: int
    resolved: int
    escalated: int
    p50: timedelta | None
    p90: timedelta | None
    max: timedelta | None

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.exceptions if self.exceptions else 0.0


@dataclass(frozen=True)
class SubjectStats:
    subject: str
    exceptions: int
    rules: tuple[str, ...]


@dataclass(frozen=True)
class OwnerStats:
    """v2, per owner team: how fast people acknowledged (MTTA) and resolved (MTTR).

    Both are measured from ``event_time`` (when the condition became true) to ``detected_at`` of
    the first ``acknowledged`` event, and of the resolution; means and nearest-rank medians over
    the exceptions that reached that point within the input.
    """

    owner: str
    exceptions: int
    acknowledged: int
    mtta: timedelta | None
    p50_tta: timedelta | None
    resolved: int
    mttr: timedelta | None
    p50_ttr: timedelta | None


@dataclass(frozen=True)
class ResolutionStats:
    """v2, per rule: who resolved its exceptions and why people closed them.

    ``false_positive`` over the operator's resolutions is the number that tells a threshold is
    wrong: the detector raised something people judged not to be a problem.
    """

    rule_id: str
    resolved: int
    by_rule: int
    by_operator: int
    fixed: int
    false_positive: int
    duplicate: int
    wont_fix: int

    @property
    def false_positive_rate(self) -> float:
        return self.false_positive / self.by_operator if self.by_operator else 0.0


@dataclass(frozen=True)
class Report:
    exceptions: int
    state_changes: int
    first_event_time: datetime | None
    last_event_time: datetime | None
    breakdowns: list[Breakdown]
    rules: list[RuleStats]
    top_subjects: list[SubjectStats]
    owners: list[OwnerStats] = field(default_factory=list)
    resolutions: list[ResolutionStats] = field(default_factory=list)


@dataclass
class _Exception:
    """Every state change seen for one exception_id, folded into what the figures need."""

    first: ExceptionEvent
    raised: ExceptionEvent | None = None
    resolved: ExceptionEvent | None = None
    #: v2: the first acknowledgement
    acknowledged: ExceptionEvent | None = None
    level: int = 0
    values: dict[str, object] = field(default_factory=dict)


#: Order of the states of one exception when ``seq`` ties (v1 events have no seq: all 1).
_STATE_ORDER = {"raised": 0, "inhibited": 0, "escalated": 1, "resolved": 2}


def _fold(events: Iterable[ExceptionEvent]) -> dict[str, _Exception]:
    """Group state changes by exception; re-delivered changes count once (first one wins).

    Evidence values are taken from the raised event first and only filled in from later changes:
    a resolving event carries the values of what resolved it (the new address, the carrier that
    finally shipped), which describe the fix rather than the problem.
    """
    folded: dict[str, _Exception] = {}
    ordered = sorted(
        events, key=lambda e: (e.seq, _STATE_ORDER.get(e.state, 1), e.escalation_level)
    )
    for ev in ordered:
        ex = folded.get(ev.exception_id)
        if ex is None:
            ex = folded[ev.exception_id] = _Exception(first=ev)
        if ev.state in ("raised", "inhibited") and ex.raised is None:
            ex.raised = ev  # v2: an inhibited exception starts as inhibited instead
        elif ev.state == "resolved" and (ex.resolved is None or ev.seq > ex.resolved.seq):
            ex.resolved = ev  # v2: after a reopen, the last resolution counts
        elif ev.state == "reopened":
            ex.resolved = None
        elif ev.state == "acknowledged" and ex.acknowledged is None:
            ex.acknowledged = ev
        ex.level = max(ex.level, ev.escalation_level)
        for name, value in ev.evidence.values.items():
            if value is not None and value != "":
                ex.values.setdefault(name, value)
    return folded


def percentile(sorted_values: Sequence[timedelta], p: float) -> timedelta:
    """Nearest-rank percentile: always a duration that really happened, never an interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _count(
    key: str,
    title: str,
    column: str,
    exceptions: Iterable[_Exception],
    pick: Callable[[_Exception], str | None],
    note: str = "",
) -> Breakdown:
    counts: Counter[str] = Counter()
    for ex in exceptions:
        value = pick(ex)
        if value is not None and value != "":
            counts[value] += 1
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return Breakdown(key, title, column, rows, sum(counts.values()), note)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _sku(ex: _Exception) -> str | None:
    for ev in (ex.raised, ex.first):
        if ev is not None and ev.sku:
            return ev.sku
    return _text(ex.values.get("sku"))


def _city(ex: _Exception) -> str | None:
    """City qualified by its province: the same city name exists in more than one province."""
    city = _text(ex.values.get("city"))
    if city is None:
        return None
    province = _text(ex.values.get("province"))
    return f"{province} / {city}" if province else city


def _anchor(ex: _Exception) -> ExceptionEvent:
    return ex.raised or ex.first


def compute(events: Sequence[ExceptionEvent], top: int = 20) -> Report:
    """All figures of the review from the exception events read, in any order.

    An exception is one ``exception_id``; its raised, escalated and resolved events are state
    changes of it. Exceptions whose ``raised`` event is missing (raised before the input starts)
    still count, but have no time to resolve.
    """
    folded = _fold(events)
    exs = list(folded.values())
    breakdowns = [
        _count("rule", "Exceptions by rule", "rule_id", exs, lambda e: e.first.rule_id),
        _count("category", "Exceptions by category", "category", exs, lambda e: e.first.category),
        _count("owner", "Exceptions by owner", "owner", exs, lambda e: e.first.owner),
        _count("severity", "Exceptions by severity", "severity", exs, lambda e: e.first.severity),
        _count(
            "province",
            "Exceptions by province",
            "province",
            exs,
            lambda e: _text(e.values.get("province")),
            "from evidence.values; only rules that record an address carry it",
        ),
        _count(
            "city",
            "Exceptions by city",
            "city",
            exs,
            _city,
            "from evidence.values, shown as province / city",
        ),
        _count("sku", "Exceptions by SKU", "sku", exs, _sku, "the exception's sku, else evidence"),
        _count(
            "carrier",
            "Exceptions by carrier",
            "carrier",
            exs,
            lambda e: _text(e.values.get("carrier")),
            "from evidence.values; logistics rules carry it",
        ),
    ]
    hours = Counter(_anchor(ex).event_time.astimezone(UTC).hour for ex in exs)
    breakdowns.append(
        Breakdown(
            "hour_utc",
            "Exceptions by hour of day (UTC)",
            "hour_utc",
            [(f"{h:02d}", hours.get(h, 0)) for h in range(24)],
            len(exs),
            "hour of event_time of the raised event, in UTC",
            ordinal=True,
        )
    )

    by_rule: dict[str, list[_Exception]] = defaultdict(list)
    for ex in exs:
        by_rule[ex.first.rule_id].append(ex)
    rules = []
    for rule_id, members in by_rule.items():
        durations = sorted(
            ex.resolved.detected_at - ex.raised.event_time
            for ex in members
            if ex.raised is not None and ex.resolved is not None
        )
        rules.append(
            RuleStats(
                rule_id=rule_id,
                exceptions=len(members),
                resolved=sum(1 for ex in members if ex.resolved is not None),
                escalated=sum(1 for ex in members if ex.level >= 1),
                p50=percentile(durations, 50) if durations else None,
                p90=percentile(durations, 90) if durations else None,
                max=durations[-1] if durations else None,
            )
        )
    rules.sort(key=lambda r: (-r.exceptions, r.rule_id))

    by_subject: dict[str, list[_Exception]] = defaultdict(list)
    for ex in exs:
        by_subject[ex.first.subject].append(ex)
    subjects = sorted(
        (
            SubjectStats(subject, len(members), tuple(sorted({e.first.rule_id for e in members})))
            for subject, members in by_subject.items()
        ),
        key=lambda s: (-s.exceptions, s.subject),
    )[:top]

    times = [_anchor(ex).event_time for ex in exs]
    return Report(
        exceptions=len(exs),
        state_changes=len(events),
        first_event_time=min(times) if times else None,
        last_event_time=max(times) if times else None,
        breakdowns=breakdowns,
        rules=rules,
        top_subjects=subjects,
        owners=_owners(exs),
        resolutions=_resolutions(exs),
    )


def _mean(values: Sequence[timedelta]) -> timedelta | None:
    return sum(values, timedelta()) / len(values) if values else None


def _owners(exs: Sequence[_Exception]) -> list[OwnerStats]:
    by_owner: dict[str, list[_Exception]] = defaultdict(list)
    for ex in exs:
        by_owner[ex.first.owner].append(ex)
    owners = []
    for owner, members in by_owner.items():
        tta = sorted(
            ex.acknowledged.detected_at - ex.acknowledged.event_time
            for ex in members
            if ex.acknowledged is not None
        )
        ttr = sorted(
            ex.resolved.detected_at - ex.resolved.event_time
            for ex in members
            if ex.resolved is not None
        )
        owners.append(
            OwnerStats(
                owner=owner,
                exceptions=len(members),
                acknowledged=len(tta),
                mtta=_mean(tta),
                p50_tta=percentile(tta, 50) if tta else None,
                resolved=len(ttr),
                mttr=_mean(ttr),
                p50_ttr=percentile(ttr, 50) if ttr else None,
            )
        )
    owners.sort(key=lambda o: (-o.exceptions, o.owner))
    return owners


def _resolutions(exs: Sequence[_Exception]) -> list[ResolutionStats]:
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for ex in exs:
        if ex.resolved is None:
            continue
        tally = by_rule[ex.first.rule_id]
        tally["resolved"] += 1
        if ex.resolved.resolved_by == "operator":
            tally["operator"] += 1
            tally[ex.resolved.resolution or "unknown"] += 1
        else:
            tally["rule"] += 1  # v1 events: the detector was the only one who resolved
    rows = [
        ResolutionStats(
            rule_id=rule_id,
            resolved=t["resolved"],
            by_rule=t["rule"],
            by_operator=t["operator"],
            fixed=t["fixed"],
            false_positive=t["false_positive"],
            duplicate=t["duplicate"],
            wont_fix=t["wont_fix"],
        )
        for rule_id, t in by_rule.items()
    ]
    rows.sort(key=lambda r: (-r.false_positive, -r.by_operator, -r.resolved, r.rule_id))
    return rows


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class ReadStats:
    """What the reader saw, printed in the report so a reviewer knows how complete it is."""

    source: str
    records: int = 0
    skipped: int = 0


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[:2]
    if first and first[0]["type"] == "json_invalid":
        return f"invalid_json: {first[0]['msg']}"
    return "schema: " + "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in first
    )


def read_jsonl(
    lines: Iterable[bytes], err: TextIO, stats: ReadStats, progress: Progress | None = None
) -> list[ExceptionEvent]:
    """Decode one exception event a line; a bad line is reported on ``err`` and skipped."""
    events: list[ExceptionEvent] = []
    pending = 0
    for number, line in enumerate(lines, 1):
        stats.records = number
        pending += len(line)
        if progress is not None and pending >= 1 << 16:
            progress(pending)
            pending = 0
        body = line.strip()
        if not body:
            continue
        try:
            events.append(ExceptionEvent.model_validate_json(body))
        except ValidationError as exc:
            stats.skipped += 1
            err.write(f"line {number}: {_reason(exc)}\n")
    if progress is not None and pending:
        progress(pending)
    return events


async def read_topic(
    bootstrap: str,
    topic: str,
    err: TextIO,
    stats: ReadStats,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    stall_seconds: float = 30.0,
    kafka: dict[str, Any] | None = None,
) -> list[ExceptionEvent]:
    """Read every partition from its beginning to the end offset it had when we started.

    The end is fixed when reading starts so the report describes a definite snapshot and terminates
    even while the detector keeps publishing. No consumer group is used, so nothing is committed
    and a report never moves anybody's offsets.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
        **(kafka or {}),
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()  # closes what start() opened before it failed
        raise ReportError(f"cannot connect to Kafka at {bootstrap}: {exc}") from None
    events: list[ExceptionEvent] = []
    try:
        partitions = (
            consumer.partitions_for_topic(topic) if topic in await consumer.topics() else None
        )
        if not partitions:
            raise ReportError(f"topic {topic!r} does not exist at {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        listed = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        # Each partition's end is fixed once: the larger of ListOffsets' answer and the high
        # watermark of its first fetch response. On Kafka they agree; Tansu answers ListOffsets
        # with the base offset of the last batch, which would cut off that batch (or a whole
        # partition holding a single batch).
        ends: dict[TopicPartition, int] = {}
        remaining = set(tps)
        idle = 0.0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            newly = [
                tp for tp in remaining if tp not in ends and consumer.highwater(tp) is not None
            ]
            for tp in newly:
                ends[tp] = max(listed[tp], consumer.highwater(tp))
            if newly and on_total is not None:
                on_total(sum(max(0, ends.get(tp, listed[tp]) - starts[tp]) for tp in tps))
            got = 0
            for tp, records in batches.items():
                end = ends.get(tp, listed[tp])
                for record in records:
                    if record.offset >= end:
                        continue
                    got += 1
                    stats.records += 1
                    _decode_record(record.value, tp.partition, record.offset, events, err, stats)
            for tp in list(remaining):
                if tp in ends and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if progress is not None and got:
                progress(got)
            idle = 0.0 if got or newly else idle + 1.0
            if remaining and idle >= stall_seconds:
                raise ReportError(
                    f"no progress on {topic!r} for {stall_seconds:.0f}s before its end offsets"
                )
    finally:
        await consumer.stop()
    return events


def _decode_record(
    value: bytes | None,
    partition: int,
    offset: int,
    events: list[ExceptionEvent],
    err: TextIO,
    stats: ReadStats,
) -> None:
    if value is None:
        stats.skipped += 1
        err.write(f"partition {partition} offset {offset}: empty message (tombstone)\n")
        return
    try:
        events.append(ExceptionEvent.model_validate_json(value))
    except ValidationError as exc:
        stats.skipped += 1
        err.write(f"partition {partition} offset {offset}: {_reason(exc)}\n")


# --------------------------------------------------------------------------------------------
# Writing: CSV
# --------------------------------------------------------------------------------------------


def seconds(value: timedelta | None) -> str:
    """Durations in CSV as plain seconds, so a spreadsheet can sort and sum them."""
    if value is None:
        return ""
    return f"{value.total_seconds():.3f}".rstrip("0").rstrip(".")


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas: subjects and SKUs come from upstream systems.

    A leading quote is what spreadsheets themselves use to mean "this is text".
    """
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) if isinstance(v, str) else v for v in row])
    return path


def write_csvs(report: Report, out: Path) -> list[Path]:
    """One CSV a breakdown; every row is written, unlike the HTML page which shows the top."""
    paths = [
        _write_csv(out / f"by_{b.key}.csv", [b.column, "exceptions"], b.rows)
        for b in report.breakdowns
    ]
    paths.append(
        _write_csv(
            out / "time_to_resolve_by_rule.csv",
            ["rule_id", "resolved", "p50_seconds", "p90_seconds", "max_seconds"],
            (
                (r.rule_id, r.resolved, seconds(r.p50), seconds(r.p90), seconds(r.max))
                for r in report.rules
            ),
        )
    )
    paths.append(
        _write_csv(
            out / "escalation_by_rule.csv",
            ["rule_id", "exceptions", "escalated", "escalation_rate"],
            (
                (r.rule_id, r.exceptions, r.escalated, f"{r.escalation_rate:.4f}")
                for r in report.rules
            ),
        )
    )
    paths.append(
        _write_csv(
            out / "response_by_owner.csv",
            [
                "owner",
                "exceptions",
                "acknowledged",
                "mtta_seconds",
                "p50_tta_seconds",
                "resolved",
                "mttr_seconds",
                "p50_ttr_seconds",
            ],
            (
                (
                    o.owner,
                    o.exceptions,
                    o.acknowledged,
                    seconds(o.mtta),
                    seconds(o.p50_tta),
                    o.resolved,
                    seconds(o.mttr),
                    seconds(o.p50_ttr),
                )
                for o in report.owners
            ),
        )
    )
    paths.append(
        _write_csv(
            out / "resolutions_by_rule.csv",
            [
                "rule_id",
                "resolved",
                "by_rule",
                "by_operator",
                "fixed",
                "false_positive",
                "duplicate",
                "wont_fix",
                "false_positive_rate",
            ],
            (
                (
                    r.rule_id,
                    r.resolved,
                    r.by_rule,
                    r.by_operator,
                    r.fixed,
                    r.false_positive,
                    r.duplicate,
                    r.wont_fix,
                    f"{r.false_positive_rate:.4f}",
                )
                for r in report.resolutions
            ),
        )
    )
    paths.append(
        _write_csv(
            out / "top_subjects.csv",
            ["subject", "exceptions", "rules"],
            ((s.subject, s.exceptions, " ".join(s.rules)) for s in report.top_subjects),
        )
    )
    return paths


# --------------------------------------------------------------------------------------------
# Writing: HTML
# --------------------------------------------------------------------------------------------


def human(value: timedelta | None) -> str:
    """A duration as people say it in a review: ``2d 03h``, ``1h 05m``, ``4m 10s``."""
    if value is None:
        return "–"
    total = round(value.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(label: str, width: int) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


_BAR = "#3b6ea8"
_CHART_W = 560
_LABEL_W = 200


def bar_chart(rows: Sequence[tuple[str, float]], unit: str = "", fmt: str = "{:g}") -> str:
    """A horizontal bar chart as inline SVG, largest bar full width; labels carry a tooltip."""
    if not rows:
        return ""
    row_h, pad = 22, 6
    peak = max(v for _, v in rows) or 1
    bar_w = _CHART_W - _LABEL_W - 70
    height = len(rows) * row_h + pad * 2
    parts = [
        f'<svg class="chart" width="{_CHART_W}" height="{height}" '
        f'viewBox="0 0 {_CHART_W} {height}" role="img">'
    ]
    for i, (label, value) in enumerate(rows):
        y = pad + i * row_h
        w = max(1.0, bar_w * value / peak) if value else 0.0
        shown = fmt.format(value) + unit
        parts.append(
            f"<g><title>{_e(label)}: {_e(shown)}</title>"
            f'<text x="{_LABEL_W - 8}" y="{y + 15}" text-anchor="end">'
            f"{_e(_short(label, 30))}</text>"
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{_BAR}"/>'
            f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 15}">{_e(shown)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(rows: Sequence[tuple[str, int]]) -> str:
    """Vertical bars in key order, for the hours of the day where position carries meaning."""
    if not rows:
        return ""
    col_w, top, bottom, plot_h = 28, 18, 22, 160
    width = len(rows) * col_w + 20
    height = top + plot_h + bottom
    peak = max(v for _, v in rows) or 1
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (label, value) in enumerate(rows):
        x = 10 + i * col_w
        h = plot_h * value / peak
        y = top + plot_h - h
        parts.append(
            f"<g><title>{_e(label)}:00 UTC: {value}</title>"
            f'<rect x="{x + 3}" y="{y:.1f}" width="{col_w - 6}" height="{h:.1f}" '
            f'fill="{_BAR}"/>'
            f'<text x="{x + col_w / 2}" y="{y - 4:.1f}" text-anchor="middle" class="small">'
            f"{value if value else ''}</text>"
            f'<text x="{x + col_w / 2}" y="{height - 6}" text-anchor="middle" class="small">'
            f"{_e(label)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(
    header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (1,)
) -> str:
    """Columns listed in ``numeric`` hold figures: right-aligned, tabular digits."""
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1000px;color:#1d2733;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d8dee6;padding-bottom:.2rem}
.meta{color:#56657a}.note{color:#56657a;font-size:.9rem;margin:.2rem 0 .6rem}
.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.kpi{background:#f2f5f9;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.kpi b{display:block;font-size:1.5rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{padding:.25rem .7rem;border-bottom:1px solid #e3e8ee;text-align:left}
th{background:#f2f5f9}.num{text-align:right;font-variant-numeric:tabular-nums}
.pair{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}
svg.chart{display:block;font-size:12px;fill:#1d2733}svg .small{font-size:10px}
"""


def render_html(
    report: Report, stats: ReadStats | None = None, top: int = 20, generated_at: str = ""
) -> str:
    """The whole review as one HTML document; every piece of input text goes through escape."""

    def when(value: datetime | None) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "–"

    escalated = sum(r.escalated for r in report.rules)
    resolved = sum(r.resolved for r in report.rules)
    out: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>orderwatch exception review</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>orderwatch exception review</h1>",
        f'<p class="meta">Exceptions with event_time from {_e(when(report.first_event_time))}'
        f" to {_e(when(report.last_event_time))}",
    ]
    if stats is not None:
        out.append(
            f" · source {_e(stats.source)}: {stats.records} records read,"
            f" {stats.skipped} skipped as invalid"
        )
    if generated_at:
        out.append(f" · generated {_e(generated_at)}")
    out.append("</p>")
    rate = escalated / report.exceptions if report.exceptions else 0.0
    kpis = [
        ("exceptions", str(report.exceptions)),
        ("state changes", str(report.state_changes)),
        ("resolved", str(resolved)),
        ("escalated", f"{escalated} ({rate:.1%})"),
        ("rules fired", str(len(report.rules))),
    ]
    out.append(
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in kpis)
        + "</div>"
    )

    out.append('<h2 id="rules">By rule: volume, time to resolve, escalation</h2>')
    out.append(
        '<p class="note">Time to resolve is <code>detected_at</code> of the resolved event minus '
        "<code>event_time</code> of the raised event, over exceptions with both in the input "
        "(nearest-rank percentiles). Escalation rate is the share of the rule's exceptions that "
        "reached escalation level 1 or more. Notification rules never resolve or escalate.</p>"
    )
    out.append(
        _table(
            ["rule_id", "exceptions", "resolved", "p50", "p90", "max", "escalated", "rate"],
            (
                (
                    r.rule_id,
                    r.exceptions,
                    r.resolved,
                    human(r.p50),
                    human(r.p90),
                    human(r.max),
                    r.escalated,
                    f"{r.escalation_rate:.1%}",
                )
                for r in report.rules
            ),
            numeric=range(1, 8),
        )
    )
    timed = [(r.rule_id, r.p90.total_seconds() / 3600) for r in report.rules if r.p90 is not None]
    if timed:
        out.append("<h3>Time to resolve, p90 (hours)</h3>")
        out.append(bar_chart(sorted(timed, key=lambda kv: -kv[1])[:top], " h", "{:.2f}"))
    escal = [(r.rule_id, 100 * r.escalation_rate) for r in report.rules if r.escalated]
    if escal:
        out.append("<h3>Escalation rate (%)</h3>")
        out.append(bar_chart(sorted(escal, key=lambda kv: -kv[1])[:top], " %", "{:.1f}"))

    out.extend(_operator_sections(report))

    for b in report.breakdowns:
        out.append(f'<h2 id="{_e(b.key)}">{_e(b.title)}</h2>')
        note = f"{b.covered} of {report.exceptions} exceptions"
        if b.note:
            note += f"; {b.note}"
        out.append(f'<p class="note">{_e(note)}. Full table: by_{_e(b.key)}.csv</p>')
        if b.ordinal:
            out.append(column_chart(b.rows))
            continue
        if not b.rows:
            out.append('<p class="note">No exception carries this value.</p>')
            continue
        shown = b.rows[:top]
        out.append(
            f'<div class="pair">{bar_chart(shown)}{_table([b.column, "exceptions"], shown)}</div>'
        )
        if len(b.rows) > top:
            out.append(f'<p class="note">and {len(b.rows) - top} more in by_{_e(b.key)}.csv</p>')

    out.append('<h2 id="subjects">Top subjects</h2>')
    out.append(
        '<p class="note">Subjects (orders, sku/warehouse, windows) with the most exceptions. '
        "Full table: top_subjects.csv</p>"
    )
    out.append(
        _table(
            ["subject", "exceptions", "rules"],
            ((s.subject, s.exceptions, ", ".join(s.rules)) for s in report.top_subjects),
            numeric=(1,),
        )
    )
    out.append("</body></html>\n")
    return "".join(out)


def _operator_sections(report: Report) -> list[str]:
    """v2: MTTA/MTTR by owner team, and who resolved what, why (false positives per rule)."""
    out = ['<h2 id="owners">By owner team: time to acknowledge and to resolve</h2>']
    out.append(
        '<p class="note">MTTA: <code>event_time</code> to the first <code>acknowledged</code> '
        "event; MTTR: <code>event_time</code> to the resolution (by the rule or by an "
        "operator); means, and nearest-rank medians. Full table: response_by_owner.csv</p>"
    )
    out.append(
        _table(
            ["owner", "exceptions", "acknowledged", "MTTA", "p50", "resolved", "MTTR", "p50"],
            (
                (
                    o.owner,
                    o.exceptions,
                    o.acknowledged,
                    human(o.mtta),
                    human(o.p50_tta),
                    o.resolved,
                    human(o.mttr),
                    human(o.p50_ttr),
                )
                for o in report.owners
            ),
            numeric=range(1, 8),
        )
    )
    out.append('<h2 id="resolutions">Resolutions by rule: by the rule or by people, and why</h2>')
    out.append(
        '<p class="note">Many <b>false positives</b> for a rule mean its threshold is wrong: '
        "people closed what it raised as not a problem. The rate is over the operators' "
        "resolutions. Full table: resolutions_by_rule.csv</p>"
    )
    if not report.resolutions:
        out.append('<p class="note">Nothing was resolved in this input.</p>')
        return out
    out.append(
        _table(
            [
                "rule_id",
                "resolved",
                "by rule",
                "by operator",
                "fixed",
                "false positive",
                "duplicate",
                "won't fix",
                "false positive rate",
            ],
            (
                (
                    r.rule_id,
                    r.resolved,
                    r.by_rule,
                    r.by_operator,
                    r.fixed,
                    r.false_positive,
                    r.duplicate,
                    r.wont_fix,
                    f"{r.false_positive_rate:.1%}" if r.by_operator else "–",
                )
                for r in report.resolutions
            ),
            numeric=range(1, 9),
        )
    )
    fps = [(r.rule_id, float(r.false_positive)) for r in report.resolutions if r.false_positive]
    if fps:
        out.append("<h3>False positives by rule</h3>")
        out.append(bar_chart(fps, "", "{:g}"))
    return out


def write_report(
    report: Report, out: Path, stats: ReadStats | None = None, top: int = 20
) -> list[Path]:
    """``report.html`` and the CSV tables in ``out`` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = out / "report.html"
    page.write_text(render_html(report, stats, top, generated), encoding="utf-8")
    return [page, *write_csvs(report, out)]


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def run_report(
    out: Path,
    *,
    events_path: str | None = None,
    bootstrap: str | None = None,
    topic: str = "order-exceptions",
    top: int = 20,
    err: TextIO | None = None,
) -> tuple[Report, ReadStats, list[Path]]:
    """Read (file, stdin or topic) with a progress bar on a terminal, compute, write."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = err if err is not None else sys.stderr
    console = Console(file=err, stderr=err is sys.stderr)
    if bootstrap is not None:
        stats = ReadStats(source=f"kafka {bootstrap} topic {topic}")
        columns = (TextColumn("reading {task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(topic, total=None)
            events = asyncio.run(
                read_topic(
                    bootstrap,
                    topic,
                    err,
                    stats,
                    progress=lambda n: bar.advance(task, n),
                    on_total=lambda n: bar.update(task, total=n),
                )
            )
    elif events_path is not None:
        stats = ReadStats(source="stdin" if events_path == "-" else events_path)
        if events_path == "-":
            events = read_jsonl(sys.stdin.buffer, err, stats)
        else:
            try:
                size = Path(events_path).stat().st_size
                stream = open(events_path, "rb")  # noqa: SIM115
            except OSError as exc:
                raise ReportError(f"cannot read {events_path}: {exc.strerror}") from None
            columns2 = (
                TextColumn("reading {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
            )
            with stream, Progress(*columns2, console=console, transient=True) as bar:
                task = bar.add_task(Path(events_path).name, total=size)
                try:
                    events = read_jsonl(stream, err, stats, lambda n: bar.advance(task, n))
                except OSError as exc:
                    raise ReportError(f"cannot read {events_path}: {exc.strerror}") from None
    else:
        raise ReportError("give a JSONL file (or -) or --bootstrap")
    if stats.skipped:
        err.write(f"orderwatch report: skipped {stats.skipped} invalid record(s)\n")
    report = compute(events, top)
    return report, stats, write_report(report, out, stats, top)
