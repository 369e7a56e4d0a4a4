"""What a rule change would do, before it is made: ``orderwatch rules diff``.

The same events are replayed with two rule sets (one decode per line, two engines in lockstep on
one replay clock) and what each raises is compared per rule and subject:

- ``added``: raised with the new set only; ``removed``: with the old set only;
- ``changed``: raised by both, with another severity or owner (the first raise of each);
- ``moved``: raised by both, at another event time (a threshold that changed).

Given the operators' verdicts (exception events with ``resolution = false_positive``, CONTRACT
v2 section 8), it also counts the known false positives the new set would no longer raise, and
those it still raises. A subject is the contract's (``rule_id``, ``subject``), so an exception
whose id changed with its deadline is still recognised as the same case.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from orderwatch.engine import Engine, ReplayClock
from orderwatch.errors import EventValidationError
from orderwatch.events.codec import decode_event
from orderwatch.events.exception import ExceptionEvent

#: subjects listed per rule and kind of difference
FIRST = 5


@dataclass
class Raised:
    """The first raise of a (rule_id, subject) in one run."""

    severity: str
    owner: str
    event_time: str
    exception_id: str


@dataclass
class RuleDiff:
    rule_id: str
    old: int = 0
    new: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    #: "severity medium -> low, owner logistics -> customer_service" for the first changed ones
    changes: dict[str, str] = field(default_factory=dict)
    false_positives_avoided: int = 0
    false_positives_kept: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.moved)


@dataclass
class WhatIf:
    old_dir: str
    new_dir: str
    old_version: str
    new_version: str
    events: int
    invalid: int
    false_positives_known: int | None
    rules: list[RuleDiff]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> WhatIf:
        raw = orjson.loads(data)
        raw["rules"] = [RuleDiff(**r) for r in raw["rules"]]
        return cls(**raw)

    @property
    def totals(self) -> dict[str, int]:
        return {
            k: sum(len(getattr(r, k)) for r in self.rules)
            for k in ("added", "removed", "changed", "moved")
        }


def _first_raises(events: Iterable[ExceptionEvent]) -> dict[tuple[str, str], Raised]:
    out: dict[tuple[str, str], Raised] = {}
    for e in events:
        if e.state != "raised":
            continue
        key = (e.rule_id, e.subject)
        if key not in out:
            out[key] = Raised(e.severity, e.owner, e.event_time.isoformat(), e.exception_id)
    return out


def false_positives(lines: Iterable[bytes]) -> set[tuple[str, str]]:
    """(rule_id, subject) of every exception an operator resolved as ``false_positive``.

    Read as plain JSON: a v1 exception event simply has no ``resolution``. The latest event of an
    exception decides (a reopened one is no longer a false positive).
    """
    latest: dict[str, tuple[int, tuple[str, str], Any]] = {}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(e, dict) or "exception_id" not in e:
            continue
        seq = e.get("seq")
        order = seq if isinstance(seq, int) else n
        known = latest.get(e["exception_id"])
        if known is None or order >= known[0]:
            latest[e["exception_id"]] = (
                order,
                (str(e.get("rule_id")), str(e.get("subject"))),
                e.get("resolution"),
            )
    return {key for _, key, resolution in latest.values() if resolution == "false_positive"}


def compare(
    lines: Iterable[bytes],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    old_dir: str = "",
    new_dir: str = "",
    old_version: str = "",
    new_version: str = "",
    until: float | None = None,
    known_false: set[tuple[str, str]] | None = None,
    err: TextIO | None = None,
) -> WhatIf:
    """Replay ``lines`` through both rule sets and compare what they raise."""
    a, b = Engine(old, track_dirty=False), Engine(new, track_dirty=False)
    clock = ReplayClock()
    out_a: list[ExceptionEvent] = []
    out_b: list[ExceptionEvent] = []
    events = invalid = 0
    for number, line in enumerate(lines, 1):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue
        try:
            event = decode_event(body)
        except EventValidationError as exc:
            invalid += 1
            if err is not None:
                err.write(f"line {number}: {exc.reason}: {exc.detail}\n")
            continue
        events += 1
        now = clock.observe(event.occurred_ts)
        out_a += a.step(event, now)
        out_b += b.step(event, now)
    end = clock.now if until is None or until < clock.now else until
    out_a += a.sweep(end)
    out_b += b.sweep(end)
    before, after = _first_raises(out_a), _first_raises(out_b)
    rules: dict[str, RuleDiff] = {}

    def of(rule_id: str) -> RuleDiff:
        diff = rules.get(rule_id)
        if diff is None:
            diff = rules[rule_id] = RuleDiff(rule_id)
        return diff

    for (rule_id, subject), raised in before.items():
        d = of(rule_id)
        d.old += 1
        other = after.get((rule_id, subject))
        if other is None:
            d.removed.append(subject)
            continue
        notes = [
            f"{name} {getattr(raised, name)} -> {getattr(other, name)}"
            for name in ("severity", "owner")
            if getattr(raised, name) != getattr(other, name)
        ]
        if notes:
            d.changed.append(subject)
            if len(d.changes) < FIRST:
                d.changes[subject] = ", ".join(notes)
        if raised.event_time != other.event_time:
            d.moved.append(subject)
    for rule_id, subject in after:
        d = of(rule_id)
        d.new += 1
        if (rule_id, subject) not in before:
            d.added.append(subject)
    if known_false is not None:
        for rule_id, subject in known_false:
            if (rule_id, subject) in before and (rule_id, subject) not in after:
                of(rule_id).false_positives_avoided += 1
            elif (rule_id, subject) in after:
                of(rule_id).false_positives_kept += 1
    return WhatIf(
        old_dir=old_dir,
        new_dir=new_dir,
        old_version=old_version,
        new_version=new_version,
        events=events,
        invalid=invalid,
        false_positives_known=None if known_false is None else len(known_false),
        rules=sorted(rules.values(), key=lambda r: r.rule_id),
    )


def run_diff(
    events: BinaryIO,
    old_dir: Path,
    new_dir: Path,
    *,
    until: float | None = None,
    resolutions: BinaryIO | None = None,
    err: TextIO | None = None,
) -> WhatIf:
    """Load both rule directories (either invalid: ``RuleFileError``) and compare."""
    from orderwatch.rulefiles import load_catalog

    old, new = load_catalog(old_dir), load_catalog(new_dir)
    known = false_positives(resolutions) if resolutions is not None else None
    return compare(
        events,
        old,
        new,
        old_dir=str(old_dir),
        new_dir=str(new_dir),
        old_version=old.version,
        new_version=new.version,
        until=until,
        known_false=known,
        err=err,
    )


def _subjects(subjects: list[str]) -> str:
    more = len(subjects) - FIRST
    shown = ", ".join(subjects[:FIRST])
    return f"{shown}, … (+{more})" if more > 0 else shown


def render_text(result: WhatIf) -> str:
    """Per rule that differs: counts, then the first subjects of each kind of difference."""
    lines = [
        f"rules diff: {result.old_dir} ({result.old_version}) -> "
        f"{result.new_dir} ({result.new_version})",
        f"{result.events} events replayed ({result.invalid} invalid skipped)",
    ]
    t = result.totals
    lines.append(
        f"raised in addition: {t['added']}, no longer raised: {t['removed']}, "
        f"severity/owner changed: {t['changed']}, raised at another time: {t['moved']}"
    )
    if result.false_positives_known is not None:
        avoided = sum(r.false_positives_avoided for r in result.rules)
        kept = sum(r.false_positives_kept for r in result.rules)
        lines.append(
            f"known false positives: {result.false_positives_known}; the new set avoids "
            f"{avoided}, still raises {kept}"
        )
    changed = [r for r in result.rules if r.differs or r.false_positives_avoided]
    if not changed:
        lines.append("no difference")
    for r in changed:
        lines.append("")
        lines.append(f"{r.rule_id}: {r.old} -> {r.new} raised")
        for kind, label in (
            ("added", "+ in addition"),
            ("removed", "- no longer"),
            ("changed", "~ severity/owner"),
            ("moved", "~ another time"),
        ):
            subjects: list[str] = getattr(r, kind)
            if subjects:
                lines.append(f"  {label}: {len(subjects)}  ({_subjects(subjects)})")
        for subject, note in r.changes.items():
            lines.append(f"      {subject}: {note}")
        if r.false_positives_avoided or r.false_positives_kept:
            lines.append(
                f"  known false positives avoided: {r.false_positives_avoided}, "
                f"still raised: {r.false_positives_kept}"
            )
    return "\n".join(lines) + "\n"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(result: WhatIf) -> str:
    """The same as ``render_text``, as the report's HTML page ``what-if.html``."""
    from orderwatch.reports.summary import _CSS, _table

    t = result.totals
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>orderwatch what-if: a rule change</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>What the rule change would do</h1>",
        f'<p class="meta">{_e(result.old_dir)} ({_e(result.old_version)}) → '
        f"{_e(result.new_dir)} ({_e(result.new_version)}) · {result.events} events replayed, "
        f"{result.invalid} invalid skipped</p>",
        '<div class="kpis">',
    ]
    kpis = [
        ("raised in addition", t["added"]),
        ("no longer raised", t["removed"]),
        ("severity / owner changed", t["changed"]),
        ("raised at another time", t["moved"]),
    ]
    if result.false_positives_known is not None:
        kpis.append(
            ("known false positives avoided", sum(r.false_positives_avoided for r in result.rules))
        )
    out += [f'<div class="kpi"><b>{v}</b>{_e(k)}</div>' for k, v in kpis]
    out.append("</div><h2>Per rule</h2>")
    rows = [
        (
            r.rule_id,
            r.old,
            r.new,
            len(r.added),
            len(r.removed),
            len(r.changed),
            len(r.moved),
            r.false_positives_avoided if result.false_positives_known is not None else "–",
        )
        for r in result.rules
        if r.differs or r.false_positives_avoided
    ]
    out.append(
        _table(
            (
                "rule",
                "old",
                "new",
                "in addition",
                "no longer",
                "severity/owner",
                "another time",
                "false positives avoided",
            ),
            rows,
            numeric=(1, 2, 3, 4, 5, 6, 7),
        )
        if rows
        else "<p>No difference.</p>"
    )
    for r in result.rules:
        if not (r.differs or r.false_positives_avoided):
            continue
        out.append(f"<h2>{_e(r.rule_id)}</h2>")
        detail = [
            (label, len(getattr(r, kind)), _subjects(getattr(r, kind)))
            for kind, label in (
                ("added", "raised in addition"),
                ("removed", "no longer raised"),
                ("changed", "severity/owner changed"),
                ("moved", "raised at another time"),
            )
            if getattr(r, kind)
        ]
        out.append(_table(("difference", "count", "first subjects"), detail))
        if r.changes:
            out.append(_table(("subject", "change"), list(r.changes.items()), numeric=()))
    out.append("</body></html>\n")
    return "".join(out)


def write_html(result: WhatIf, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    page = out / "what-if.html"
    page.write_text(render_html(result), encoding="utf-8")
    return page
