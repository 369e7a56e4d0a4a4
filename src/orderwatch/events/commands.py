"""Operator commands (CONTRACT section 8): people acknowledge, assign, snooze, comment, resolve.

A command is an input event of the ``command.*`` stream, in the envelope of section 1 plus the
``exception_id`` it is about. Only what is needed to *identify* the command is checked when it is
decoded: a broken envelope, a missing ``exception_id`` or an unknown ``command.*`` type goes to the
dead-letter topic like any bad input. Everything else (a missing ``assignee``, both ``until`` and
``for``, a note too long, an unknown ``resolution``...) must still decode, because the sender is
owed a reply that says ``invalid_command``: those fields are kept as sent and judged by
``problem()``, which the engine calls in the contract's check order, after it has found the
exception (``unknown_exception`` comes first).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from orderwatch.events.exception import Status
from orderwatch.events.inbound import _RFC3339, EventId, NonEmpty, _Event

#: Every command type of section 8, in its table's order.
COMMAND_TYPES: tuple[str, ...] = (
    "command.acknowledge",
    "command.unacknowledge",
    "command.assign",
    "command.snooze",
    "command.comment",
    "command.resolve",
    "command.reopen",
    "command.approve",
    "command.reject",
)
STATUSES: frozenset[str] = frozenset({"open", "acknowledged", "snoozed", "inhibited", "resolved"})
RESOLUTIONS: frozenset[str] = frozenset({"fixed", "false_positive", "duplicate", "wont_fix"})
Reason: TypeAlias = Literal["unknown_exception", "stale", "invalid_transition", "invalid_command"]

#: The longest note, and the longest actor or assignee name we keep.
MAX_NOTE = 2000
MAX_NAME = 200
_FOR = re.compile(r"^([0-9]+[dhms])+$", re.ASCII)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _described(description: str, **schema: Any) -> WithJsonSchema:
    """The JSON Schema of a field kept as sent: the type the contract wants, documented.

    Decoding must not refuse a wrongly typed value there: it gets an ``invalid_command`` reply.
    """
    return WithJsonSchema({"type": "string", **schema, "description": description})


_RULE_TEXT = "rule_id of the exception (copied from it: it routes the command)"
_SUBJECT_TEXT = "subject of the exception (copied from it: it routes the command)"
_ACTOR_TEXT = "who sends it: a user or service name, never customer data"
_EXPECTED_TEXT = "the status the sender last saw; if the exception's differs the reply is `stale`"
_NOTE_TEXT = "free text, 1..2000 characters; stored with phone numbers masked"
RuleRef = Annotated[Any, Field(default=None), _described(_RULE_TEXT)]
SubjectRef = Annotated[Any, Field(default=None), _described(_SUBJECT_TEXT)]
Actor = Annotated[Any, Field(default=None), _described(_ACTOR_TEXT, minLength=1)]
Expected = Annotated[Any, Field(default=None), _described(_EXPECTED_TEXT, enum=sorted(STATUSES))]
Note = Annotated[Any, Field(default=None), _described(_NOTE_TEXT, minLength=1, maxLength=MAX_NOTE)]


def _name_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{what} is required (a non-empty string)"
    if len(value) > MAX_NAME:
        return f"{what} is longer than {MAX_NAME} characters"
    return None


def _note_problem(value: object, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        return "note must be a non-empty string"
    if len(value) > MAX_NOTE:
        return f"note is longer than {MAX_NOTE} characters"
    return None


def parse_for(text: str) -> int:
    """``90m``, ``1d2h`` to seconds (the contract's ``for``: digits and d/h/m/s, nothing else)."""
    return sum(int(n) * _UNIT[u] for n, u in re.findall(r"([0-9]+)([dhms])", text))


class _Command(_Event):
    """The envelope of every command; ``problem`` says what makes it ``invalid_command``."""

    exception_id: EventId = Field(description="the exception this command is about")
    rule_id: RuleRef
    subject: SubjectRef
    actor: Actor
    expected_status: Expected

    #: statuses the command is accepted in (section 8's table); None: every status
    accepted_in: ClassVar[frozenset[str] | None] = None

    def problem(self, moment: float) -> str | None:
        """Why this command is ``invalid_command`` at clock ``moment``, or None if it is not."""
        found = _name_problem(self.actor, "actor")
        if found is not None:
            return found
        if self.expected_status is not None and self.expected_status not in STATUSES:
            return f"expected_status must be one of {', '.join(sorted(STATUSES))}"
        return self._own_problem(moment)

    def _own_problem(self, moment: float) -> str | None:
        return None


class CommandAcknowledge(_Command):
    """Someone is on it: escalation stops; a repeat restarts the acknowledgement timeout."""

    type: Literal["command.acknowledge"]
    accepted_in: ClassVar[frozenset[str] | None] = frozenset({"open", "acknowledged"})


class CommandUnacknowledge(_Command):
    """Nobody is on it after all: open again, escalation resumes."""

    type: Literal["command.unacknowledge"]
    accepted_in: ClassVar[frozenset[str] | None] = frozenset({"acknowledged", "snoozed"})


class CommandAssign(_Command):
    """Names who handles it (does not acknowledge); on a snoozed exception it ends the snooze."""

    type: Literal["command.assign"]
    assignee: Annotated[
        Any,
        Field(default=None, description="who handles it: a user or team name"),
        WithJsonSchema({"type": "string", "minLength": 1}),
    ]
    accepted_in: ClassVar[frozenset[str] | None] = frozenset(
        {"open", "acknowledged", "snoozed", "inhibited"}
    )

    def _own_problem(self, moment: float) -> str | None:
        return _name_problem(self.assignee, "assignee")


class CommandSnooze(_Command):
    """Quiet until a time: no escalation and no acknowledgement timeout until then."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["command.snooze"]
    until: Annotated[
        Any,
        Field(default=None, description="RFC 3339, later than the moment it is applied"),
        WithJsonSchema({"type": "string", "format": "date-time"}),
    ]
    for_: Annotated[
        Any,
        Field(default=None, alias="for", description="a duration such as 90m or 1d2h"),
        WithJsonSchema({"type": "string", "pattern": _FOR.pattern}),
    ]
    accepted_in: ClassVar[frozenset[str] | None] = frozenset({"acknowledged", "snoozed"})

    def _own_problem(self, moment: float) -> str | None:
        if (self.until is None) == (self.for_ is None):
            return "exactly one of until and for is required"
        if self.until is not None:
            end = self.snooze_end(moment)
            if end is None:
                return "until must be an RFC 3339 timestamp with an offset"
            if end <= moment:
                return "until must be later than the moment the command is applied"
        elif not isinstance(self.for_, str) or _FOR.fullmatch(self.for_) is None:
            return "for must be a duration such as 90m or 1d2h"
        elif parse_for(self.for_) <= 0:
            return "for must be longer than zero"
        return None

    def snooze_end(self, moment: float) -> float | None:
        """When the snooze ends (epoch seconds), or None if the fields do not say."""
        if isinstance(self.until, str):
            if _RFC3339.fullmatch(self.until) is None:
                return None
            try:
                return datetime.fromisoformat(self.until.replace("z", "Z")).timestamp()
            except ValueError:
                return None
        if isinstance(self.for_, str) and _FOR.fullmatch(self.for_):
            return moment + parse_for(self.for_)
        return None


class CommandComment(_Command):
    """A note on the exception, in every status (also after it is resolved)."""

    type: Literal["command.comment"]
    note: Note

    def _own_problem(self, moment: float) -> str | None:
        return _note_problem(self.note, required=True)


class CommandResolve(_Command):
    """Closed by a person: fixed by hand, a false positive, a duplicate, or won't fix."""

    type: Literal["command.resolve"]
    resolution: Annotated[
        Any,
        Field(default=None, description="why it is closed"),
        WithJsonSchema({"type": "string", "enum": sorted(RESOLUTIONS)}),
    ]
    note: Note
    accepted_in: ClassVar[frozenset[str] | None] = frozenset(
        {"open", "acknowledged", "snoozed", "inhibited"}
    )

    def _own_problem(self, moment: float) -> str | None:
        if self.resolution not in RESOLUTIONS:
            return f"resolution must be one of {', '.join(sorted(RESOLUTIONS))}"
        return _note_problem(self.note, required=False)


class CommandReopen(_Command):
    """Open again, unacknowledged (the latest occurrence of its rule and subject only)."""

    type: Literal["command.reopen"]
    note: Note
    accepted_in: ClassVar[frozenset[str] | None] = frozenset({"resolved"})

    def _own_problem(self, moment: float) -> str | None:
        return _note_problem(self.note, required=False)


class _Decision(_Command):
    action_id: Annotated[
        Any,
        Field(default=None, description="the action awaiting approval (section 10)"),
        WithJsonSchema({"type": "string", "minLength": 1}),
    ]

    def _own_problem(self, moment: float) -> str | None:
        if not isinstance(self.action_id, str) or not self.action_id:
            return "action_id is required (a non-empty string)"
        return None


class CommandApprove(_Decision):
    """Approves a remediation action awaiting approval (section 10)."""

    type: Literal["command.approve"]


class CommandReject(_Decision):
    """Rejects a remediation action awaiting approval (section 10)."""

    type: Literal["command.reject"]


Command: TypeAlias = (
    CommandAcknowledge
    | CommandUnacknowledge
    | CommandAssign
    | CommandSnooze
    | CommandComment
    | CommandResolve
    | CommandReopen
    | CommandApprove
    | CommandReject
)
#: The command classes, for exact type tests (as ``Engine.route`` does for events).
COMMAND_CLASSES: frozenset[type] = frozenset(
    (
        CommandAcknowledge,
        CommandUnacknowledge,
        CommandAssign,
        CommandSnooze,
        CommandComment,
        CommandResolve,
        CommandReopen,
        CommandApprove,
        CommandReject,
    )
)


class CommandReply(BaseModel):
    """The one reply each command gets on ``order-exception-command-results``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: NonEmpty = Field(description="the command's event_id")
    exception_id: str
    accepted: bool
    reason: Reason | None = Field(None, description="why it was rejected; null when accepted")
    status: Status | None = Field(
        None, description="the exception's status after it; null for unknown_exception"
    )


__all__ = [
    "COMMAND_CLASSES",
    "COMMAND_TYPES",
    "RESOLUTIONS",
    "STATUSES",
    "Command",
    "CommandAcknowledge",
    "CommandApprove",
    "CommandAssign",
    "CommandComment",
    "CommandReject",
    "CommandReopen",
    "CommandReply",
    "CommandResolve",
    "CommandSnooze",
    "CommandUnacknowledge",
    "Reason",
]
