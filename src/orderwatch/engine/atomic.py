"""One event applied all or nothing: the engine's state after a failed step is the state before.

An engine step that raises (a bug, or an input nobody foresaw) may have changed part of a shard
by then. The worker and replay then skip that event (dead letter, stderr) and go on with the
next, so a half-applied shard would make every later verdict on it wrong, and differently in the
worker (which persists it) than in a replay that takes another path. ``step`` here therefore:

1. fires the deadlines that were due before the event on their own (exactly what
   ``Engine.step`` does first): their exceptions are good whatever the event does next;
2. copies the shards the event routes to (``_copy``; Kafka Streams restores a failed task from
   its changelog instead, but a copy of a handful of shards per event is far cheaper than a
   rebuilt partition), and the blacklist if the event is one of its changes; the KPI shard,
   too big to copy at every step, is kept and takes back the step's writes (``_Kept``), and
   so is the rate shard, saved before every payment event (``_RateKept``);
3. runs ``Engine.step``; if it raises, puts the copies back (deleting shards the event created),
   drops the exceptions the failed step produced, and raises ``StepFailed`` carrying the
   exceptions of step 1, which the caller publishes as usual.

What step 3 can touch is exactly the event's shards, and in replay the shards its derived
records reach at once (an on-time shipment to ``g:kpis``, an intent to ``g:actions``...: saved
when reached, ``_watch_sends``): deadlines it schedules and fires within the step belong to
the shards it applied to. The heap keeps entries of the failed step; they
are validated lazily against each shard's own deadlines (``Engine._sweep``), so a stale one is
skipped and a restored shard re-enters its deadlines (duplicates fire once). Deadlines are
made atomic one by one by ``guard``.

Cost: the copy is the price of every step (``make bench-engine`` prints both rates); the
``fail`` policy of the worker, which stops instead of skipping, does not copy.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import attrgetter
from typing import Any, Self, TypeVar

import orjson
from pydantic import BaseModel

from orderwatch.engine import actions
from orderwatch.engine.core import BROADCAST, PARK, Engine
from orderwatch.engine.state import (
    NO_TIMERS,
    NOTHING_OPEN,
    ActionShard,
    KpiShard,
    Open,
    RateShard,
    Shard,
    shard_from_dict,
)
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import EVENT_ADAPTER, InboundEvent

#: ``guard``'s report of a deadline whose firing raised: (deadline name, the parked event it
#: would have applied or None, the error)
DeadlineFailed = Callable[[str, "InboundEvent | None", BaseException], None]


def guard(engine: Engine, failed: DeadlineFailed) -> None:
    """Make each deadline ``engine`` fires atomic too, and contain its failure.

    A deadline that raises (a rule's timeout, an escalation, or a parked event applied when
    the clock reaches it: in event-time mode most events the worker reads ahead of its clock
    are applied this way, in a sweep or in a later event's step) leaves its shard as it was
    before, minus that deadline: a parked event is taken out of the shard and handed to
    ``failed`` (the worker dead-letters it), a timeout is dropped (``failed`` logs it). The
    sweep goes on with the next deadline. Without the guard the error would stop the sweep,
    or fail the unrelated event whose step fired it.
    """
    fire = engine._fire

    def guarded(shard: Shard, name: str, due: float, now: float) -> None:
        saved = _save_shard(shard)
        was_dirty = shard.key in engine.dirty
        out = engine.life.out
        produced = len(out)
        marks = _marks(engine)
        reached: list[tuple[str, Any, bool]] = []  # other shards its sends reach (replay)
        _Journal.depth += 1
        _OPEN.append(reached)
        try:
            fire(shard, name, due, now)
        except Exception as exc:
            del out[produced:]
            _truncate(engine, marks)
            _restore_shards(engine, reached)
            restored = engine.shards[shard.key] = saved.build()
            for deadline, at in restored.deadline_dict().items():
                heapq.heappush(engine._heap, (at, next(engine._seq), shard.key, deadline))
            event = None
            if name.startswith(PARK) and restored.parked:
                event = restored.parked.pop(name[len(PARK) :], None)
                restored.parked = restored.parked or None
                if isinstance(event, dict):
                    event = EVENT_ADAPTER.validate_python(event)
            if not was_dirty:
                engine.dirty.discard(shard.key)
            engine.unschedule(restored, name)  # consumed: it must not fire again
            if restored.evict_at is None and not (restored.timers or restored.parked):
                # nothing was ever applied to it (an eviction is due from the first event on):
                # a shard made only to hold the event that failed, as absent as before it
                del engine.shards[shard.key]
            failed(name, event, exc)
        finally:
            _Journal.depth -= 1
            _OPEN.pop()

    engine._fire = guarded  # type: ignore[method-assign]


class StepFailed(Exception):
    """An engine step raised; ``due`` holds the exceptions of the deadlines fired before it
    (state they changed stays: they were not the event's doing). ``__cause__`` is the error."""

    def __init__(self, due: list[ExceptionEvent], error: BaseException) -> None:
        super().__init__(f"{type(error).__name__} in an engine step")
        self.due = due
        self.error = error


T = TypeVar("T")


def step(
    engine: Engine,
    event: InboundEvent,
    now: datetime | float,
    only: Iterable[str] | None = None,
    *,
    then: Callable[[list[ExceptionEvent]], T],
) -> T:
    """``then(engine.step(event, now, only))``, atomic per event (see the module docstring).

    ``then`` runs inside: the caller encodes what it will publish there, so an exception
    event that cannot be written fails the step and takes its state changes back with it.
    """
    t = now if isinstance(now, float | int) else now.timestamp()
    heap = engine._heap
    due = engine.sweep(t) if heap and heap[0][0] < t else []
    try:
        keys = tuple(Engine.route(event) if only is None else only)
        keys += actions.companions(event)  # v2: an action's record, beside ``g:actions``
        # on the event-time clock an event read ahead of it waits in each of its shards: the
        # step changes their timers and waiting events alone (and its park fires after the
        # step, as core.py schedules it, while derived records leave with ``forward``)
        parks = engine.reorder and engine.forward and event.occurred_ts - 1e-6 >= t
        saved = _save(engine, keys, parks)
        if not engine.forward:
            _watch_sends(engine)
    except Exception as exc:  # nothing changed yet
        raise StepFailed(due, exc) from exc
    # what the engine hands on besides exceptions (command replies, flags for other shards):
    # a failed step's part of them is dropped with its state changes
    marks = _marks(engine)
    _Journal.depth += 1
    _OPEN.append(saved[0])
    try:
        out = engine.step(event, t, only)
        return then(due + out if due else out)
    except Exception as exc:
        _restore(engine, saved)
        _truncate(engine, marks)
        raise StepFailed(due, exc) from exc
    finally:
        _Journal.depth -= 1
        _OPEN.pop()


def _marks(engine: Engine) -> tuple[int, int, int, int, int]:
    """How much the engine holds to hand on besides exceptions (command replies, derived
    records for other shards, action events, KPI records, blacklist entries) before a step or
    a deadline."""
    return (
        len(engine.replies),
        len(engine.derived),
        len(engine.action_events),
        len(engine.kpi_records),
        len(engine.blacklist_records),
    )


def _truncate(engine: Engine, marks: tuple[int, int, int, int, int]) -> None:
    """Drop what a failed step or deadline added to those outputs: never published."""
    replies, derived, action_events, kpis, entries = marks
    del engine.replies[replies:]
    del engine.derived[derived:]
    del engine.action_events[action_events:]
    del engine.kpi_records[kpis:]
    del engine.blacklist_records[entries:]


Saved = tuple[list[tuple[str, Any, bool]], Any]


def _save(engine: Engine, keys: tuple[str, ...], parks: bool = False) -> Saved:
    """A copy of each key's shard (None: absent) and whether it was already waiting to be
    written; the blacklist as copies when the event is one of its changes. ``parks``: the
    event only waits in its shards (``step``), so a shared shard needs its journals alone."""
    shards = engine.shards
    dirty = engine.dirty
    saved: list[tuple[str, Any, bool]] = []
    blacklist = None
    for key in keys:
        if key == BROADCAST:
            blacklist = (
                {k: set(v) for k, v in engine.blacklist.items()},
                {k: list(v) for k, v in engine.blacklist_at.items()},
                BROADCAST in dirty,
            )
            continue
        shard = shards.get(key)
        if shard is None:
            saved.append((key, None, key in dirty))
        elif parks and type(shard) in _SERIALIZED:
            saved.append((key, _Waiting(shard), key in dirty))
        else:
            saved.append((key, _save_shard(shard), key in dirty))
    return saved, blacklist


def _restore(engine: Engine, saved: Saved) -> None:
    shards, blacklist = saved
    _restore_shards(engine, shards)
    if blacklist is not None:
        engine.blacklist, engine.blacklist_at, was_dirty = blacklist
        if not was_dirty:
            engine.dirty.discard(BROADCAST)
    engine.take_output()  # the failed step's partial output: never published


def _restore_shards(engine: Engine, shards: list[tuple[str, Any, bool]]) -> None:
    for key, saved_shard, was_dirty in shards:
        if saved_shard is None:
            engine.shards.pop(key, None)
        else:
            shard = engine.shards[key] = saved_shard.build()
            for name, due in shard.deadline_dict().items():
                # its deadlines back in the index (a duplicate entry fires once: lazily checked)
                heapq.heappush(engine._heap, (due, next(engine._seq), key, name))
        if not was_dirty:
            engine.dirty.discard(key)


#: the shard lists of the saves open now (a step, a deadline fired in it: innermost last), to
#: which a shard outside the event's route joins when a send reaches it (``_watch_sends``)
_OPEN: list[list[tuple[str, Any, bool]]] = []
#: the engine methods that, in replay (not ``forward``), apply a derived record to another
#: shard at once: a flag to an order, a mark to a customer, an intent to ``g:actions``, an
#: on-time shipment or delivery to ``g:kpis``
_SENDS = ("flag", "derive", "send_intent", "send_contribution")


def _watch_sends(engine: Engine) -> None:
    """Save a shard a replay step reaches by a send when the send reaches it, in every save
    open then (before anything changed it: the step did not route to it), so a failed step
    takes the send back too. Live (``forward``) sends are output, dropped by ``_truncate``.
    Installed once per engine, as ``guard`` is."""
    if "_atomic_sends" in vars(engine):
        return
    vars(engine)["_atomic_sends"] = True
    for name in _SENDS:
        setattr(engine, name, _joining(engine, getattr(engine, name)))


def _joining(engine: Engine, send: Callable[[Any], None]) -> Callable[[Any], None]:
    def sending(record: Any) -> None:
        if _OPEN and not engine.forward:
            keys = (record.shard_key, *actions.companions(record))
            shards, dirty = engine.shards, engine.dirty
            for saves in _OPEN:
                for key in keys:
                    if all(key != k for k, _, _ in saves):
                        shard = shards.get(key)
                        at = None if shard is None else _save_shard(shard)
                        saves.append((key, at, key in dirty))
        send(record)

    return sending


#: Values a step never changes in place: kept, not copied. Tuples included: shards keep tuples
#: of such values only (``WindowShard.entries``); models are frozen (parked events).
_ATOMS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes, tuple, frozenset})
#: ``_ATOMS`` and every frozen model class met so far (parked events): tested inline, so a
#: shard's waiting events cost a set lookup each rather than a call of ``_copy``
_KEPT: set[type] = set(_ATOMS)
#: The shared shards (the rate windows, the actions): thousands of small containers (an entry
#: per payment of the open window) that ``_copy`` walked in Python for every payment event.
#: Their changelog form (``to_dict``, JSON) is written by orjson in C instead, and read back
#: only when a step fails: the same form a restart or a cache miss reads, so it holds exactly
#: what the engine needs. The KPI shard, far bigger (every open window's orders, a day of
#: payments: its JSON was most of the worker's time), is not saved whole: ``_Kept``; nor is
#: the rate shard (``_RateKept``): its JSON was a quarter of an atomic step's time. Both stay
#: here for ``_Waiting`` (a step that only parks in them).
_SERIALIZED: frozenset[type] = frozenset({RateShard, ActionShard})


_MISSING: Any = object()


class _WritesThrough(dict[str, Any]):
    """A dict whose every write goes through ``__setitem__`` / ``__delitem__`` (which the
    journaling subclasses below override), so no bulk method can change it unrecorded."""

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> Self:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        for key in list(self):
            del self[key]


class _Journal(_WritesThrough):
    """A flat dict of a shared shard (its timers, its waiting events) that notes each write
    made while a save is open, so a failed step takes its writes back instead of the dict
    being copied before every step: on the event-time clock a shared shard holds thousands of
    waiting events, each with a timer, and a copy of both per event applied was O(n) each.

    Every write of the engine goes through the methods below (``[]=``, ``del``, ``pop``,
    ``setdefault``, ``update``...); reads are a plain dict's. The note is cleared by the next
    outermost save, so it holds one step's writes.
    """

    __slots__ = ("log",)
    #: saves open now (a step, a deadline fired inside it): notes are kept only then
    depth = 0

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.log: list[tuple[str, Any]] = []

    def _note(self, key: str) -> None:
        if _Journal.depth:
            self.log.append((key, dict.get(self, key, _MISSING)))

    def __setitem__(self, key: str, value: Any) -> None:
        self._note(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._note(key)
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._note(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        key, value = dict.popitem(self)
        if _Journal.depth:
            self.log.append((key, value))
        return key, value

    def mark(self) -> int:
        if not _Journal.depth:
            self.log.clear()
        return len(self.log)

    def undo(self, mark: int) -> None:
        log = self.log
        while len(log) > mark:
            key, old = log.pop()
            if old is _MISSING:
                dict.pop(self, key, None)
            else:
                dict.__setitem__(self, key, old)


def _journal(value: dict[str, Any] | None) -> tuple[Any, int]:
    """(the dict as a ``_Journal``, its mark) for a save; a shared empty mapping or None stays."""
    if value is None or value is NO_TIMERS:
        return value, 0
    if type(value) is not _Journal:
        value = _Journal(value)  # once per dict: the shard keeps it
    return value, value.mark()


def _journal_shard(shard: Shard) -> tuple[tuple[Any, int], tuple[Any, int]]:
    """A shard's waiting events and timers made ``_Journal`` in place, with their marks."""
    parked = _journal(shard.parked)
    timers = _journal(shard.timers)
    shard.parked, shard.timers = parked[0], timers[0]
    return parked, timers


def _take_back(shard: Shard, parked: tuple[Any, int], timers: tuple[Any, int]) -> None:
    """Undo the writes noted since the marks in a shard's waiting events and timers (as
    ``_journal`` returned them) and put both back on the shard: the one take-back of the
    journaled dicts, for every save that keeps them instead of a copy."""
    waiting, mark = parked
    if waiting is not None:
        waiting.undo(mark)
    shard.parked = waiting or None
    journal, mark = timers
    if journal is not NO_TIMERS:
        journal.undo(mark)
    shard.timers = journal or NO_TIMERS


class _Stored:
    """A shared shard as its changelog form without its timers and waiting events, and those
    two as ``_Journal`` with the mark to take them back to."""

    __slots__ = ("data", "parked", "timers")

    def __init__(self, data: bytes, parked: tuple[Any, int], timers: tuple[Any, int]) -> None:
        self.data = data
        self.parked = parked
        self.timers = timers

    def build(self) -> Shard:
        shard = shard_from_dict(orjson.loads(self.data))
        _take_back(shard, self.parked, self.timers)
        return shard


class _Waiting:
    """A shared shard a step only parks an event in: its timers and waiting events are taken
    back by their journals and the shard object is kept (its JSON form was most of the cost
    of a step on the KPI shard, and on the event-time clock half of those steps only park)."""

    __slots__ = ("parked", "shard", "timers")

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.parked, self.timers = _journal_shard(shard)

    def build(self) -> Shard:
        shard = self.shard
        _take_back(shard, self.parked, self.timers)
        return shard


class _Tracked(_WritesThrough):
    """A dict of the KPI shard (``windows``, each of its windows, ``payments``,
    ``closed_until``) that notes each write in the shard's one undo log while a save is open:
    the KPI shard holds every open window's orders and a day of payments, and its JSON form
    before every step that touched it (``_Stored``) made each payment or KPI step O(shard).
    A failed step now takes back its own writes, in reverse order, so its cost is O(writes).

    ``engine/kpi.py`` writes only through the dict methods below; the lists it stores as
    values are replaced, never written into (a write inside one would not be taken back).
    A plain dict stored as a value becomes a ``_Tracked`` on the same log (a new window).
    """

    __slots__ = ("log",)

    def __init__(self, items: Any, log: list[tuple[_Tracked, str, Any]]) -> None:
        super().__init__(items)
        self.log = log

    def __setitem__(self, key: str, value: Any) -> None:
        if _Journal.depth:
            self.log.append((self, key, dict.get(self, key, _MISSING)))
        if type(value) is dict:
            value = _Tracked(value, self.log)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        if _Journal.depth:
            self.log.append((self, key, dict.get(self, key, _MISSING)))
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        if _Journal.depth and key in self:
            self.log.append((self, key, dict.__getitem__(self, key)))
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        key, value = dict.popitem(self)
        if _Journal.depth:
            self.log.append((self, key, value))
        return key, value


_TRACKED = ("windows", "payments", "closed_until")
#: the KPI shard's other fields (its key, its base ``Shard`` fields but the journaled timers
#: and waiting events): small (it raises no exceptions) and copied by ``_copy``, so a field
#: added later is saved too
_KPI_COPIED = tuple(
    f.name
    for f in dataclasses.fields(KpiShard)
    if f.name not in _TRACKED and f.name not in ("timers", "parked")
)


def _track(shard: KpiShard) -> list[tuple[_Tracked, str, Any]]:
    """The KPI shard's undo log, its dicts made ``_Tracked`` on it the first time (a shard
    new or read from the changelog: once, O(shard))."""
    windows = shard.windows
    tracked = type(shard.payments) is _Tracked and type(shard.closed_until) is _Tracked
    if tracked and type(windows) is _Tracked:
        return windows.log
    log: list[tuple[_Tracked, str, Any]] = []
    # every window copied into a dict of its own on this log (one read from a changelog
    # value that is still shared would otherwise note its writes elsewhere)
    shard.windows = _Tracked({k: _Tracked(v, log) for k, v in windows.items()}, log)
    shard.payments = _Tracked(shard.payments, log)
    shard.closed_until = _Tracked(shard.closed_until, log)
    return log


class _Kept:
    """A KPI shard kept as it is while a step runs: its dicts are taken back by their undo
    log, its timers and waiting events by their journals, its few other fields are copies."""

    __slots__ = ("fields", "log", "mark", "parked", "shard", "timers")

    def __init__(self, shard: KpiShard) -> None:
        self.shard = shard
        log = self.log = _track(shard)
        if not _Journal.depth or not _held(log):
            # the last steps' notes: those steps are over (an hour's KPI shard is saved only
            # inside steps in replay, reached by the orders' sends: cleared when no save open
            # now holds a mark on its log, or the log would keep the hour's writes)
            log.clear()
        self.mark = len(log)
        self.fields = [_copy(getattr(shard, name)) for name in _KPI_COPIED]
        self.parked, self.timers = _journal_shard(shard)

    def build(self) -> Shard:
        shard = self.shard
        log, mark = self.log, self.mark
        while len(log) > mark:
            d, key, old = log.pop()
            if old is _MISSING:
                dict.pop(d, key, None)
            else:
                dict.__setitem__(d, key, old)
        for name, value in zip(_KPI_COPIED, self.fields, strict=True):
            setattr(shard, name, _thaw(value))
        _take_back(shard, self.parked, self.timers)
        return shard


def _held(log: list[tuple[_Tracked, str, Any]]) -> bool:
    """Whether a save open now took a mark on this KPI shard's undo log."""
    return any(type(at) is _Kept and at.log is log for saves in _OPEN for _, at, _ in saves)


def _save_shard(shard: Shard) -> Any:
    """What ``_restore`` builds the shard back from: ``_Kept`` for the KPI shard, ``_RateKept``
    for the rate shard, ``_Stored`` for the other shared shards, else a ``_copy``. Each has
    ``build()``."""
    if type(shard) is KpiShard:
        return _Kept(shard)
    if type(shard) is RateShard:
        return _RateKept(shard)
    if type(shard) not in _SERIALIZED:
        return _copy(shard)
    parked, timers = _journal_shard(shard)
    # out of the JSON: taken back by their journals (and ``base_dict`` would dump each
    # waiting event to JSON in place)
    shard.parked, shard.timers = None, NO_TIMERS
    try:
        data = orjson.dumps(shard.to_dict())
    finally:
        shard.parked, shard.timers = parked[0], timers[0]
    return _Stored(data, parked, timers)


#: The rate shard's one undo log (``_RateKept``): (a tracked dict, set, list or exception, the
#: key, element or field written, what it was before). One log for every tracked object: a
#: step takes back what was written after its mark, whichever object it was.
_RATE_LOG: list[tuple[Any, Any, Any]] = []
#: ``_TrackedSet``'s and ``_TrackedList``'s note of a write that replaced the whole content
_ALL: Any = object()


class _TrackedSet(set[Any]):
    """A set of the rate shard (a window's payment ids or failures, the ids raised before)
    that notes each change in ``_RATE_LOG`` while a save is open. ``add`` is the one write on
    the hot path (a payment id into its window): one note, instead of the window's ids dumped
    to JSON before every payment event. Bulk changes note the whole content (rare)."""

    __slots__ = ()

    def add(self, item: Any) -> None:
        if _Journal.depth and item not in self:
            _RATE_LOG.append((self, item, False))
        set.add(self, item)

    def discard(self, item: Any) -> None:
        if _Journal.depth and item in self:
            _RATE_LOG.append((self, item, True))
        set.discard(self, item)

    def remove(self, item: Any) -> None:
        if item not in self:
            raise KeyError(item)
        self.discard(item)

    def _whole(self) -> None:
        if _Journal.depth:
            _RATE_LOG.append((self, _ALL, set(self)))

    def pop(self) -> Any:
        self._whole()
        return set.pop(self)

    def clear(self) -> None:
        self._whole()
        set.clear(self)

    def update(self, *others: Any) -> None:
        self._whole()
        set.update(self, *others)

    def difference_update(self, *others: Any) -> None:
        self._whole()
        set.difference_update(self, *others)

    def intersection_update(self, *others: Any) -> None:
        self._whole()
        set.intersection_update(self, *others)

    def symmetric_difference_update(self, other: Any) -> None:
        self._whole()
        set.symmetric_difference_update(self, other)

    def __ior__(self, other: Any) -> Self:  # type: ignore[misc]
        self.update(other)
        return self

    def __isub__(self, other: Any) -> Self:  # type: ignore[misc]
        self.difference_update(other)
        return self

    def __iand__(self, other: Any) -> Self:  # type: ignore[misc]
        self.intersection_update(other)
        return self

    def __ixor__(self, other: Any) -> Self:  # type: ignore[misc]
        self.symmetric_difference_update(other)
        return self


class _TrackedList(list[Any]):
    """A list in a rate shard's exception (``absorbed``, appended to in place): any change
    notes its whole content first (a few ids)."""

    __slots__ = ()

    def _whole(self) -> None:
        if _Journal.depth:
            _RATE_LOG.append((self, _ALL, list(self)))

    def append(self, item: Any) -> None:
        self._whole()
        list.append(self, item)

    def extend(self, items: Any) -> None:
        self._whole()
        list.extend(self, items)

    def insert(self, index: Any, item: Any) -> None:
        self._whole()
        list.insert(self, index, item)

    def pop(self, index: Any = -1) -> Any:
        self._whole()
        return list.pop(self, index)

    def remove(self, item: Any) -> None:
        self._whole()
        list.remove(self, item)

    def clear(self) -> None:
        self._whole()
        list.clear(self)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._whole()
        list.sort(self, *args, **kwargs)

    def reverse(self) -> None:
        self._whole()
        list.reverse(self)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._whole()
        list.__setitem__(self, index, value)

    def __delitem__(self, index: Any) -> None:
        self._whole()
        list.__delitem__(self, index)

    def __iadd__(self, other: Any) -> Self:  # type: ignore[misc]
        self.extend(other)
        return self

    def __imul__(self, n: Any) -> Self:  # type: ignore[misc]
        self._whole()
        list.__imul__(self, n)
        return self


def _tracked_value(value: Any) -> Any:
    """A list or set stored in a rate shard's exception, tracked (``_TrackedOpen``)."""
    kind = type(value)
    if kind is list:
        return _TrackedList(value)
    if kind is set:
        return _TrackedSet(value)
    return value


class _TrackedOpen(Open):
    """An exception of the rate shard (open or closed): each field written while a save is open
    is noted in ``_RATE_LOG`` (an escalation, a command, a resolution change them in place). An
    ``Open`` becomes one by a change of class when its shard's dict holds it (``_Opens``); the
    fields, and so its changelog form, are the same."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if _Journal.depth:
            _RATE_LOG.append((self, name, getattr(self, name, _MISSING)))
        object.__setattr__(self, name, _tracked_value(value))


def _track_open(op: Any) -> Any:
    if type(op) is Open:
        op.__class__ = _TrackedOpen
        for name in _OPEN_CONTAINERS:
            object.__setattr__(op, name, _tracked_value(getattr(op, name)))
    return op


#: the fields of ``Open`` that may hold a list written in place (``absorbed``) or a container
_OPEN_CONTAINERS = ("event_ids", "absorbed", "values")


class _RateDict(_Tracked):
    """A dict of the rate shard on ``_RATE_LOG`` that also takes back its order: a deletion
    notes the keys in order first (deletions are rare: a window judged, an exception resolved
    or reopened), since a key put back would otherwise come last, and the order of
    ``closed`` is the order exceptions closed in (``operator.py``), as the changelog keeps it."""

    __slots__ = ()

    def __init__(self, items: Any) -> None:
        super().__init__(items, _RATE_LOG)

    def _order(self, key: Any) -> None:
        if _Journal.depth and key in self:
            _RATE_LOG.append((self, _ALL, list(self)))

    def __delitem__(self, key: str) -> None:
        self._order(key)
        _Tracked.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        self._order(key)
        return _Tracked.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        if self:
            self._order(next(reversed(self)))
        return _Tracked.popitem(self)


class _Opens(_RateDict):
    """The rate shard's ``open`` or ``closed``: a ``_RateDict`` whose exceptions are
    ``_TrackedOpen``."""

    __slots__ = ()

    def __init__(self, items: Any) -> None:
        super().__init__({k: _track_open(v) for k, v in items.items()})

    def __setitem__(self, key: str, value: Any) -> None:
        _Tracked.__setitem__(self, key, _track_open(value))


#: the rate shard's fields kept by reference and taken back by ``_RATE_LOG`` (their content),
#: those journaled, and the rest (scalars), copied by ``_copy``: a field added later is saved
_RATE_TRACKED = ("open", "done", "closed", "replies", "payments", "failures")
_RATE_COPIED = tuple(
    f.name
    for f in dataclasses.fields(RateShard)
    if f.name not in _RATE_TRACKED and f.name not in ("timers", "parked")
)
_rate_refs = attrgetter(*_RATE_TRACKED)


def _track_rate(shard: RateShard) -> None:
    """The rate shard's containers made tracked where they are not yet (a shard read from the
    changelog, a dict or set created by the last step, a new window): O(windows) a save but
    for the first, O(shard)."""
    opened = shard.open
    if opened is not NOTHING_OPEN and type(opened) is not _Opens:
        shard.open = _Opens(opened)
    closed = shard.closed
    if closed is not None and type(closed) is not _Opens:
        shard.closed = _Opens(closed)
    done = shard.done
    if done is not None and type(done) is not _TrackedSet:
        shard.done = _TrackedSet(done)
    replies = shard.replies
    if replies is not None and type(replies) is not _RateDict:
        shard.replies = _RateDict(replies)
    payments: Any = shard.payments
    if type(payments) is not _RateDict:
        payments = _RateDict(payments)
        shard.payments = payments
    for bucket in payments.values():
        if type(bucket[0]) is not _TrackedSet or type(bucket[1]) is not _TrackedSet:
            # the same ids: a change of container, nothing to take back
            list.__setitem__(bucket, 0, _TrackedSet(bucket[0]))
            list.__setitem__(bucket, 1, _TrackedSet(bucket[1]))
    failures: Any = shard.failures
    if type(failures) is not _RateDict:
        failures = _RateDict(failures)
        shard.failures = failures
    for start, ids in failures.items():
        if type(ids) is not _TrackedSet:
            dict.__setitem__(failures, start, _TrackedSet(ids))


def _rate_undo(mark: int) -> None:
    """Take back the writes noted in ``_RATE_LOG`` after ``mark``, latest first."""
    log = _RATE_LOG
    while len(log) > mark:
        target, key, old = log.pop()
        kind = type(target)
        if kind is _TrackedSet:
            if key is _ALL:
                set.clear(target)
                set.update(target, old)
            elif old:
                set.add(target, key)
            else:
                set.discard(target, key)
        elif kind is _TrackedList:
            list.__setitem__(target, slice(None), old)
        elif key is _ALL:  # a dict's keys in order, before a deletion
            items = [(k, dict.__getitem__(target, k)) for k in old]
            dict.clear(target)
            dict.update(target, items)
        elif kind is _TrackedOpen:
            if old is _MISSING:
                object.__delattr__(target, key)
            else:
                object.__setattr__(target, key, old)
        elif old is _MISSING:
            dict.pop(target, key, None)
        else:
            dict.__setitem__(target, key, old)


class _RateKept:
    """The rate shard kept as it is while a step runs, instead of its changelog JSON (every
    open window's payment ids sorted and dumped, its exceptions, before every payment event:
    most of the time a step spent saving shards). Its containers and exceptions are taken back
    by ``_RATE_LOG``, their references and scalars are put back, its timers and waiting events
    are taken back by their journals. A payment event's save is O(windows)."""

    __slots__ = ("fields", "mark", "parked", "refs", "shard", "timers")

    def __init__(self, shard: RateShard) -> None:
        self.shard = shard
        _track_rate(shard)
        if not _Journal.depth or not any(
            type(at) is _RateKept for saves in _OPEN for _, at, _ in saves
        ):
            _RATE_LOG.clear()  # the notes of steps that are over
        self.mark = len(_RATE_LOG)
        self.refs = _rate_refs(shard)
        self.fields = [_copy(getattr(shard, name)) for name in _RATE_COPIED]
        self.parked, self.timers = _journal_shard(shard)

    def build(self) -> Shard:
        shard = self.shard
        _rate_undo(self.mark)
        for name, value in zip(_RATE_TRACKED, self.refs, strict=True):
            setattr(shard, name, value)
        for name, value in zip(_RATE_COPIED, self.fields, strict=True):
            setattr(shard, name, _thaw(value))
        _take_back(shard, self.parked, self.timers)
        return shard


#: per dataclass: its type, a getter of all its fields in one C call, their names, and per
#: tuple of its fields' types the fields ``_copy`` visits (position, whether a ``_FLAT`` dict)
_PLANS: dict[
    type, tuple[type, Any, tuple[str, ...], dict[tuple[type, ...], tuple[tuple[int, bool], ...]]]
] = {}
#: ``Shard`` fields that are flat dicts whose values a step replaces, never changes in place
#: (deadline times; waiting events, frozen models or their JSON dicts): copied in C with
#: ``dict()``. On the event-time clock most of a shard's deadlines and its biggest dict are
#: its waiting events, and the generic walk cost ~50 ns per entry in Python.
_FLAT = frozenset({"timers", "parked"})
_DICTS = (dict, _Journal)


#: Per dataclass, combinations of its fields' types remembered at most (``_copy``'s plan): an
#: order shard meets a few hundred; beyond the limit the fields to visit are found each time
_VISIT_LIMIT = 4096


class _Saved:
    """A dataclass's field values, containers copied: built back into an object on failure."""

    __slots__ = ("kind", "names", "values")

    def __init__(self, kind: type, names: tuple[str, ...], values: list[Any]) -> None:
        self.kind = kind
        self.names = names
        self.values = values

    def build(self) -> Any:
        obj: Any = object.__new__(self.kind)
        for name, value in zip(self.names, self.values, strict=True):
            object.__setattr__(obj, name, _thaw(value))
        return obj


def _copy(value: Any) -> Any:
    """A copy of a shard deep enough that no later change of the original reaches it.

    Not ``to_dict`` (it shares lists and dicts with the shard), nor ``copy.deepcopy`` or a
    clone built field by field (both several times slower): a dataclass's fields are read in
    one C call and only containers are copied, at any depth; objects are built again only when
    a step fails (``_thaw``). Generic over what shards hold, so a field added later is copied
    too; the shared read-only empty mappings (``NOTHING_OPEN``, ``NO_TIMERS``) and frozen
    models are kept as they are.
    """
    kind = type(value)
    kept = _KEPT
    if kind is dict:
        return {k: v if type(v) in kept else _copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in kept else _copy(v) for v in value]
    if kind is set:
        return set(value)
    plan = _PLANS.get(kind)
    if plan is None:
        if kind in kept or isinstance(value, BaseModel | dict):
            if isinstance(value, BaseModel) and kind.model_config.get("frozen"):
                kept.add(kind)
            return value  # frozen event models; the shared empty mappings refuse writes
        if not dataclasses.is_dataclass(value):
            return copy.deepcopy(value)
        names = tuple(f.name for f in dataclasses.fields(value))
        plan = _PLANS[kind] = (kind, attrgetter(*names), names, {})
    values = plan[1](value)
    types = tuple(map(type, values))
    visits = plan[3]
    visit = visits.get(types)
    if visit is None:
        # which fields to visit follows from their values' types alone: found once per
        # combination of types (an order shard's ~50 fields are mostly None, numbers and
        # strings, and a test of each in Python was most of the cost of saving it)
        visit = tuple(
            (i, name in _FLAT and t in _DICTS)
            for i, (name, t) in enumerate(zip(plan[2], types, strict=True))
            if t not in kept
        )
        if len(visits) < _VISIT_LIMIT:
            visits[types] = visit
    copied = list(values)
    for i, flat in visit:
        v = copied[i]
        copied[i] = dict(v) if flat else _copy(v)
    return _Saved(kind, plan[2], copied)


def _thaw(value: Any) -> Any:
    kind = type(value)
    if kind is _Saved:
        return value.build()
    if kind is dict:
        return {k: _thaw(v) for k, v in value.items()}
    if kind is list:
        return [_thaw(v) for v in value]
    return value
