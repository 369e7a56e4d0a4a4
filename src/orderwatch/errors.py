"""One error hierarchy, so callers can catch orderwatch's own failures without catching bugs."""

from __future__ import annotations


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
