"""One error hierarchy, so callers can catch orderwatch's own failures without catching bugs."""

from __future__ import annotations

import re


class OrderwatchError(Exception):
    """Base class of every error orderwatch raises on purpose."""


class RuleFileError(OrderwatchError):
    """A rule file is missing, unreadable or invalid; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class RuleSetError(RuleFileError):
    """Several rule files are invalid: each one's first mistake, in file order.

    An operator fixing a rules directory should see every broken file in one run of ``rules
    check``, not one per run. It is a ``RuleFileError`` (the first problem's file and line), so
    callers that report one error keep working; ``errors`` holds them all.
    """

    def __init__(self, errors: list[RuleFileError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.line, first.message)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)


class EventValidationError(OrderwatchError):
    """An input message is not valid JSON or not a valid event of the contract.

    ``reason`` is a short machine-friendly code (``invalid_json``, ``invalid_utf8``, ``schema``,
    ``too_large``) and ``detail`` a human sentence; both end up in dead-letter headers and on
    stderr of ``orderwatch replay``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class BrokerError(OrderwatchError):
    """The embedded broker could not be started or did not become ready in time."""


#: How much of an unexpected exception's message a dead letter or a log line keeps.
ERROR_TEXT_LIMIT = 200
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_DIGITS = re.compile(r"\d{5,}")
#: Quoted words kept as they are: Python's own vocabulary (``unhashable type: 'list'``) and
#: snake_case names (fields, rules), never what a shop's customers type
_KEEP = re.compile(
    r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Za-z]+Error|"
    + "|".join(
        (
            "list",
            "dict",
            "str",
            "int",
            "float",
            "bool",
            "bytes",
            "tuple",
            "set",
            "NoneType",
            "object",
        )
    )
)


def error_text(exc: BaseException) -> str:
    """An unexpected exception's message, safe for a dead-letter header or a log line.

    Any exception's message may quote the input it choked on (``KeyError('13812345678')``,
    a name, a street): quoted text is replaced by its length unless it is a Python type or a
    snake_case name, runs of five or more digits keep their last four (as phones do everywhere
    else), and the whole is cut to ``ERROR_TEXT_LIMIT`` characters.
    """

    def quoted(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1]
        return match.group(0) if _KEEP.fullmatch(inner) else f"<{len(inner)} chars>"

    def digits(match: re.Match[str]) -> str:
        return "*" * (len(match.group(0)) - 4) + match.group(0)[-4:]

    text = _QUOTED.sub(quoted, str(exc)[: 4 * ERROR_TEXT_LIMIT])
    return _DIGITS.sub(digits, text)[:ERROR_TEXT_LIMIT]
