"""The engine's state, split into shards that each live under one key.

A shard is everything one key needs: an order, a sku in a warehouse, an address, a phone, a
customer, or the global rate windows. Sharding is what lets the Faust shell keep each key's state in
a changelog-backed table on the partition that owns the key, while replay keeps all shards in one
dict: both run the same code over the same shard objects.

Times are float epoch seconds: half the memory of ``datetime`` and much cheaper to compare, which
matters at a million open orders. Shards serialize to plain JSON-ready dicts (never pickle: a
changelog topic is readable and writable by other tenants of the cluster).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Shard key prefixes; the key after the prefix is the field the state is kept on.
ORDER = "o:"
STOCK = "s:"
ADDRESS = "a:"
PHONE = "p:"
CUSTOMER = "c:"
GLOBAL = "g:rates"
#: v2: the one shard every remediation action passes through (section 10, ``engine/actions.py``)
ACTIONS = "g:actions"
#: v2: the one shard that counts the hourly indicators (section 11, ``engine/kpi.py``)
KPIS = "g:kpis"
#: v2: the shards of the hours being counted, ``g:kpis/<hour start>`` (``engine/kpi.py``); a
#: ``g:kpis`` of the earlier layout (every hour in one shard) is migrated to them
KPI_HOUR = KPIS + "/"


def hour_key(start: float) -> str:
    """The shard that counts the hour starting at ``start``: ``g:kpis/<epoch seconds>``.

    Made once per hour and kept (``_HOUR_KEYS``): every contribution asks for its shard's key,
    a few times on its way (``send_contribution``, an atomic step's save), and an hour has
    thousands of them."""
    key = _HOUR_KEYS.get(start)
    if key is None:
        if len(_HOUR_KEYS) >= 10_000:
            _HOUR_KEYS.clear()
        key = _HOUR_KEYS[start] = f"{KPI_HOUR}{int(start)}"
    return key


_HOUR_KEYS: dict[float, str] = {}


#: the timer a ``g:kpis`` of the earlier layout gets when read, due at once: its migration
KPI_MIGRATE = "kpi|migrate"
FAILURE = "f:"
#: v2: where a command goes that names no shard (an unknown rule, no subject): nothing lives
#: there, so it is answered ``unknown_exception``
NOWHERE = "n:"
#: The deadline every shard has: forget it after the retention period.
EVICT = "evict"
#: Version of the serialized shard (``"v"`` in ``to_dict``). Data written before the field
#: existed has none and reads as version 1. A reader refuses a version it does not know
#: (``StateFormatError``) rather than guess: wrong state would raise or resolve the wrong
#: exceptions silently. Bump it when a change is not readable by the previous reader.
#: Version 2: lifecycle v2 (operators' statuses, ``closed`` occurrences, command replies, open
#: notifications), which a version-1 reader would drop without a word.
FORMAT_VERSION = 2


class StateFormatError(ValueError):
    """A serialized shard this engine cannot read (another format version, or not a shard)."""


@dataclass(slots=True)
class Open:
    """An exception the shard owns: enough to escalate, resolve and command it without the
    triggering events. Open ones sit in ``Shard.open``; resolved ones in ``Shard.closed``, so a
    comment or a reopen still finds them (CONTRACT section 8)."""

    exception_id: str
    rule_id: str
    subject: str
    event_time: float
    level: int
    summary: str
    event_ids: list[str]
    values: dict[str, Any]
    order_id: str | None = None
    sku: str | None = None
    warehouse_id: str | None = None
    #: v2: the ``seq`` of the last event published for it (kept so a re-publication after a
    #: restart is byte-identical), its status and the operators' fields
    seq: int = 0
    status: str = "open"
    assignee: str | None = None
    acked_by: str | None = None
    snoozed_until: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    inhibited_by: str | None = None
    #: the ids other triggers of its rule and subject would have raised while it was open
    #: (absorbed by it): done once a person resolves it, so a re-delivered one raises nothing
    absorbed: list[str] | None = None
    #: after a reopen, the latest event time its shard had read then: only an event later than
    #: that resolves it again (an earlier one was judged already, or is a re-delivery)
    reopened_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.exception_id,
            "r": self.rule_id,
            "s": self.subject,
            "t": self.event_time,
            "l": self.level,
            "m": self.summary,
            "e": self.event_ids,
            "v": self.values,
            "o": self.order_id,
            "k": self.sku,
            "w": self.warehouse_id,
            "q": self.seq,
        }
        # the operators' fields only when set: most exceptions never see a command
        for key, value in (
            ("st", None if self.status == "open" else self.status),
            ("as", self.assignee),
            ("ab", self.acked_by),
            ("su", self.snoozed_until),
            ("rb", self.resolved_by),
            ("rs", self.resolution),
            ("ib", self.inhibited_by),
            ("ax", self.absorbed),
            ("ra", self.reopened_after),
        ):
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Open:
        return cls(
            d["id"],
            d["r"],
            d["s"],
            d["t"],
            d["l"],
            d["m"],
            d["e"],
            d["v"],
            d["o"],
            d["k"],
            d["w"],
            # state written before v2: a raise and one event per escalation were published
            d.get("q", d["l"] + 1),
            d.get("st", "open"),
            d.get("as"),
            d.get("ab"),
            d.get("su"),
            d.get("rb"),
            d.get("rs"),
            d.get("ib"),
            d.get("ax"),
            d.get("ra"),
        )


class _SharedEmpty(dict[str, Any]):
    """The one empty mapping every shard with nothing in it points to (most shards, most times).

    An empty dict per shard is 64 bytes, and one emptied again keeps its table (over 200);
    sharing this one saves both. Writing to it is a bug, so it refuses: ``open_mapping`` and the
    engine's ``schedule`` give a shard its own dict first.
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("a shared empty shard mapping is read-only")

    def setdefault(self, key: str, default: Any = None) -> Any:
        raise TypeError("a shared empty shard mapping is read-only")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a shared empty shard mapping is read-only")

    def __ior__(self, other: Any) -> _SharedEmpty:  # type: ignore[override,misc]
        raise TypeError("a shared empty shard mapping is read-only")


#: ``Shard.open`` of every shard with nothing open
NOTHING_OPEN: dict[str, Open] = _SharedEmpty()
#: ``Shard.timers`` of every shard waiting for nothing but its eviction
NO_TIMERS: dict[str, float] = _SharedEmpty()


def _nothing_open() -> dict[str, Open]:
    return NOTHING_OPEN


def _no_timers() -> dict[str, float]:
    return NO_TIMERS


def open_mapping(shard: Shard) -> dict[str, Open]:
    """The shard's own ``open`` dict, created on the first exception it holds."""
    if shard.open is NOTHING_OPEN:
        shard.open = {}
    return shard.open


class _Deadlines(Mapping[str, float]):
    """``Shard.deadlines``: the shard's timers and its eviction time seen as one mapping."""

    __slots__ = ("_shard",)

    def __init__(self, shard: Shard) -> None:
        self._shard = shard

    def __len__(self) -> int:
        return len(self._shard.timers) + (self._shard.evict_at is not None)

    def __iter__(self) -> Iterator[str]:
        yield from self._shard.timers
        if self._shard.evict_at is not None:
            yield EVICT

    def __getitem__(self, name: str) -> float:
        if name == EVICT and self._shard.evict_at is not None:
            return self._shard.evict_at
        return self._shard.timers[name]


@dataclass(slots=True)
class Shard:
    """What every shard has: its open exceptions, the ids already raised, and its deadlines."""

    key: str
    #: rule_id|subject -> the open exception; ``NOTHING_OPEN`` (shared) while there is none
    open: dict[str, Open] = field(default_factory=_nothing_open)
    #: exception_ids raised before (notifications and resolved ones): never raised again.
    #: None until the first one: most shards never have any, and an empty set is 216 bytes.
    done: set[str] | None = None
    #: deadline name -> due time, all but the eviction; the engine's heap indexes these.
    #: ``NO_TIMERS`` (shared) while there is none: at any time most shards wait only to be
    #: evicted, and a dict holding one entry is 184 bytes.
    timers: dict[str, float] = field(default_factory=_no_timers)
    #: when the engine next looks at forgetting the shard (``EVICT``; None before its first event)
    evict_at: float | None = None
    #: latest event time seen, for eviction after the retention period.
    last_at: float = 0.0
    #: events read ahead of the clock, waiting for it (live, event time): event_id -> the event
    #: (its JSON form when restored from the changelog)
    parked: dict[str, Any] | None = None
    #: v2: resolved exceptions, by exception_id, in the order they closed (a comment or a reopen
    #: must find them); None until the first
    closed: dict[str, Open] | None = None
    #: v2: command_id -> [exception_id, accepted, reason, status] of every command applied here,
    #: so a command read again gets the same reply and has no second effect; None until the first
    replies: dict[str, list[Any]] | None = None

    @property
    def deadlines(self) -> Mapping[str, float]:
        """Every pending deadline, the eviction included: a read-only view for readers (the
        metrics walk counts them for every shard, so nothing is copied). Schedule and cancel
        through the engine."""
        return _Deadlines(self)

    def deadline_dict(self) -> dict[str, float]:
        """The deadlines as a plain dict (the timers, then the eviction), as ``dl`` stores them."""
        dl = dict(self.timers)
        if self.evict_at is not None:
            dl[EVICT] = self.evict_at
        return dl

    def base_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"v": FORMAT_VERSION, "key": self.key, "at": self.last_at}
        # the deadlines right after: a start-up scan reads them without parsing the rest
        if self.timers or self.evict_at is not None:
            d["dl"] = self.deadline_dict()
        if self.parked:
            # dumped once: an event still waiting at the next write is not dumped again
            parked = self.parked
            for k, v in parked.items():
                if not isinstance(v, dict):
                    parked[k] = v.model_dump(mode="json")
            d["parked"] = dict(parked)
        if self.open:
            d["open"] = [o.to_dict() for o in self.open.values()]
        if self.done:
            d["done"] = sorted(self.done)
        if self.closed:
            d["closed"] = [o.to_dict() for o in self.closed.values()]
        if self.replies:
            d["replies"] = self.replies
        return d

    def load_base(self, d: dict[str, Any]) -> None:
        self.last_at = d.get("at", 0.0)
        for o in d.get("open", ()):
            op = Open.from_dict(o)
            open_mapping(self)[f"{op.rule_id}|{op.subject}"] = op
        self.done = set(d["done"]) if d.get("done") else None
        timers = dict(d.get("dl", {}))
        self.evict_at = timers.pop(EVICT, None)
        self.timers = timers or NO_TIMERS
        self.parked = d.get("parked") or None
        closed = [Open.from_dict(o) for o in d.get("closed", ())]
        self.closed = {o.exception_id: o for o in closed} or None
        self.replies = dict(d["replies"]) if d.get("replies") else None

    def to_dict(self) -> dict[str, Any]:
        return self.base_dict()


#: one tuple per distinct combination of an order's facts, shared by every order that has it
_SHARED_FACTS: dict[tuple[str | None, ...], tuple[str | None, ...]] = {}


def share_facts(facts: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """The shared copy of an order's facts: a few combinations (channel, carrier, province...)
    serve a million orders, each holding one reference. Beyond 100,000 combinations the rare
    ones keep their own."""
    shared = _SHARED_FACTS.get(facts)
    if shared is None:
        shared = facts
        if len(_SHARED_FACTS) < 100_000:
            _SHARED_FACTS[facts] = facts
    return shared


@dataclass(slots=True)
class Payment:
    amount: str | None = None
    currency: str | None = None
    event_id: str | None = None
    at: float | None = None
    #: fully refunded: its distinct refunds add up to its amount
    refunded: bool = False
    refund_event_id: str | None = None
    #: refund_id -> amount (decimal string); a re-callback of one refund_id counts once
    #: (None until the first refund: most payments never see one)
    refunds: dict[str, str] | None = None


@dataclass(slots=True)
class OrderShard(Shard):
    """Per order: what its rules need, and nothing of the customer beyond masked facts."""

    created_eid: str | None = None
    created_at: float | None = None
    total: str | None = None
    currency: str | None = None
    promised_by: float | None = None
    #: latest status by occurred_at, and when
    status: str | None = None
    status_at: float = 0.0
    status_eid: str | None = None
    #: earliest status at or beyond paid
    paid_status_at: float | None = None
    paid_status_eid: str | None = None
    #: cancelled/closed status, earliest occurrence
    cancelled_at: float | None = None
    cancelled_eid: str | None = None
    payments: dict[str, Payment] = field(default_factory=dict)
    failed_at: float | None = None
    failed_eid: str | None = None
    #: logistics.shipped (or status shipped or beyond), earliest
    shipped_at: float | None = None
    shipped_eid: str | None = None
    logi_shipped_at: float | None = None
    delivered_at: float | None = None
    last_logi_at: float | None = None
    last_logi_eid: str | None = None
    first_logi_at: float | None = None
    first_logi_eid: str | None = None
    #: occurred_at of the address the order now has (created or latest address_changed)
    address_at: float | None = None
    address_eid: str | None = None
    address_changed_at: float | None = None
    #: [at, event_id, kind, carrier, tracking_no] of the latest unreachable report (rarely set)
    unreachable: list[Any] | None = None
    #: [[at, status], ...] from the first cancel/close on (None for the orders never cancelled):
    #: what the status was when a payment succeeded, for payment.after_cancel
    status_log: list[Any] | None = None
    #: sku -> [warehouse_id, event_id, at] of an insufficient_stock failure not yet judged
    #: (None until the first: most orders never have one)
    short_stock: dict[str, list[Any]] | None = None
    #: the order's match fields for rule overrides (``engine.params.ORDER_FACTS``), one tuple
    #: shared by every order with the same values (None until the first is known)
    facts: tuple[str | None, ...] | None = None
    #: v2 (section 11): the customer of its ``order.created`` (the key of the customer shard that
    #: counts refunds and rejections), and ``[occurred_at, event_id, sent]`` of the first refund
    #: and the first rejected delivery read (None for nearly every order)
    customer_id: str | None = None
    first_refund: list[Any] | None = None
    first_reject: list[Any] | None = None
    #: v2 (section 11, ``engine/kpi.py``): the warehouse of its first ``inventory.reserved``, the
    #: carrier of its ``logistics.shipped``, and which indicators judged it (bits; None: none)
    warehouse_id: str | None = None
    carrier: str | None = None
    kpi_done: int | None = None
    #: v2 (section 11, ``engine/kpi.py``): per payment of the order (succeeded or failed, whose
    #: events all come here), four values in one flat tuple: payment_id, hour of its first
    #: event, method of its first event that has one, 1 if one succeeded: what the shard sent
    #: to that hour's KPI shard; None for an order without payment events. Must survive the
    #: compaction of a finished order for at least a day after the hour is published (hour +
    #: 1 h 1 min): without it a late callback of the payment would start it again in a new hour
    #: and count it twice. Small (four values a payment), so keeping it for the order's life
    #: is the simple rule.
    pay_kpi: tuple[Any, ...] | None = None

    _FIELDS = (
        "created_eid",
        "created_at",
        "total",
        "currency",
        "promised_by",
        "status",
        "status_at",
        "status_eid",
        "paid_status_at",
        "paid_status_eid",
        "cancelled_at",
        "cancelled_eid",
        "failed_at",
        "failed_eid",
        "shipped_at",
        "shipped_eid",
        "logi_shipped_at",
        "delivered_at",
        "last_logi_at",
        "last_logi_eid",
        "first_logi_at",
        "first_logi_eid",
        "address_at",
        "address_eid",
        "address_changed_at",
        "unreachable",
        "status_log",
        "facts",
        "customer_id",
        "first_refund",
        "first_reject",
        "warehouse_id",
        "carrier",
        "kpi_done",
    )

    @property
    def order_id(self) -> str:
        """A new string on every read (a slice of the key, not kept: 60 bytes per order).

        Hot handlers read it only when they raise or resolve something.
        """
        return self.key[len(ORDER) :]

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        if self.payments:
            d["payments"] = {
                pid: [
                    p.amount,
                    p.currency,
                    p.event_id,
                    p.at,
                    p.refunded,
                    p.refund_event_id,
                    p.refunds if p.refunds is not None else {},
                ]
                for pid, p in self.payments.items()
            }
        if self.short_stock:
            d["short_stock"] = self.short_stock
        if self.pay_kpi:
            d["pay_kpi"] = self.pay_kpi
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrderShard:
        shard = cls(d["key"])
        shard.load_base(d)
        for name in cls._FIELDS:
            if name in d:
                setattr(shard, name, d[name])
        shard.payments = {pid: Payment(*p) for pid, p in d.get("payments", {}).items()}
        shard.short_stock = d.get("short_stock") or None
        if d.get("pay_kpi"):
            shard.pay_kpi = tuple(d["pay_kpi"])
        if shard.facts is not None:
            shard.facts = share_facts(tuple(shard.facts))
        _intern_loaded(shard)
        return shard


#: the order's strings that take a few values across every order (statuses, currencies,
#: carriers, warehouses): read back from JSON each is a new string of 50-60 bytes per order
_REPEATED = ("status", "currency", "carrier", "warehouse_id", "total")


def _intern_loaded(shard: OrderShard) -> None:
    """Share the repeated strings of an order read from the store (lossless: equal strings),
    as the engine shares them in the orders it builds (amounts interned, ``orders.compact``)."""
    for name in _REPEATED:
        value = getattr(shard, name)
        if type(value) is str:
            setattr(shard, name, sys.intern(value))
    for p in shard.payments.values():
        if type(p.amount) is str:
            p.amount = sys.intern(p.amount)
        if type(p.currency) is str:
            p.currency = sys.intern(p.currency)


@dataclass(slots=True)
class StockShard(Shard):
    """Per sku and warehouse: the latest snapshot of each source, for sync drift."""

    #: source -> [available, at, event_id]
    latest: dict[str, list[Any]] = field(default_factory=dict)
    drift_since: float | None = None
    drift_eids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["latest"] = self.latest
        if self.drift_since is not None:
            d["drift_since"] = self.drift_since
            d["drift_eids"] = self.drift_eids
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StockShard:
        shard = cls(d["key"])
        shard.load_base(d)
        shard.latest = d.get("latest", {})
        shard.drift_since = d.get("drift_since")
        shard.drift_eids = d.get("drift_eids", [])
        return shard


#: ``(at, order_id, customer_id, event_id)`` of one order in a fraud window
WindowEntry = tuple[float, str, str, str]


@dataclass(slots=True)
class WindowShard(Shard):
    """A sliding event-time window of orders sharing an address, a phone or a customer.

    ``entries`` holds ``(at, order_id, customer_id, event_id)`` in time order, pruned to what a
    window could still use. Each order is raised once through the lifecycle's ``done`` ids.
    """

    #: tuples, not lists: smaller, and the collector stops tracking them (lists on the wire)
    entries: tuple[WindowEntry, ...] = ()
    #: v2 (customer shards, section 11): rule_id -> ``[at, order_id, event_id]`` of each order's
    #: first refund or rejection, in time order (``engine/behaviour.py``); None for most customers
    marks: dict[str, list[list[Any]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["entries"] = [list(e) for e in self.entries]
        if self.marks:
            d["marks"] = self.marks
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowShard:
        shard = cls(d["key"])
        shard.load_base(d)
        shard.entries = tuple(tuple(e) for e in d.get("entries", ()))
        shard.marks = d.get("marks") or None
        return shard


@dataclass(slots=True)
class RateShard(Shard):
    """Tumbling event-time windows for payment success rate and order creation failures.

    ``payments``: window start -> [succeeded payment_ids, failed payment_ids];
    ``failures``: window start -> creation_failed event_ids; ``closed_until`` drops late events
    for windows already judged, so a straggler cannot re-open one.
    """

    payments: dict[float, list[set[str]]] = field(default_factory=dict)
    failures: dict[float, set[str]] = field(default_factory=dict)
    pay_closed_until: float = float("-inf")
    fail_closed_until: float = float("-inf")

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["payments"] = [[k, sorted(v[0]), sorted(v[1])] for k, v in self.payments.items()]
        d["failures"] = [[k, sorted(v)] for k, v in self.failures.items()]
        d["pay_closed_until"] = self.pay_closed_until if self.pay_closed_until > -1e300 else None
        d["fail_closed_until"] = self.fail_closed_until if self.fail_closed_until > -1e300 else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RateShard:
        shard = cls(d["key"])
        shard.load_base(d)
        shard.payments = {k: [set(s), set(f)] for k, s, f in d.get("payments", [])}
        shard.failures = {k: set(v) for k, v in d.get("failures", [])}
        pcu, fcu = d.get("pay_closed_until"), d.get("fail_closed_until")
        shard.pay_closed_until = float("-inf") if pcu is None else pcu
        shard.fail_closed_until = float("-inf") if fcu is None else fcu
        return shard


@dataclass(slots=True)
class ActionShard(Shard):
    """What the remediation actions of a type share (``engine/actions.py``): small and bounded
    whatever the number of actions (each action's record is in its order's ``ActionRecords``).

    ``requested``: type -> times it reached ``requested`` in the last hour (at most the type's
    ``max_per_hour``); ``results``: type -> the last 20 results (1 = failed); ``paused_until``:
    type -> the end of its breaker pause.
    """

    requested: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, list[int]] = field(default_factory=dict)
    paused_until: dict[str, float] = field(default_factory=dict)
    #: the earlier layout's every action (action_id -> record) and holds (order_id ->
    #: exception_id -> [action_id, still]), read from a shard written before the records moved
    #: to their orders: moved there by the next step of this shard (``actions.migrate``)
    legacy: dict[str, Any] | None = None

    _FIELDS = ("requested", "results", "paused_until")

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        for name in self._FIELDS:
            d[name] = getattr(self, name)
        if self.legacy is not None:
            d["actions"] = self.legacy["actions"]
            d["holds"] = self.legacy["holds"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionShard:
        shard = cls(d["key"])
        shard.load_base(d)
        for name in cls._FIELDS:
            setattr(shard, name, dict(d.get(name, {})))
        if d.get("actions") or d.get("holds"):
            shard.legacy = {"actions": dict(d.get("actions", {})), "holds": d.get("holds", {})}
        return shard


#: v2: the action records of one order, ``g:actions/<order_id>``: kept by the engine that owns
#: ``g:actions`` (its partition), never routed to by the shell (``home_key``)
ACTION_RECORDS = ACTIONS + "/"


def home_key(key: str) -> str:
    """The shard key whose partition holds ``key``: its own, except an order's action records,
    which live beside ``g:actions`` (the one engine that reads and writes them)."""
    return ACTIONS if key.startswith(ACTION_RECORDS) else key


@dataclass(slots=True)
class ActionRecords(Shard):
    """One order's remediation actions (``engine/actions.py``), beside ``g:actions``.

    ``actions``: action_id -> its record (the fields of its events, its status, and what only
    the engine needs: limits, the blacklist value of a ``blacklist.suggest``, the approver);
    ``holds``: exception_id -> [its hold's action_id, still holding]. Forgotten like any shard
    after the retention period once nothing is pending (an expiry timer keeps it).
    """

    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    holds: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["actions"] = self.actions
        if self.holds:
            d["holds"] = self.holds
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionRecords:
        shard = cls(d["key"])
        shard.load_base(d)
        shard.actions = dict(d.get("actions", {}))
        shard.holds = dict(d.get("holds", {}))
        return shard


@dataclass(slots=True)
class KpiShard(Shard):
    """The indicators of one hour being counted, ``g:kpis/<start>`` (``engine/kpi.py``):
    ``windows``: kpi -> item (order_id, payment_id) -> [dimension value, hit]; ``closed_until``:
    per kpi, the end of the hour once published (then ``windows`` is empty).

    The earlier layout, one ``g:kpis`` for every hour, read from a changelog until migrated:
    ``windows``: "kpi|start" -> item -> [dimension value, hit]; ``payments``: payment_id ->
    [start, method, ok] (and ``True`` once its hour was published). Empty in an hour's shard."""

    windows: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    payments: dict[str, list[Any]] = field(default_factory=dict)
    closed_until: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["windows"] = self.windows
        if self.payments:
            d["payments"] = self.payments
        d["closed_until"] = self.closed_until
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KpiShard:
        shard = cls(d["key"])
        shard.load_base(d)
        shard.windows = dict(d.get("windows", {}))
        shard.payments = dict(d.get("payments", {}))
        shard.closed_until = dict(d.get("closed_until", {}))
        if shard.key == KPIS and (shard.windows or shard.payments):
            # the earlier layout: migrated by the first sweep that reaches it (``kpi.migrate``)
            shard.timers = {**shard.timers, KPI_MIGRATE: shard.last_at}
        return shard


_KINDS: dict[str, type[Shard]] = {
    ORDER: OrderShard,
    STOCK: StockShard,
    ADDRESS: WindowShard,
    PHONE: WindowShard,
    CUSTOMER: WindowShard,
    FAILURE: Shard,
}


def new_shard(key: str) -> Shard:
    """An empty shard of the kind the key's prefix names."""
    if key == GLOBAL:
        return RateShard(key)
    if key == ACTIONS:
        return ActionShard(key)
    if key == KPIS or key.startswith(KPI_HOUR):
        return KpiShard(key)
    if key.startswith(ACTION_RECORDS):
        return ActionRecords(key)
    return _KINDS[key[:2]](key)


def format_version(d: Any) -> int:
    """The format version of a serialized shard (1 when it predates the field)."""
    if not isinstance(d, dict) or not isinstance(d.get("key"), str):
        raise StateFormatError("not a serialized shard")
    version = d.get("v", 1)
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise StateFormatError(
            f"shard {d['key']!r} has format version {version!r}; "
            f"this engine reads 1..{FORMAT_VERSION}"
        )
    return version


def shard_from_dict(d: dict[str, Any]) -> Shard:
    """Rebuild a shard from its serialized form (a changelog value); refuses a format version
    it does not know (``StateFormatError``)."""
    format_version(d)
    key: str = d["key"]
    kind: type[Shard] | None = (
        RateShard
        if key == GLOBAL
        else ActionShard
        if key == ACTIONS
        else KpiShard
        if key == KPIS or key.startswith(KPI_HOUR)
        else ActionRecords
        if key.startswith(ACTION_RECORDS)
        else _KINDS.get(key[:2])
    )
    if kind is None:
        raise StateFormatError(f"unknown shard kind of key {key!r}")
    if kind is Shard:
        shard = Shard(key)
        shard.load_base(d)
        return shard
    return kind.from_dict(d)  # type: ignore[attr-defined,no-any-return]
