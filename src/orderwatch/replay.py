"""Offline replay (CONTRACT section 7): a JSONL file through the same engine as the live worker.

The clock is the largest ``occurred_at`` read so far and moves to ``--until`` at the end, so a
replay of yesterday's topics produces yesterday's exceptions with the same ids the worker gave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, TextIO

from orderwatch.engine import Engine, ReplayClock, atomic
from orderwatch.errors import EventValidationError, error_text
from orderwatch.events.actions import encode_entry
from orderwatch.events.codec import decode_event, encode_action, encode_exception, encode_reply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import BlacklistAdded, InboundEvent
from orderwatch.events.kpis import encode_kpi

#: Reason printed for a line whose processing raised unexpectedly (the worker's dead-letter
#: reason for the same case)
INTERNAL_ERROR = "internal_error"


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    invalid: int = 0
    #: lines whose engine step raised (a bug): reported as ``internal_error`` and skipped
    failed: int = 0
    exceptions: int = 0
    replies: int = 0
    actions: int = 0
    kpis: int = 0
    blacklist: int = 0


def _encode(exceptions: list[ExceptionEvent]) -> list[bytes]:
    return [encode_exception(e) + b"\n" for e in exceptions]


def replay(
    lines: Iterable[bytes],
    engine: Engine,
    out: BinaryIO,
    err: TextIO,
    until: datetime | None = None,
    replies: BinaryIO | None = None,
    actions: BinaryIO | None = None,
    kpis: BinaryIO | None = None,
    blacklist: BinaryIO | None = None,
) -> ReplayStats:
    """Feed every line to the engine in file order; bad lines go to ``err`` and are skipped.

    A line whose engine step raises is reported as ``internal_error`` (with the exception's
    class and masked message) and skipped too, its state changes undone (``engine.atomic``):
    what the live worker does by default, so both still give the same exceptions.

    The file may mix input events and operators' commands (CONTRACT section 7): each command's
    reply goes to ``replies`` when given (``--replies``), in the order produced; v2 action
    events (section 10) go to ``actions`` (``--actions``), KPI records (section 11) to ``kpis``.
    The ``blacklist.added`` an approved ``blacklist.suggest`` makes goes to ``blacklist``
    (``--blacklist``) and is read back at once, as the worker reads its blacklist topic.
    """
    stats = ReplayStats()
    clock = ReplayClock()
    write = out.write
    for number, line in enumerate(lines, 1):
        stats.lines = number
        body = line.rstrip(b"\r\n")
        if not body.strip():
            err.write(f"line {number}: invalid_json: empty line\n")
            stats.invalid += 1
            continue
        try:
            event = decode_event(body)
        except EventValidationError as exc:
            err.write(f"line {number}: {exc.reason}: {exc.detail}\n")
            stats.invalid += 1
            continue
        stats.events += 1
        pending: list[InboundEvent] = [event]
        while pending:  # the event, then any blacklist entry it made (read back at once)
            event = pending.pop(0)
            try:
                written = atomic.step(engine, event, clock.observe(event.occurred_ts), then=_encode)
            except atomic.StepFailed as failed:
                written = _encode(failed.due)
                error = failed.error
                err.write(f"line {number}: {INTERNAL_ERROR}: {type(error).__name__}: ")
                err.write(f"{error_text(error)}\n")
                stats.failed += 1
            for body in written:
                write(body)
            stats.exceptions += len(written)
            if engine.replies:
                for reply in engine.take_replies():
                    if replies is not None:
                        replies.write(encode_reply(reply) + b"\n")
                    stats.replies += 1
            if engine.action_events:
                _write_actions(engine, actions, stats)
            if engine.kpi_records:
                _write_kpis(engine, kpis, stats)
            if engine.blacklist_records:
                pending += _write_blacklist(engine, blacklist, stats)
    for exc_event in engine.sweep(clock.finish(until)):
        write(encode_exception(exc_event) + b"\n")
        stats.exceptions += 1
    _write_actions(engine, actions, stats)
    _write_kpis(engine, kpis, stats)
    _write_blacklist(engine, blacklist, stats)
    return stats


def _write_blacklist(
    engine: Engine, out: BinaryIO | None, stats: ReplayStats
) -> list[BlacklistAdded]:
    entries = engine.take_blacklist()
    for entry in entries:
        if out is not None:
            out.write(encode_entry(entry) + b"\n")
        stats.blacklist += 1
    return entries


def _write_kpis(engine: Engine, out: BinaryIO | None, stats: ReplayStats) -> None:
    for record in engine.take_kpis():
        if out is not None:
            out.write(encode_kpi(record) + b"\n")
        stats.kpis += 1


def _write_actions(engine: Engine, out: BinaryIO | None, stats: ReplayStats) -> None:
    for action in engine.take_actions():
        if out is not None:
            out.write(encode_action(action) + b"\n")
        stats.actions += 1
