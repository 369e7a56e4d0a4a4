"""Load and validate ``rules/*.yaml``: one file per rule, errors that name the file and the line.

An operator edits these files to tune thresholds, owners and playbooks; a typo must stop the
deploy with a message that points at the line (``orderwatch rules check``), not surface at 3 a.m.
as a rule that silently never fires.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orderwatch.engine.catalog import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_ESCALATE_AFTER,
    DEFAULT_INHIBITED_BY,
    NOT_PER_ORDER,
    RULE_DEFS,
    Rule,
    RuleDef,
    parse_duration,
)
from orderwatch.engine.inhibition import check as check_inhibition
from orderwatch.engine.orders import TIMEOUTS
from orderwatch.engine.params import (
    KEEP,
    ORDER_FACTS,
    PERIOD,
    WEEKDAYS,
    Override,
    Period,
    Tuning,
    WorkingHours,
    local_midnight,
)
from orderwatch.engine.policy import PolicyFile, build, defaults, problem
from orderwatch.errors import RuleFileError, RuleSetError
from orderwatch.events.exception import Category, Owner, Severity


class OverrideFile(BaseModel):
    """One ``overrides:`` entry: a condition on the subject's fields and the values it sets."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    when: dict[str, str | list[str]] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    severity: Severity | None = None
    owner: Owner | None = None
    escalate_after: float | Literal["never"] | None = None
    working_hours: str | None = None

    @field_validator("escalate_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or value == "never":
            return value
        return parse_duration(value)

    @field_validator("when", mode="before")
    @classmethod
    def _scalars(cls, value: object) -> object:
        # YAML reads `warehouse_id: 7` as a number; the events carry text
        if isinstance(value, dict):
            return {
                k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in value.items()
            }
        return value


class RuleFile(BaseModel):
    """The schema of one rule file."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    title: str = Field(min_length=1)
    description: str = ""
    enabled: bool = True
    category: Category
    severity: Severity
    owner: Owner
    escalate_after: float | Literal["never"] | None = None
    #: v2: acknowledged this long without a resolve, it is open again (default by severity)
    ack_timeout: float | Literal["never"] | None = None
    #: v2: rules whose open exception on the same order explains this one (CONTRACT section 9)
    inhibited_by: list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    summary: str = Field(min_length=1)
    actions: list[str] = Field(min_length=1)
    #: the working-hours schedule (``calendars.yaml``) this timeout counts in
    working_hours: str | None = None
    overrides: list[OverrideFile] = Field(default_factory=list)
    #: v2: remediation actions (CONTRACT section 10); absent: the contract's defaults
    remediation: list[PolicyFile] | None = None

    @field_validator("escalate_after", "ack_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or value == "never":
            return value
        return parse_duration(value)


@dataclass(frozen=True)
class Catalog(Mapping[str, Rule]):
    """The effective rules by rule_id; what the engine runs."""

    rules: dict[str, Rule]
    directory: str
    #: a short hash of every file the catalog was read from: which rule set a worker runs
    version: str = ""
    calendar: Calendar = dc_field(default_factory=lambda: Calendar())

    def __getitem__(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def enabled(self, rule_id: str) -> bool:
        rule = self.rules.get(rule_id)
        return rule is not None and rule.enabled


def default_rules_dir() -> Path:
    """The repository's ``rules/`` when run from a checkout, else ``./rules``."""
    here = Path(__file__).resolve().parents[2] / "rules"
    return here if here.is_dir() else Path.cwd() / "rules"


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    if node is None:
        return None
    line: int | None = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _first_error(
    exc: ValidationError, root: yaml.Node | None, path: str, prefix: tuple[str | int, ...] = ()
) -> RuleFileError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = prefix + tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "<file>"
    return RuleFileError(path, _line_of(root, loc), f"{field}: {err['msg']}")


def load_rule_file(path: Path, calendar: Calendar | None = None) -> Rule:
    """Parse and validate one file against the schema and the rule's own parameter model.

    ``calendar`` holds the periods and working hours the file may refer to (``calendars.yaml``).
    """
    calendar = calendar or Calendar()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(name, None, f"cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RuleFileError(name, line, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise RuleFileError(name, 1, "a rule file must be a mapping of fields")
    try:
        spec = RuleFile.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, root, name) from None
    rule_def = RULE_DEFS.get(spec.rule_id)
    if rule_def is None:
        raise RuleFileError(name, _line_of(root, ("rule_id",)), f"unknown rule_id {spec.rule_id!r}")
    if path.stem != spec.rule_id:
        raise RuleFileError(
            name, _line_of(root, ("rule_id",)), f"file must be named {spec.rule_id}.yaml"
        )
    if spec.category != rule_def.category:
        raise RuleFileError(
            name,
            _line_of(root, ("category",)),
            f"category of {spec.rule_id} is {rule_def.category!r}, not {spec.category!r}",
        )
    try:
        params = rule_def.params.model_validate(spec.params)
    except ValidationError as exc:
        raise _first_error(exc, root, name, ("params",)) from None
    if spec.escalate_after == "never" or not rule_def.resolvable:
        if rule_def.resolvable is False and spec.escalate_after not in (None, "never"):
            raise RuleFileError(
                name,
                _line_of(root, ("escalate_after",)),
                f"{spec.rule_id} is a notification (no resolving condition) and never escalates",
            )
        escalate: float | None = None
    elif spec.escalate_after is None:
        escalate = DEFAULT_ESCALATE_AFTER[spec.severity]
    else:
        escalate = spec.escalate_after
    if spec.ack_timeout == "never":
        ack_timeout: float | None = None
    elif spec.ack_timeout is None:
        ack_timeout = DEFAULT_ACK_TIMEOUT[spec.severity]
    else:
        ack_timeout = spec.ack_timeout
    if spec.inhibited_by is None:
        inhibited_by = DEFAULT_INHIBITED_BY.get(spec.rule_id, ())
    else:
        inhibited_by = tuple(spec.inhibited_by)
        own: dict[str, tuple[str, ...]] = {i: () for i in inhibited_by if i in RULE_DEFS}
        own[spec.rule_id] = inhibited_by
        problems = check_inhibition(own, _PER_ORDER)
        unknown = [i for i in inhibited_by if i not in RULE_DEFS]
        if unknown:
            problems.insert(0, f"inhibited_by names an unknown rule {unknown[0]!r}")
        if problems:
            raise RuleFileError(name, _line_of(root, ("inhibited_by",)), problems[0])
    try:
        spec.summary.format_map(_Probe())
    except (ValueError, IndexError) as exc:
        raise RuleFileError(
            name, _line_of(root, ("summary",)), f"bad summary template: {exc}"
        ) from None
    hours = None
    if spec.working_hours is not None:
        hours = _hours_ref(
            spec.working_hours, spec.rule_id, calendar, name, root, ("working_hours",)
        )
    overrides = _overrides(spec, rule_def, params, calendar, name, root)
    remediation = _remediation(spec, root, name)
    return Rule(
        rule_id=spec.rule_id,
        title=spec.title,
        category=spec.category,
        severity=spec.severity,
        owner=spec.owner,
        resolvable=rule_def.resolvable,
        enabled=spec.enabled,
        escalate_after=escalate,
        summary=spec.summary,
        actions=tuple(spec.actions),
        params=params,
        source=name,
        tuning=Tuning(
            overrides=overrides,
            working_hours=hours,
            periods=_relevant_periods(spec.rule_id, overrides, calendar),
        ),
        hours=hours,
        ack_timeout=ack_timeout,
        inhibited_by=inhibited_by,
        remediation=remediation,
    )


def _relevant_periods(
    rule_id: str, overrides: tuple[Override, ...], calendar: Calendar
) -> tuple[Period, ...]:
    """The periods that scale this rule or that one of its overrides matches on."""
    named = {v for o in overrides for f, values in o.when if f == PERIOD for v in values}
    return tuple(p for p in calendar.periods if p.factor(rule_id) is not None or p.name in named)


def match_fields(rule_id: str) -> tuple[str, ...]:
    """The fields an override of this rule may match on (besides ``period``).

    Only what the rule's state keeps: an order's facts for the rules judged on the order, the
    sku and warehouse for ``inventory.sync_drift``. Window, rate and runtime rules span many
    orders (or none), so they match on the period alone.
    """
    if rule_id == "inventory.sync_drift":
        return ("sku", "warehouse_id")
    if rule_id in _NO_FACTS:
        return ()
    return ORDER_FACTS


_NO_FACTS = frozenset(
    {
        "payment.success_rate_drop",
        "order.creation_failure_spike",
        "order.creation_failed",
        "fraud.address_cluster",
        "fraud.new_account_burst",
        "fraud.shared_phone",
        "system.source_silent",
    }
)


def _hours_ref(
    name: str,
    rule_id: str,
    calendar: Calendar,
    path: str,
    root: yaml.Node | None,
    loc: tuple[int | str, ...],
) -> WorkingHours:
    if rule_id not in TIMEOUTS:
        raise RuleFileError(
            path,
            _line_of(root, loc),
            f"working_hours applies to the order timeouts only ({', '.join(TIMEOUTS)})",
        )
    hours = calendar.working_hours.get(name)
    if hours is None:
        known = ", ".join(sorted(calendar.working_hours)) or "none defined"
        raise RuleFileError(
            path,
            _line_of(root, loc),
            f"unknown working_hours {name!r} (calendars.yaml defines: {known})",
        )
    return hours


def _label(entry: OverrideFile) -> str:
    if entry.name:
        return entry.name
    parts = []
    for field, value in sorted(entry.when.items()):
        values = value if isinstance(value, list) else [value]
        parts.append(f"{field}={'|'.join(values)}")
    return ", ".join(parts)


def _overrides(
    spec: RuleFile,
    rule_def: RuleDef,
    base: Any,
    calendar: Calendar,
    path: str,
    root: yaml.Node | None,
) -> tuple[Override, ...]:
    """Validate the ``overrides:`` of one file; errors name the entry's line."""
    allowed = (*match_fields(spec.rule_id), PERIOD)
    out: list[Override] = []
    for i, entry in enumerate(spec.overrides):
        at: tuple[str | int, ...] = ("overrides", i)
        line = _line_of(root, at)
        when: list[tuple[str, frozenset[str]]] = []
        for field, value in entry.when.items():
            where = _line_of(root, (*at, "when", field))
            if field not in allowed:
                raise RuleFileError(
                    path,
                    where,
                    f"overrides[{i}].when: unknown field {field!r} for {spec.rule_id} "
                    f"(it can match: {', '.join(allowed)})",
                )
            values = frozenset(value if isinstance(value, list) else [value])
            if not values:
                raise RuleFileError(
                    path, where, f"overrides[{i}].when.{field}: unreachable, no value given"
                )
            if field == PERIOD:
                unknown = sorted(v for v in values if v not in calendar.period_names)
                if unknown:
                    known = ", ".join(sorted(calendar.period_names)) or "none defined"
                    raise RuleFileError(
                        path,
                        where,
                        f"overrides[{i}].when.period: unknown period {unknown[0]!r} "
                        f"(calendars.yaml defines: {known})",
                    )
            if field == "country":
                bad = sorted(v for v in values if not (len(v) == 2 and v.isupper()))
                if bad:
                    raise RuleFileError(
                        path,
                        where,
                        f"overrides[{i}].when.country: unreachable, {bad[0]!r} never matches "
                        "(events carry ISO 3166 alpha-2 codes in capitals, e.g. CN)",
                    )
            when.append((field, values))
        params = None
        if entry.params:
            try:
                params = rule_def.params.model_validate({**spec.params, **entry.params})
            except ValidationError as exc:
                raise _first_error(exc, root, path, (*at, "params")) from None
        escalate: Any = KEEP
        if entry.escalate_after is not None:
            if not rule_def.resolvable and entry.escalate_after != "never":
                raise RuleFileError(
                    path,
                    _line_of(root, (*at, "escalate_after")),
                    f"{spec.rule_id} is a notification (no resolving condition) and never "
                    "escalates",
                )
            escalate = None if entry.escalate_after == "never" else entry.escalate_after
        elif entry.severity is not None and spec.escalate_after is None and rule_def.resolvable:
            # the base took its severity's default: so does the override's severity
            escalate = DEFAULT_ESCALATE_AFTER[entry.severity]
        hours = None
        if entry.working_hours is not None:
            hours = _hours_ref(
                entry.working_hours, spec.rule_id, calendar, path, root, (*at, "working_hours")
            )
        if (
            params is None
            and entry.severity is None
            and entry.escalate_after is None
            and entry.owner is None
            and escalate == KEEP
            and hours is None
        ):
            raise RuleFileError(
                path,
                line,
                f"overrides[{i}] changes nothing (give params, severity, owner, escalate_after "
                "or working_hours)",
            )
        override = Override(
            when=tuple(sorted(when)),
            label=_label(entry),
            line=line,
            params=params,
            severity=entry.severity,
            owner=entry.owner,
            escalate_after=escalate,
            working_hours=hours,
        )
        for other in out:
            if other.when == override.when:
                raise RuleFileError(
                    path,
                    line,
                    f"overrides[{i}] is unreachable: the override at line {other.line} has the "
                    "same condition and comes first",
                )
        out.append(override)
    _check_ambiguous(out, path)
    return tuple(out)


def _combined(a: Override, b: Override) -> dict[str, frozenset[str]] | None:
    """The condition under which both match, or None when they never match together."""
    both = dict(a.when)
    for field, values in b.when:
        if field in both:
            common = both[field] & values
            if not common:
                return None
            both[field] = common
        else:
            both[field] = values
    return both


def _check_ambiguous(overrides: list[Override], path: str) -> None:
    """Two equally specific overrides that can match one subject need a more specific one that
    covers every such subject; otherwise which applies would depend on the order in the file."""
    for i, a in enumerate(overrides):
        for b in overrides[i + 1 :]:
            if a.specificity != b.specificity:
                continue
            both = _combined(a, b)
            if both is None:
                continue
            covered = any(
                d.specificity > a.specificity
                and all(f in both and both[f] <= values for f, values in d.when)
                for d in overrides
            )
            if not covered:
                example = ", ".join(f"{f}={sorted(v)[0]}" for f, v in sorted(both.items()))
                raise RuleFileError(
                    path,
                    b.line,
                    f"ambiguous override: this and the override at line {a.line} both match "
                    f"({example}) with the same specificity; add an override for both "
                    "conditions or make them exclusive",
                )


def _remediation(spec: RuleFile, root: yaml.Node | None, name: str) -> tuple[Any, ...]:
    """The rule's action policies (section 10), each checked against what the rule can serve."""
    if spec.remediation is None:
        return defaults(spec.rule_id)
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(spec.remediation):
        found = problem(spec.rule_id, entry)
        if found is not None:
            where, message = found
            raise RuleFileError(name, _line_of(root, ("remediation", i, where)), message)
        if entry.type in seen:
            raise RuleFileError(
                name,
                _line_of(root, ("remediation", i, "type")),
                f"{entry.type} is listed twice (one action of a type per exception and target)",
            )
        seen.add(entry.type)
        out.append(build(spec.rule_id, entry))
    return tuple(out)


_PER_ORDER = frozenset(r for r in RULE_DEFS if r not in NOT_PER_ORDER)


def _inhibition_line(path: str) -> int | None:
    """The line of ``inhibited_by`` in a rule file (None where the rule takes the default)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = _line_of(root, ("inhibited_by",))
    return line if line != _line_of(root, ()) else None


class _Probe(dict[str, str]):
    """Accepts any placeholder so a template's syntax can be checked without its values."""

    def __missing__(self, key: str) -> str:
        return ""


def load_catalog(directory: Path | str | None = None) -> Catalog:
    """Every rule file of a directory; each rule of the catalog must have exactly one file."""
    folder = Path(directory) if directory is not None else default_rules_dir()
    if not folder.is_dir():
        raise RuleFileError(str(folder), None, "rules directory not found")
    calendar = load_calendar(folder / CALENDAR_FILE)
    rules: dict[str, Rule] = {}
    errors: list[RuleFileError] = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == CALENDAR_FILE:
            continue
        try:
            rule = load_rule_file(path, calendar)
        except RuleFileError as exc:
            errors.append(exc)  # go on: every broken file is reported in one go
            continue
        rules[rule.rule_id] = rule
    if errors:
        raise errors[0] if len(errors) == 1 else RuleSetError(errors)
    missing = [r for r in RULE_DEFS if r not in rules]
    if missing:
        raise RuleFileError(str(folder), None, f"no rule file for: {', '.join(missing)}")
    # across files: a cycle of inhibitions would leave each rule waiting for the other
    problems = check_inhibition({r.rule_id: r.inhibited_by for r in rules.values()}, _PER_ORDER)
    if problems:
        cycle = problems[0].rpartition(": ")[2].split(" -> ")
        first = rules.get(cycle[0])
        source = first.source if first is not None else str(folder)
        raise RuleFileError(source, _inhibition_line(source), problems[0])
    return Catalog(
        rules=rules, directory=str(folder), version=rules_version(folder), calendar=calendar
    )


def rules_version(folder: Path) -> str:
    """A short hash of the directory's YAML files (names and bytes): the rule set's version.

    Two workers with the same files report the same version, whatever their paths or mtimes.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        digest.update(path.name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


# --- calendars.yaml ------------------------------------------------------------------------------

CALENDAR_FILE = "calendars.yaml"
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Calendar:
    """The named periods and working-hour schedules rule files may refer to."""

    periods: tuple[Period, ...] = ()
    working_hours: dict[str, WorkingHours] = dc_field(default_factory=dict)

    @property
    def period_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.periods)


class PeriodFile(BaseModel):
    """A promotion or holiday: local dates (``end`` inclusive) or local times (``end``
    exclusive) in a time zone, and how much slower the listed timeouts count inside it."""

    model_config = ConfigDict(extra="forbid")

    start: date | datetime
    end: date | datetime
    time_zone: str
    scale: dict[str, float] = Field(default_factory=dict)


class HoursFile(BaseModel):
    """A weekly working-hours schedule, with holidays and extra working days (调休)."""

    model_config = ConfigDict(extra="forbid")

    time_zone: str
    days: list[str] = Field(min_length=1)
    hours: list[str] = Field(min_length=1)
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)


class CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    periods: dict[str, PeriodFile] = Field(default_factory=dict)
    working_hours: dict[str, HoursFile] = Field(default_factory=dict)


def _zone(name: str, path: str, line: int | None) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleFileError(
            path, line, f"unknown time zone {name!r} (e.g. Asia/Shanghai)"
        ) from None
    return name


def _instant(value: date | datetime, zone: str, end: bool) -> float:
    from zoneinfo import ZoneInfo

    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(zone))
        return value.timestamp()
    return local_midnight(value + timedelta(days=1) if end else value, zone)


def load_calendar(path: Path) -> Calendar:
    """``calendars.yaml`` of a rules directory (optional: none means no periods, no hours)."""
    name = str(path)
    if not path.exists():
        return Calendar()
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) or {}
    except OSError as exc:
        raise RuleFileError(name, None, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RuleFileError(name, line, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        spec = CalendarFile.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, root, name) from None
    periods = []
    for pname, p in spec.periods.items():
        zone = _zone(p.time_zone, name, _line_of(root, ("periods", pname, "time_zone")))
        start, end = _instant(p.start, zone, False), _instant(p.end, zone, True)
        if end <= start:
            raise RuleFileError(
                name, _line_of(root, ("periods", pname, "end")), f"period {pname}: end before start"
            )
        for rule_id, factor in p.scale.items():
            where = _line_of(root, ("periods", pname, "scale", rule_id))
            if rule_id not in TIMEOUTS:
                raise RuleFileError(
                    name,
                    where,
                    f"period {pname}: scale applies to the order timeouts only, not {rule_id!r}",
                )
            if not factor > 0:
                raise RuleFileError(name, where, f"period {pname}: a scale must be above 0")
        periods.append(Period(pname, start, end, tuple(sorted(p.scale.items()))))
    hours: dict[str, WorkingHours] = {}
    for hname, h in spec.working_hours.items():
        at = ("working_hours", hname)
        zone = _zone(h.time_zone, name, _line_of(root, (*at, "time_zone")))
        days = set()
        for i, day in enumerate(h.days):
            if day.lower()[:3] not in WEEKDAYS:
                raise RuleFileError(
                    name,
                    _line_of(root, (*at, "days", i)),
                    f"working_hours {hname}: unknown day {day!r} (mon..sun)",
                )
            days.add(WEEKDAYS.index(day.lower()[:3]))
        ranges = []
        for i, text in enumerate(h.hours):
            match = _HOURS.match(text.strip())
            a = b = -1
            if match:
                h1, m1, h2, m2 = (int(g) for g in match.groups())
                a, b = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
            if not match or not 0 <= a < b <= 86400 or m1 > 59 or m2 > 59:
                raise RuleFileError(
                    name,
                    _line_of(root, (*at, "hours", i)),
                    f"working_hours {hname}: hours must look like 09:00-18:00 within one day",
                )
            ranges.append((a, b))
        hours[hname] = WorkingHours(
            hname,
            zone,
            frozenset(days),
            tuple(sorted(ranges)),
            frozenset(h.holidays),
            frozenset(h.workdays),
        )
    return Calendar(periods=tuple(periods), working_hours=hours)
