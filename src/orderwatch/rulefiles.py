"""Load and validate ``rules/*.yaml``: one file per rule, errors that name the file and the line.

An operator edits these files to tune thresholds, owners and playbooks; a typo must stop the
deploy with a message that points at the line (``orderwatch rules check``), not surface at 3 a.m.
as a rule that silently never fires.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    parse_duration,
)
from orderwatch.engine.inhibition import check as check_inhibition
from orderwatch.engine.policy import PolicyFile, build, defaults, problem
from orderwatch.errors import RuleFileError
from orderwatch.events.exception import Category, Owner, Severity


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
    exc: ValidationError, root: yaml.Node | None, path: str, prefix: tuple[str, ...] = ()
) -> RuleFileError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = prefix + tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "<file>"
    return RuleFileError(path, _line_of(root, loc), f"{field}: {err['msg']}")


def load_rule_file(path: Path) -> Rule:
    """Parse and validate one file against the schema and the rule's own parameter model."""
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
        ack_timeout=ack_timeout,
        inhibited_by=inhibited_by,
        remediation=remediation,
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
    rules: dict[str, Rule] = {}
    for path in sorted(folder.glob("*.yaml")):
        rule = load_rule_file(path)
        rules[rule.rule_id] = rule
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
    return Catalog(rules=rules, directory=str(folder))
