"""Structured logs (structlog): JSON for machines, console lines for people, no personal data.

Every library's records (Faust, aiokafka, ours) go through one handler, so a log shipper sees one
format. A last processor masks anything shaped like a phone number in every field: our own log
calls never carry personal data, but a library's error message might quote a message body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"(?<![\d.])(?:\+\d{1,3}[\s-]?)?1[3-9]\d(?:[\s-]?\d){8}(?!\d)|\+\d{8,15}\b")


def _mask(match: re.Match[str]) -> str:
    digits = [c for c in match.group(0) if c.isdigit()]
    return "*" * (len(digits) - 4) + "".join(digits[-4:])


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask phone-shaped text in every string field of a log record."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = _PHONE.sub(_mask, value)
    return event_dict


def configure(fmt: str = "json", level: str = "INFO") -> logging.Handler:
    """Route stdlib logging and structlog through one redacting handler on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    return handler
