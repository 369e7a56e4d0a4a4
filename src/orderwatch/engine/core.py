"""The rule engine: ``step(event, now)`` and ``sweep(now)`` in, exception events out.

Pure on purpose (h11-style): no Kafka, no Faust, no wall clock, no sleeping. The live worker, the
offline replay and the tests all drive this one class, so live and replay cannot drift apart.

Time: ``now`` is the detector's clock, passed in. Deadlines (timeouts, escalations, window closes,
evictions) sit in a heap keyed by due time, so a sweep costs O(due · log n), not O(open orders).
Entries are validated lazily against the shard's own ``timers`` and ``evict_at``: rescheduling or
cancelling a deadline is a write there, and stale heap entries are skipped when they surface.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from orderwatch.engine import (
    actions,
    behaviour,
    derived,
    fraud,
    kpi,
    operator,
    orders,
    rates,
    stock,
)
from orderwatch.engine.cache import Loader, ShardCache
from orderwatch.engine.catalog import Rule
from orderwatch.engine.lifecycle import TIMERS, Lifecycle
from orderwatch.engine.state import (
    ACTIONS,
    ADDRESS,
    CUSTOMER,
    EVICT,
    FAILURE,
    GLOBAL,
    NO_TIMERS,
    NOWHERE,
    ORDER,
    PHONE,
    STOCK,
    ActionRecords,
    ActionShard,
    KpiShard,
    OrderShard,
    RateShard,
    Shard,
    StockShard,
    WindowShard,
    new_shard,
    shard_from_dict,
)
from orderwatch.engine.tuning import Tuner
from orderwatch.events.actions import ActionEvent, ActionFailed, ActionSucceeded
from orderwatch.events.commands import COMMAND_CLASSES, CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import (
    EVENT_ADAPTER,
    BlacklistAdded,
    BlacklistRemoved,
    InboundEvent,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    InventorySnapshot,
    LogisticsDelivered,
    LogisticsException,
    LogisticsOutForDelivery,
    LogisticsScanned,
    LogisticsShipped,
    OrderAddressChanged,
    OrderCreated,
    OrderCreationFailed,
    OrderStatusChanged,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from orderwatch.events.kpis import KpiRecord
from orderwatch.normalize import address_hash, normalize_address, normalize_phone, phone_hash

#: Shard key meaning "every worker": the blacklist is small and every order shard reads it.
BROADCAST = "*"
PARK = "park|"
#: The heap entry that stands for the stored deadlines not read yet (``index_lazily``): never a
#: shard key, and sequence -1 puts it before every deadline of its due time
TIMER_FRONTIER = "\x00timers"
#: ``index_lazily``'s source: the next stored shards in the order of their earliest deadline,
#: as ``(earliest due, key)``, and the earliest due of the first one still unread (None: none)
TimerSource = Callable[[], tuple[list[tuple[float, str]], float | None]]
_WINDOWS = frozenset({ADDRESS, PHONE, CUSTOMER})
#: Event types kept only on their order's shard (the fall-through case of ``Engine.route``).
_ORDER_ONLY: frozenset[type] = frozenset(
    {
        OrderStatusChanged,
        OrderAddressChanged,
        PaymentRefunded,
        InventoryReserved,
        InventoryReservationFailed,
        InventoryReleased,
        LogisticsShipped,
        LogisticsScanned,
        LogisticsOutForDelivery,
        LogisticsDelivered,
        LogisticsException,
    }
)
DEFAULT_RETENTION = 14 * 86400.0

#: Each shard kind's rules, by the shard's exact class: a kind is fixed by its key's prefix
#: (``new_shard``), so one dict lookup replaces a chain of prefix comparisons per event.
_APPLY: dict[type[Shard], Callable[[Engine, Any, Any, float], None]] = {
    OrderShard: orders.apply,
    RateShard: rates.apply,
    StockShard: stock.apply,
    WindowShard: fraud.apply,
    Shard: orders.creation_failed,
    ActionShard: lambda ctx, shard, ev, at: None,  # v2: reached only by _ANY_SHARD's inputs
    ActionRecords: lambda ctx, shard, ev, at: None,  # v2: never routed to (``home_key``)
    KpiShard: kpi.apply_legacy,  # v2: a payment waiting in g:kpis of the earlier layout
}


#: Inputs applied the same way on every kind of shard, by their exact class: operator commands
#: (section 8) and the flags fraud windows derive for an order's shard (``derived.py``).
_ANY_SHARD: dict[type, Callable[[Engine, Any, Any, float], None]] = {
    **dict.fromkeys(COMMAND_CLASSES, operator.apply),
    derived.Flag: fraud.apply_flag,
    derived.Mark: behaviour.apply_mark,
    derived.Intent: actions.apply_intent,
    derived.Contribution: kpi.apply_contribution,
    kpi.Counted: kpi.apply_contribution,  # the same, made and applied in one engine (replay)
    ActionSucceeded: actions.apply_result,
    ActionFailed: actions.apply_result,
}


#: ``Engine.step`` applies these kinds through ``_APPLY`` without asking ``_ANY_SHARD`` first
_ONE_SHARD_RULES = _ORDER_ONLY | {InventorySnapshot}
if _ONE_SHARD_RULES & _ANY_SHARD.keys():
    raise RuntimeError("an event kind of one shard is also applied on any shard")


def _no_deadlines(ctx: Engine, shard: Shard, name: str, due: float, now: float) -> None:
    """Failure shards schedule nothing but their eviction."""


_ON_DEADLINE: dict[type[Shard], Callable[[Engine, Any, str, float, float], None]] = {
    OrderShard: orders.on_deadline,
    RateShard: rates.on_deadline,
    StockShard: stock.on_deadline,
    WindowShard: fraud.on_deadline,
    Shard: _no_deadlines,
    ActionShard: actions.on_deadline,
    ActionRecords: actions.on_deadline,
    KpiShard: kpi.on_close,
}


_KPI_DEADLINES = frozenset({kpi.NOT_SHIPPED, kpi.DELIVERY_DELAYED})


def _ts(now: datetime | float) -> float:
    return now if isinstance(now, float | int) else now.timestamp()


class Engine:
    """All rules of a catalog over sharded state; see the module docstring for the contract."""

    def __init__(
        self,
        rules: Mapping[str, Rule],
        *,
        retention: float = DEFAULT_RETENTION,
        track_dirty: bool = True,
        reorder: bool = False,
    ) -> None:
        self.rules: dict[str, Rule] = dict(rules)
        self.retention = retention
        #: event time on a watermark (live worker, ``ORDERWATCH_CLOCK=event``): every event read
        #: ahead of the clock waits in its shard until the clock reaches it, so the shard sees
        #: its events in time order, as replay of a time-ordered file does, however far apart
        #: the input streams are read
        self.reorder = reorder
        #: whether ``dirty`` collects changed shard keys for ``take_dirty``; replay persists
        #: nothing, and a set of every key it ever touched would grow with the input
        self.track_dirty = track_dirty
        self.shards: dict[str, Shard] = {}
        self.blacklist: dict[str, set[str]] = {
            "customer_id": set(),
            "phone": set(),
            "address": set(),
        }
        #: "kind|value" -> [occurred_at, event_id] of the entry's latest add/remove, so a
        #: re-delivered or late older event cannot undo a newer one
        self.blacklist_at: dict[str, list[Any]] = {}
        self.dirty: set[str] = set()
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        #: (shard key, name) -> (due, seq) of a deadline moved later by ``postpone`` whose heap
        #: entry is not pushed yet: the entry of its earlier time stands in for it
        self._later: dict[tuple[str, str], tuple[float, int]] = {}
        self._held: frozenset[str] = frozenset()
        self._parked: list[tuple[float, int, str, str]] = []
        #: where stored deadlines come from, a chunk at a time (``index_lazily``), and the
        #: earliest deadline of the first stored shard not read from it yet (None: all read)
        self._timer_source: TimerSource | None = None
        self._frontier: float | None = None
        self.life = Lifecycle(self.rules, self.schedule, self.unschedule)
        #: read after every order event: the thresholds and switches of the order timeouts
        self.timeout_limits = orders.timeout_limits(self.rules)
        self.enabled_timeouts = frozenset(r for r in orders.TIMEOUTS if self.enabled(r))
        #: v2: replies to the commands applied since the last ``take_replies``
        self.replies: list[CommandReply] = []
        #: v2: whether a fraud window's flag for an order is handed to the shell (``forward``,
        #: live: the order's shard may be another partition's) instead of applied at once
        self.forward = False
        self.derived: list[derived.Flag | derived.Mark | derived.Intent | derived.Contribution] = []
        self.tuning = Tuner(self)
        #: v2 (section 10): action events produced since the last ``take_actions``, and the
        #: rules whose exceptions request actions
        self.action_events: list[ActionEvent] = []
        self.remediating = frozenset(r for r, rule in self.rules.items() if rule.remediation)
        self._remediated = 0
        #: v2 (section 11): KPI records published since the last ``take_kpis``
        self.kpi_records: list[KpiRecord] = []
        #: v2 (section 10): blacklist entries of approved ``blacklist.suggest`` actions since
        #: the last ``take_blacklist``, for the blacklist topic (``--blacklist`` in replay)
        self.blacklist_records: list[BlacklistAdded] = []
        #: whether ``step`` may apply an event of one shard with ``_apply``'s lines inline: not
        #: when a subclass overrides ``_apply`` (the tests' fault injectors), which then sees
        #: every application
        self._inline = type(self)._apply is Engine._apply

    # --- routing -------------------------------------------------------------------------------

    @staticmethod
    def route(event: InboundEvent) -> tuple[str, ...]:
        """The shard keys an event updates; the live worker repartitions by each of them."""
        # exact type tests: the event classes are leaves, and isinstance on a pydantic model
        # goes through its metaclass (with a fresh union object per ``A | B``): routing an
        # inventory snapshot through four of them was 7 % of the worker
        kind = type(event)
        if kind in _ORDER_ONLY:  # most events: one set lookup
            return (ORDER + event.order_id,)  # type: ignore[union-attr,operator]
        if kind is InventorySnapshot:
            return (f"{STOCK}{event.sku}/{event.warehouse_id}",)  # type: ignore[union-attr]
        if isinstance(event, OrderCreated):
            keys = [ORDER + event.order_id, CUSTOMER + event.customer.customer_id]
            addr = event.shipping_address
            keys.append(ADDRESS + address_hash(normalize_address(addr)))
            if normalize_phone(addr.phone):
                keys.append(PHONE + phone_hash(addr.phone))
            return tuple(keys)
        if kind is PaymentSucceeded or kind is PaymentFailed:
            # v2: counted for section 11 on the order's shard (``kpi.observe``), not on g:kpis
            return (ORDER + event.order_id, GLOBAL)  # type: ignore[union-attr,operator]
        if isinstance(event, OrderCreationFailed):
            # v2: on a shard of its subject (its order_id, else its event_id), so that a command
            # naming the rule and the subject finds it (an order_id alone could be either)
            return (FAILURE + (event.order_id or event.event_id), GLOBAL)
        if kind is BlacklistAdded or kind is BlacklistRemoved:
            return (BROADCAST,)
        if kind in COMMAND_CLASSES:
            return (operator.route(event),)  # type: ignore[arg-type]
        if kind is derived.Flag:  # type: ignore[comparison-overlap]
            return (ORDER + event.order_id,)  # type: ignore[union-attr]
        if kind in actions.RESULTS or kind is derived.Intent:  # type: ignore[comparison-overlap]
            return (ACTIONS,)
        if kind is derived.Contribution:  # type: ignore[comparison-overlap]
            return (event.shard_key,)  # type: ignore[union-attr]
        if kind is derived.Mark:  # type: ignore[comparison-overlap]
            return (CUSTOMER + event.customer_id,)  # type: ignore[union-attr]
        return (ORDER + event.order_id,)  # type: ignore[union-attr]

    # --- the two entry points ------------------------------------------------------------------

    def step(
        self, event: InboundEvent, now: datetime | float, only: Iterable[str] | None = None
    ) -> list[ExceptionEvent]:
        """Read one event at clock ``now``.

        Deadlines the clock has already passed fire first (their resolving event had not been
        read when the clock passed them), then the event applies, then anything it made due.
        ``only`` restricts the work to the shard keys this worker owns (live); replay passes None.
        """
        t = now if type(now) is float else _ts(now)
        heap = self._heap
        if heap and heap[0][0] < t:
            self._sweep(t)
            if self.remediating and self.life.out:
                self._remediate()  # what fired before the event is asked for before it is read
        occurred = event.occurred_ts
        shards = self.shards
        kind = type(event)
        if only is None and (kind in _ORDER_ONLY or kind is InventorySnapshot):
            # most events (an order's, or a snapshot: a quarter of the input) reach exactly one
            # shard: found here without building a route tuple, as ``route`` and ``_step_keys``
            # would
            shard_type: type[Shard]
            if kind is InventorySnapshot:
                fields = event.__dict__  # one slow read of the model for its two fields
                key = f"{STOCK}{fields['sku']}/{fields['warehouse_id']}"
                shard_type = StockShard
            else:
                key = ORDER + event.order_id  # type: ignore[union-attr,operator]
                shard_type = OrderShard
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = shard_type(key)
            if occurred <= t and self._inline:
                # ``_apply``, inline (every replayed event of these kinds comes here): the
                # event's time and kind are known already, and neither kind is one of
                # ``_ANY_SHARD``'s inputs (``_ONE_SHARD_RULES``)
                self.tuning.at = self.life.at = occurred
                _APPLY[type(shard)](self, shard, event, t)
                if occurred > shard.last_at:
                    shard.last_at = occurred
                if shard.evict_at is None:
                    last = shard.last_at
                    self.schedule(shard, EVICT, (last if last > t else t) + self.retention)
                if self.track_dirty:
                    self.dirty.add(key)
            elif occurred > t and self._must_wait(shard, t, occurred):
                self._park(shard, event, occurred)
            else:
                self._apply(shard, event, occurred if occurred > t else t)
        else:
            self._step_keys(event, t, occurred, self.route(event) if only is None else only)
        if heap and heap[0][0] < t:
            self._sweep(t)
        if not self.track_dirty:
            self.dirty.clear()
        out = self.life.out
        if out:
            if self.remediating:
                self._remediate()
            self.life.out = []
            self._remediated = 0
            return out
        return []

    def _step_keys(
        self, event: InboundEvent, t: float, occurred: float, keys: Iterable[str]
    ) -> None:
        # what the event itself decides is detected no earlier than it happened; a watermark
        # clock (live, event time) can be behind the event it is reading
        at = occurred if occurred > t else t
        shards = self.shards
        for key in keys:
            if key == BROADCAST:
                self._apply_blacklist(event)
                continue
            shard = shards.get(key)
            if shard is None:
                if key[:2] in _WINDOWS and not fraud.admits(self, key, event):
                    continue  # it would hold an empty window and nothing else
                if key[:2] == NOWHERE:
                    operator.apply(self, None, event, at)  # type: ignore[arg-type]
                    continue
                shard = shards[key] = new_shard(key)
            if occurred > t and self._must_wait(shard, t, occurred):
                self._park(shard, event, occurred)
                continue
            self._apply(shard, event, at)

    def _apply(self, shard: Shard, event: InboundEvent, at: float) -> None:
        occurred = event.occurred_ts
        self.tuning.at = self.life.at = occurred
        special = _ANY_SHARD.get(type(event))
        if special is None:
            _APPLY[type(shard)](self, shard, event, at)
        else:
            special(self, shard, event, at)
        if occurred > shard.last_at:
            shard.last_at = occurred
        if shard.evict_at is None:
            last = shard.last_at
            self.schedule(shard, EVICT, (last if last > at else at) + self.retention)
        if self.track_dirty:
            self.dirty.add(shard.key)

    def _must_wait(self, shard: Shard, now: float, occurred: float) -> bool:
        """Whether an event read ahead of the clock must wait for it.

        With ``reorder`` every such event waits. Otherwise only when the shard has a deadline
        between the clock and the event's time: replay would have fired it before reading this
        event, and applying the event now could resolve a timeout that was in fact missed (a
        producer whose clock runs ahead of ours, live). Later events of a shard with waiting
        ones wait too, to keep their order. Replay's clock is never behind the event it reads,
        so replay never parks.
        """
        if shard.parked or self.reorder:
            return True
        return any(
            now < due < occurred for name, due in shard.timers.items() if not name.startswith(PARK)
        )

    def _park(self, shard: Shard, event: InboundEvent, occurred: float) -> None:
        if shard.parked is None:
            shard.parked = {}
        # the model itself (frozen): most parked events are read back within seconds, and the
        # changelog form is made only if the shard is written meanwhile (Shard.base_dict)
        shard.parked[event.event_id] = event
        # just before its time, so a deadline at exactly that time is judged after it, as in
        # replay (deadlines fire strictly after the clock passes them)
        self.schedule(shard, f"{PARK}{event.event_id}", occurred - 1e-6)

    def _unpark(self, shard: Shard, name: str, now: float) -> None:
        data = (shard.parked or {}).pop(name[len(PARK) :], None)
        if not shard.parked:
            shard.parked = None
        if data is None:
            return
        if isinstance(data, dict):
            event: Any = derived.from_dict(data)
            if event is None:
                event = EVENT_ADAPTER.validate_python(data)
        else:
            event = data
        self._apply(shard, event, max(now, event.occurred_ts))

    def sweep(self, now: datetime | float) -> list[ExceptionEvent]:
        """Fire every deadline strictly before ``now``; call at least once a second live."""
        self._sweep(_ts(now))
        if not self.track_dirty:
            self.dirty.clear()
        return self.take_output()

    def take_output(self) -> list[ExceptionEvent]:
        if self.life.out and self.remediating:
            self._remediate()
        out, self.life.out = self.life.out, []
        self._remediated = 0
        return out

    def _remediate(self) -> None:
        """Actions for the exception events produced since the last look (section 10)."""
        out = self.life.out
        if len(out) > self._remediated:
            new = out[self._remediated :]
            self._remediated = len(out)
            actions.remediate(self, new)

    def take_actions(self) -> list[ActionEvent]:
        """The action events (section 10) produced since the last call, in the order produced."""
        events, self.action_events = self.action_events, []
        return events

    def take_blacklist(self) -> list[BlacklistAdded]:
        """The blacklist entries (section 10's ``blacklist.suggest``) made since the last call.

        Not applied here: like any blacklist change they take effect when read back as input
        (the worker from the blacklist topic, replay right after the step that made them)."""
        records, self.blacklist_records = self.blacklist_records, []
        return records

    def take_kpis(self) -> list[KpiRecord]:
        """The KPI records (section 11) published since the last call."""
        records, self.kpi_records = self.kpi_records, []
        return records

    def send_contribution(self, record: derived.Contribution | kpi.Counted) -> None:
        """An order's judgement for an indicator, to its hour's KPI shard (as ``send_intent``).

        A ``kpi.Counted`` is made only when not ``forward``; forwarded ones are records."""
        if self.forward:
            self.derived.append(record)  # type: ignore[arg-type]
            return
        key = record.shard_key
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = new_shard(key)
        self._apply(shard, record, record.occurred_ts)  # type: ignore[arg-type]

    def send_intent(self, record: derived.Intent) -> None:
        """An exception's shard tells the action shard (``actions.py``): applied now (replay),
        or handed to the shell for the partition that owns ``g:actions`` (live)."""
        if self.forward:
            self.derived.append(record)
            return
        shard = self.shards.get(ACTIONS)
        if shard is None:
            shard = self.shards[ACTIONS] = new_shard(ACTIONS)
        self._apply(shard, record, record.occurred_ts)  # type: ignore[arg-type]

    def take_replies(self) -> list[CommandReply]:
        """The replies to the commands applied since the last call, in the order applied."""
        replies, self.replies = self.replies, []
        return replies

    def take_derived(
        self,
    ) -> list[derived.Flag | derived.Mark | derived.Intent | derived.Contribution]:
        """Flags for orders' shards derived since the last call (only with ``forward``)."""
        flags, self.derived = self.derived, []
        return flags

    def flag(self, record: derived.Flag) -> None:
        """A fraud window flags an order: applied on the order's shard now (replay, which holds
        every shard), or handed to the shell to send to the partition that owns it (live)."""
        if self.forward:
            self.derived.append(record)
            return
        key = ORDER + record.order_id
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = OrderShard(key)
        self._apply(shard, record, record.occurred_ts)  # type: ignore[arg-type]

    def derive(self, record: derived.Mark) -> None:
        """An order's shard tells its customer's shard of a first refund or rejection (v2,
        ``behaviour.py``): applied now (replay), or handed to the shell (live), as ``flag``."""
        if self.forward:
            self.derived.append(record)
            return
        key = record.shard_key
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = new_shard(key)
        self._apply(shard, record, record.occurred_ts)  # type: ignore[arg-type]

    # --- deadlines -----------------------------------------------------------------------------

    def schedule(self, shard: Shard, name: str, due: float) -> None:
        if name == EVICT:
            if shard.evict_at == due:
                return
            shard.evict_at = due
        else:
            timers = shard.timers
            if timers.get(name) == due:
                return
            if timers is NO_TIMERS:
                timers = shard.timers = {}
            timers[name] = due
        heapq.heappush(self._heap, (due, next(self._seq), shard.key, name))
        self.dirty.add(shard.key)

    def postpone(self, shard: Shard, name: str, due: float) -> None:
        """``schedule`` for a timer that, once moved later, never comes back to a time it had.

        Moving such a timer later pushes nothing: the heap entry of its earlier time is still
        there and surfaces first; the sweep then pushes the later time with the sequence number
        taken here. The heap holds every entry ``schedule`` would have pushed that could still
        fire (a superseded later time cannot: the timer never returns to it), in the same
        (due, sequence) order, so deadlines fire exactly as with ``schedule``. What it saves is
        the heap traffic of ``logistics.tracking_stale``, moved later by every carrier scan.
        """
        timers = shard.timers
        current = timers.get(name)
        if current is None or due <= current:
            self.schedule(shard, name, due)
            return
        timers[name] = due
        self._later[(shard.key, name)] = (due, next(self._seq))
        self.dirty.add(shard.key)

    def unschedule(self, shard: Shard, name: str) -> None:
        if name == EVICT:
            if shard.evict_at is None:
                return
            shard.evict_at = None
        else:
            timers = shard.timers
            if timers.pop(name, None) is None:
                return
            if not timers:
                shard.timers = NO_TIMERS  # an emptied dict keeps its table
        self.dirty.add(shard.key)

    def hold(self, rule_ids: frozenset[str]) -> None:
        """Hold the timeouts of these rules (their input stream is silent); release the rest.

        A held deadline is parked, not fired: when its stream flows again it goes back into the
        index and is judged against what has arrived by then.
        """
        self._held = frozenset(rule_ids)
        keep = []
        for entry in self._parked:
            if entry[3] in self._held:
                keep.append(entry)
            else:
                heapq.heappush(self._heap, entry)
        self._parked = keep

    def _sweep(self, now: float) -> None:
        heap = self._heap
        held = self._held
        later = self._later
        while heap and heap[0][0] < now:
            entry = heapq.heappop(heap)
            due, _, key, name = entry
            if later:
                moved = later.pop((key, name), None)
                if moved is not None:  # this entry stood in for a later time: enter that now
                    heapq.heappush(heap, (moved[0], moved[1], key, name))
            shard = self.shards.get(key)
            if shard is None:
                if key == TIMER_FRONTIER:
                    self._more_timers()  # the stored shards from here on enter the heap
                continue
            if not name:  # a stored shard's earliest deadline: all its deadlines enter now
                for stored, at in shard.deadline_dict().items():
                    heapq.heappush(heap, (at, 0, key, stored))
                continue
            if (shard.evict_at if name == EVICT else shard.timers.get(name)) != due:
                continue  # cancelled or moved since: a stale entry
            if name in held:
                self._parked.append(entry)
                continue
            self._fire(shard, name, due, now)

    def _fire(self, shard: Shard, name: str, due: float, now: float) -> None:
        self.tuning.at = self.life.at = due
        self.unschedule(shard, name)
        if name == EVICT:
            self._evict(shard, now)
        elif name.startswith(PARK):
            self._unpark(shard, name, now)
        elif name.startswith(TIMERS):
            self.life.on_timer(shard, name, due, now)
        else:
            self._on_deadline(shard, name, due, now)

    def _evict(self, shard: Shard, now: float) -> None:
        """Forget a quiet shard after the retention period, unless something is still open.

        One eviction deadline per shard, pushed back here when the shard saw events since; this
        keeps the heap at one entry per shard instead of one per event.
        """
        if shard.timers or shard.last_at + self.retention >= now or self._holds(shard):
            self.schedule(shard, EVICT, max(shard.last_at, now) + self.retention)
            return
        del self.shards[shard.key]

    def _holds(self, shard: Shard) -> bool:
        """Whether an open exception keeps a quiet shard: one its rule may still resolve.

        A notification is open until a person resolves it (v2), possibly never: one left open
        for the whole retention period is forgotten with its shard, as resolved ones are.
        """
        rules = self.rules
        return any(
            op.rule_id in rules and rules[op.rule_id].resolvable for op in shard.open.values()
        )

    # --- dispatch ---------------------------------------------------------------------------

    def _on_deadline(self, shard: Shard, name: str, due: float, now: float) -> None:
        _ON_DEADLINE[type(shard)](self, shard, name, due, now)
        if name in _KPI_DEADLINES and type(shard) is OrderShard:
            kpi.on_deadline(self, shard, name, due, now)  # v2: late shipment or delivery

    def _apply_blacklist(self, event: InboundEvent) -> None:
        assert isinstance(event, BlacklistAdded | BlacklistRemoved)
        value = orders.blacklist_value(event.kind, event.value)
        entries = self.blacklist[event.kind]
        stamp = [event.occurred_ts, event.event_id]
        latest = self.blacklist_at.get(f"{event.kind}|{value}")
        if latest is not None and tuple(latest) >= tuple(stamp):
            return
        self.blacklist_at[f"{event.kind}|{value}"] = stamp
        if isinstance(event, BlacklistAdded):
            entries.add(value)
        else:
            entries.discard(value)
        self.dirty.add(BROADCAST)

    # --- persistence (the Faust shell stores shards in changelog-backed tables) ----------------

    def params(self, rule_id: str, shard: Shard | None = None) -> Any:
        """The rule's parameters for this shard's subject (overrides applied); the base
        parameters without a shard, or when the rule file has no overrides."""
        rule = self.rules[rule_id]
        if not rule.tuning.overrides:
            return rule.params
        return self.tuning.effective(shard, rule, self.tuning.at).params

    # --- overrides, calendars, a new rule set (``engine.params``, ``engine.tuning``) ---------

    @property
    def tuned_timeouts(self) -> frozenset[str]:
        """The order timeouts whose deadline depends on the subject or the calendar."""
        return self.tuning.timeouts

    def deadline(self, shard: Shard, rule_id: str, anchor: float) -> float:
        return self.tuning.deadline(shard, rule_id, anchor)

    def set_rules(self, rules: Mapping[str, Rule]) -> None:
        """Run another rule set from now on (hot reload, between batches); see ``Tuner.swap``."""
        self.tuning.swap(rules)

    def enabled(self, rule_id: str) -> bool:
        rule = self.rules.get(rule_id)
        return rule is not None and rule.enabled

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """Serialized form of every shard changed since the last call (None: deleted)."""
        out: dict[str, dict[str, Any] | None] = {}
        for key in self.dirty:
            if key == BROADCAST:
                entries: dict[str, Any] = {k: sorted(v) for k, v in self.blacklist.items()}
                entries["at"] = self.blacklist_at
                out[key] = entries
                continue
            shard = self.shards.get(key)
            out[key] = None if shard is None else shard.to_dict()
        self.dirty.clear()
        return out

    def restore(self, key: str, data: dict[str, Any]) -> None:
        """Load one shard from its serialized form and re-index its deadlines."""
        if key == BROADCAST:
            self.blacklist = {k: set(data.get(k, ())) for k in self.blacklist}
            self.blacklist_at = dict(data.get("at", {}))
            return
        shard = shard_from_dict(data)
        self.shards[key] = shard
        for name, due in shard.deadline_dict().items():  # the timers, then the eviction
            heapq.heappush(self._heap, (due, next(self._seq), key, name))

    def use_store(self, load: Loader, capacity: int, budget: int = 0) -> ShardCache:
        """Keep at most ``capacity`` shards and, with ``budget``, at most that many bytes of
        their stored form in memory, and read any other from ``load`` (the live worker on its
        local store; ``orderwatch.engine.cache``). Call before the first event."""
        cache = ShardCache(load, capacity, self.dirty, budget)
        self.shards = cache  # type: ignore[assignment]
        return cache

    def index(self, deadlines: Iterable[tuple[float, str, str]]) -> int:
        """Enter ``(due, shard key, name)`` deadlines of shards left in the store (a streaming
        scan of it at start-up), without loading the shards; returns how many.

        Validated lazily like every entry: when one surfaces, its shard is read and checked.
        """
        heap = self._heap
        before = len(heap)
        # sequence 0 for all (a cached small int, not 28 bytes per entry): the order among equal
        # due times of stored deadlines is not known anyway, and ties then go by key and name
        heap += [(due, 0, key, name) for due, key, name in deadlines]
        heapq.heapify(heap)
        return len(heap) - before

    def index_lazily(self, source: TimerSource) -> int:
        """Enter the deadlines of shards left in a store that keeps each shard's earliest
        deadline ordered by due time (the worker's RocksDB timer index, ``agents/store.py``), a
        chunk at a time; returns how many shards the first chunk held.

        Each stored shard enters the heap as one entry at its earliest deadline with an empty
        name: when the clock reaches it, the shard is read and all its deadlines enter the heap
        (validated as any entry when they surface). Only the first chunk is read now; a
        ``TIMER_FRONTIER`` entry at the earliest deadline of the first unread shard stands for
        the rest, ordered before every deadline of that time, so when the clock passes it the
        sweep reads the next chunk and goes on in due order. A start costs one chunk, not every
        stored shard, and the heap holds what is due soon. Deadlines scheduled while running
        are in the heap already; reading them again from the store adds duplicates that the
        sweep finds stale once the first has fired.
        """
        self._timer_source = source
        if isinstance(self.shards, ShardCache):
            self.shards.on_load = self._loaded
        return self._more_timers()

    def _loaded(self, shard: Shard) -> None:
        """A shard read from the store whose index entry is not read yet enters the heap at its
        earliest deadline (its others follow when that one comes), as its entry would: a change
        written before the entry is read may move the entry behind the part already read."""
        frontier = self._frontier
        if frontier is None or (shard.evict_at is None and not shard.timers):
            return
        first = min(shard.deadline_dict().values())
        if first >= frontier:
            heapq.heappush(self._heap, (first, 0, shard.key, ""))

    def _more_timers(self) -> int:
        if self._timer_source is None:
            return 0
        entries, frontier = self._timer_source()
        self._frontier = frontier
        heap = self._heap
        heap += [(due, 0, key, "") for due, key in entries]
        if frontier is not None:
            heap.append((frontier, -1, TIMER_FRONTIER, ""))
        heapq.heapify(heap)
        return len(entries)

    def open_count(self) -> int:
        return sum(len(s.open) for s in self.shards.values())
