"""Synthetic order traffic with anomalies injected on purpose, for demos, tests and benchmarks.

Healthy lifecycles are timed inside every default threshold of the rule catalog (CONTRACT
section 5), so an exception on a subject that is not in the manifest is a false positive: of the
detector, or of this generator. Each injected anomaly records the (rule_id, subject) pairs it must
produce, including the ones the contract implies as a side effect (a payment for a cancelled
order is also a paid order whose status never reaches ``paid``).

Events come out in event-time order because replay's clock is the largest ``occurred_at`` read so
far: one event from the future would make every deadline before it pass early. Each order's
lifecycle is a generator advanced lazily through a heap, so a simulated day of a million events
holds one suspended frame per order in flight, not every event of the day.

Randomness comes from one seeded ``random.Random`` consumed in heap order, which is itself
deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from orderwatch.engine.catalog import CONTRACT_RULES
from orderwatch.engine.lifecycle import iso

Event = dict[str, Any]
Step = tuple[float, Event]
Life = Generator[Step, None, Any]

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
#: The default tumbling window of the two rate rules, epoch-aligned like the engine's.
WINDOW = 5 * MINUTE
#: 2026-11-20T00:00:00Z: a fixed default, so a seed alone decides the output.
DEFAULT_START = 1_795_132_800.0
SNAPSHOT_EVERY = 30 * MINUTE
WAREHOUSES = ("WH-SH", "WH-SZ", "WH-HK")

#: Marks the event whose deadline a timeout anomaly hinges on (value: the deadline, sim time).
_DUE = "\x00due"
#: Demo only: ``occurred_at`` is the emitter's clock minus this many seconds.
AGO = "\x00ago"

TOPICS: dict[str, str] = {
    "order": "orders",
    "payment": "payment-callbacks",
    "inventory": "inventory",
    "logistics": "logistics",
    "blacklist": "blacklist",
}

# --- the world: regions, carriers, keywords ----------------------------------------------------

#: province, city, district, postcode, warehouse
_CN_REGIONS = (
    ("上海", "上海", "黄浦区", "200001", "WH-SH"),
    ("Shanghai", "Shanghai", "Pudong", "200120", "WH-SH"),
    ("北京", "北京", "朝阳区", "100020", "WH-SH"),
    ("广东", "深圳", "南山区", "518057", "WH-SZ"),
    ("广东", "广州", "天河区", "510620", "WH-SZ"),
    ("浙江", "杭州", "西湖区", "310012", "WH-SH"),
    ("四川", "成都", "武侯区", "610041", "WH-SZ"),
    ("江苏", "南京", "鼓楼区", "210008", "WH-SH"),
)
_CN_ROADS = ("南京东路", "中山路", "人民路", "科技园南路", "建国路", "解放大道")
_CN_MOBILE = ("138", "139", "150", "186", "177", "199", "135", "158", "181", "166")
_CN_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇")
#: country, province, city, postcode, calling code, area code, street pattern, currency
_INTL = (
    ("US", "CA", "San Francisco", "94103", "1", "415", "{n} Market Street Apt {m}", "USD"),
    ("DE", "Berlin", "Berlin", "10119", "49", "30", "Torstraße {n}, Wohnung {m}", "EUR"),
    ("GB", "England", "London", "NW1 6XE", "44", "20", "{n} Baker Street, Flat {m}", "GBP"),
    ("JP", "Tokyo", "Shibuya", "150-0002", "81", "3", "Jingumae {n}-{m}", "JPY"),
    ("SG", "Singapore", "Singapore", "018956", "65", "6", "{n} Marina Boulevard #{m}", "SGD"),
    ("FR", "Île-de-France", "Paris", "75011", "33", "1", "{n} Rue Oberkampf, Apt {m}", "EUR"),
)
_INTL_NAMES = ("Alex Smith", "Maria Garcia", "Jonas Weber", "Yuki Tanaka", "Chloé Martin")
_CN_CARRIERS = (("carrier-sf", "SF"), ("carrier-zto", "ZTO"), ("carrier-yto", "YT"))
_INTL_CARRIERS = (("carrier-dhl", "DHL"), ("carrier-ups", "1Z"), ("carrier-fedex", "FX"))
_CN_HUBS = (
    "上海转运中心",
    "杭州分拨中心",
    "深圳宝安集散中心",
    "广州白云转运中心",
    "北京顺义分拨中心",
)
_INTL_HUBS = ("Hong Kong Gateway", "Leipzig Hub", "Cincinnati Hub", "Narita Hub", "Paris CDG")
_METHODS = ("alipay", "wechat_pay", "unionpay", "card")
_FAIL_REASONS = ("insufficient_funds", "limit_exceeded", "wrong_password", "network_error")
#: Healthy remarks: none contains an attention keyword of ``customer.remark_attention``.
_REMARKS = ("请放快递柜", "周末送货", "Leave at the front desk", "请轻拿轻放", "Gift wrap please")
#: One attention keyword per remark, so the rule has exactly one reason to fire.
_ATTENTION = (
    "请开发票，抬头公司",
    "加急，明天要用",
    "Urgent: birthday gift",
    "Please add an invoice",
)
_PRICES = (990, 1990, 2990, 4900, 9900, 19900, 29900, 59900, 129900)
#: Relative order volume per hour of day in China (UTC+8): quiet nights, lunch and evening peaks.
_HOURLY = (3, 2, 1, 1, 1, 1, 2, 4, 6, 8, 10, 11, 10, 9, 9, 9, 9, 9, 10, 12, 14, 14, 11, 6)
#: Offset of identities made for one anomaly, so they never collide with the customer pool.
_FRESH = 5_000_000


def _stamp(t: float, east8: bool = False) -> str:
    """RFC 3339 with milliseconds; Chinese systems write ``+08:00``, carriers and others ``Z``."""
    sec, milli = divmod(round(t * 1000), 1000)
    if east8:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec + 28800)) + f".{milli:03d}+08:00"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{milli:03d}Z"


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def window_start(t: float, size: float = WINDOW) -> float:
    return math.floor(t / size) * size


# --- configuration and manifest ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to generate. ``anomalies`` (exact count) wins over ``anomaly_rate`` when given."""

    seed: int = 1
    orders: int = 1000
    start: float = DEFAULT_START
    duration: float = DAY
    anomaly_rate: float = 0.02
    anomalies: int | None = None
    #: rule_id -> weight; None means every rule of the contract, equally.
    mix: Mapping[str, float] | None = None
    demo: bool = False
    #: demo: injected deadlines pass this many seconds after their trigger is emitted.
    demo_lead: float = 5.0


@dataclass(frozen=True, slots=True, order=True)
class Expected:
    """One exception an injected anomaly must produce; ``cause`` is the rule that was injected."""

    rule_id: str
    subject: str
    cause: str


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``rule[=weight],...`` (a rule_id prefix such as ``payment.`` selects a family)."""
    if not text:
        return None
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        rules = [
            r for r in CONTRACT_RULES if r == name or (name.endswith(".") and r.startswith(name))
        ]
        if not rules:
            raise ValueError(f"unknown rule in mix: {name!r}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"not a weight: {weight!r}") from None
        if w < 0:
            raise ValueError(f"negative weight for {name!r}")
        for rule in rules:
            mix[rule] = w
    return mix


# --- people ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Customer:
    customer_id: str
    account_created_at: float
    phone: str
    email: str
    address: dict[str, str]
    cn: bool
    currency: str
    warehouse: str


def _phone(i: int, cn: bool, intl: tuple[str, ...]) -> str:
    """A valid phone unique to ``i``: 7919 is prime to 10**8, so the digits never repeat."""
    digits = f"{(i * 7919 + 12_345_678) % 100_000_000:08d}"
    if cn:
        prefix = _CN_MOBILE[i % len(_CN_MOBILE)]
        style = i % 3
        if style == 0:
            return prefix + digits
        if style == 1:
            return f"+86 {prefix} {digits[:4]} {digits[4:]}"
        return f"{prefix}-{digits[:4]}-{digits[4:]}"
    return f"+{intl[4]} {intl[5]} {digits[:4]} {digits[4:]}"


def _address(i: int, cn: bool, intl: tuple[str, ...], phone: str, name: str) -> dict[str, str]:
    """A valid address unique to ``i`` (the street number and the room together encode it)."""
    n, m = i % 900 + 1, i // 900 + 1
    if cn:
        province, city, district, postal, _ = _CN_REGIONS[i % len(_CN_REGIONS)]
        addr = {
            "name": name,
            "phone": phone,
            "country": "CN",
            "province": province,
            "city": city,
            "district": district,
            "line1": f"{_CN_ROADS[i % len(_CN_ROADS)]}{n}号{m}室",
        }
        if i % 5:
            addr["postal_code"] = postal
        return addr
    return {
        "name": name,
        "phone": phone,
        "country": intl[0],
        "province": intl[1],
        "city": intl[2],
        "line1": intl[6].format(n=n, m=m),
        "postal_code": intl[3],
    }


def _identity(i: int, account_created_at: float) -> _Customer:
    cn = i % 7 != 3  # about 85 % of customers ship inside China
    intl = _INTL[i % len(_INTL)]
    phone = _phone(i, cn, intl)
    name = _CN_NAMES[i % len(_CN_NAMES)] if cn else _INTL_NAMES[i % len(_INTL_NAMES)]
    warehouse = _CN_REGIONS[i % len(_CN_REGIONS)][4] if cn else "WH-HK"
    return _Customer(
        customer_id=f"C{i:08d}",
        account_created_at=account_created_at,
        phone=phone,
        email=f"user{i}@example.com",
        address=_address(i, cn, intl, phone, name),
        cn=cn,
        currency="CNY" if cn else intl[7],
        warehouse=warehouse,
    )


@dataclass(slots=True)
class _Order:
    """One order to simulate: who, when, what, and which anomaly (``twist``) it carries."""

    n: int
    order_id: str
    at: float
    customer: _Customer
    address: dict[str, str]
    items: list[tuple[str, int, int]]  # sku, quantity, unit price in cents
    twist: str | None = None
    variant: int = 0
    remark: str | None = None
    promise: bool = False
    fail_first: bool = False
    cancel: str | None = None  # "unpaid", "paid" or None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(q * p for _, q, p in self.items)


# --- the simulator -----------------------------------------------------------------------------


class Simulator:
    """Plans a run up front (arrivals, anomalies, outages), then yields its events lazily."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.expected: list[Expected] = []
        self.outages: set[float] = set()
        self.events_emitted = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._eid = itertools.count(1)
        self._order_no = itertools.count(1)
        self._fresh = itertools.count(_FRESH)
        self._pool: dict[int, _Customer] = {}
        self._pool_size = max(20, config.orders // 3)
        n_skus = min(400, max(5, config.orders // 20))
        self.skus = [f"SKU-{i:05d}" for i in range(1, n_skus + 1)]
        self.prices = [self.rng.choice(_PRICES) for _ in self.skus]
        self.stock = {(s, w): self.rng.randint(300, 3000) for s in self.skus for w in WAREHOUSES}
        self.rounds = max(3, math.ceil(config.duration / SNAPSHOT_EVERY))
        #: (sku, warehouse, round) -> how far erp is off in that round
        self.drifts: dict[tuple[str, str, int], int] = {}
        self._arrivals: list[tuple[float, int, Callable[[], Iterator[Step]]]] = []
        self._plan()

    # --- planning --------------------------------------------------------------------------

    def _arrive(self, at: float, make: Callable[[], Iterator[Step]]) -> None:
        self._arrivals.append((at, len(self._arrivals), make))

    def _arrival_time(self) -> float:
        """Rejection-sample the hour-of-day profile (in China time) over the run."""
        cfg, r = self.cfg, self.rng
        peak = max(_HOURLY)
        while True:
            t = cfg.start + r.random() * cfg.duration
            hour = int(((t + 8 * HOUR) % DAY) // HOUR)
            if r.random() * peak < _HOURLY[hour]:
                return t

    def _plan(self) -> None:
        cfg, r = self.cfg, self.rng
        self._arrive(cfg.start, self._snapshots)
        self._arrive(cfg.start, self._blacklist_noise)
        for rule_id, at in self._anomaly_plan():
            self._inject(rule_id, at)
        for _ in range(cfg.orders):
            at = self._arrival_time()
            if r.random() < 0.08:  # a brand-new account placing its first order
                c = _identity(next(self._fresh), at - r.uniform(HOUR, 6 * DAY))
            else:
                c = self._pool_customer(r.randrange(self._pool_size))
            o = self._new_order(at, c)
            self._arrive(at, partial(self._order, o))

    def _anomaly_plan(self) -> list[tuple[str, float]]:
        cfg, r = self.cfg, self.rng
        mix = dict(cfg.mix) if cfg.mix is not None else dict.fromkeys(CONTRACT_RULES, 1.0)
        mix = {k: v for k, v in mix.items() if v > 0}
        count = cfg.anomalies if cfg.anomalies is not None else round(cfg.orders * cfg.anomaly_rate)
        if not mix or count <= 0:
            return []
        # smooth weighted round-robin: every rule of the mix appears once count allows it
        total = sum(mix.values())
        credit = dict.fromkeys(mix, 0.0)
        rules = []
        for _ in range(count):
            for k in credit:
                credit[k] += mix[k]
            pick = max(credit, key=lambda k: (credit[k], k))
            credit[pick] -= total
            rules.append(pick)
        r.shuffle(rules)
        return [(rule, cfg.start + r.uniform(0.05, 0.9) * cfg.duration) for rule in rules]

    def _pool_customer(self, i: int) -> _Customer:
        c = self._pool.get(i)
        if c is None:
            age = (30 + (i * 37) % 900) * DAY
            c = self._pool[i] = _identity(i, self.cfg.start - age)
        return c

    def _fresh_customer(
        self, at: float, new_account: bool = False, cn: bool | None = None
    ) -> _Customer:
        """A customer made for one anomaly; ``cn`` pins the country so phones stay valid."""
        age = self.rng.uniform(HOUR, 3 * DAY) if new_account else self.rng.uniform(60, 900) * DAY
        while True:
            c = _identity(next(self._fresh), at - age)
            if cn is None or c.cn == cn:
                return c

    def _new_order(self, at: float, c: _Customer, **kw: Any) -> _Order:
        r = self.rng
        n = next(self._order_no)
        lines = 1 if r.random() < 0.6 else (2 if r.random() < 0.75 else 3)
        items = []
        for idx in sorted({int(len(self.skus) * r.random() ** 2) for _ in range(lines)}):
            qty = 1 if r.random() < 0.8 else r.randint(2, 5)
            items.append((self.skus[idx], qty, self.prices[idx]))
        order = _Order(
            n=n,
            order_id=f"SO{self.cfg.seed % 10000:04d}{n:08d}",
            at=at,
            customer=c,
            address=c.address,
            items=items,
            remark=r.choice(_REMARKS) if r.random() < 0.1 else None,
            promise=r.random() < 0.3,
            fail_first=n % 20 == 7,  # evenly spread: no 5-minute window ever looks like an outage
        )
        if order.fail_first and r.random() < 0.3:
            order.cancel = "unpaid"  # the customer gives up after a declined card
        elif r.random() < 0.03:
            order.cancel = r.choice(("unpaid", "paid"))
        for k, v in kw.items():
            setattr(order, k, v)
        return order

    def _expect(self, rule_id: str, subject: str, cause: str | None = None) -> None:
        self.expected.append(Expected(rule_id, subject, cause or rule_id))

    def _inject(self, rule: str, at: float) -> None:
        """Plan one anomaly of ``rule`` at sim time ``at`` and what it must produce."""
        r = self.rng
        demo = self.cfg.demo
        fresh = self._fresh_customer
        if rule == "payment.success_rate_drop":
            self._inject_outage(at)
            return
        if rule == "order.creation_failure_spike":
            w = window_start(at)
            self._expect(rule, iso(w))
            self._arrive(w + 5, lambda: self._creation_failures(w + 5, 12, rule))
            return
        if rule == "order.creation_failed":
            self._arrive(at, lambda: self._creation_failures(at, 1, rule))
            return
        if rule == "inventory.sync_drift":
            self._inject_drift(at)
            return
        if rule == "logistics.orphan":
            oid = f"EXT{next(self._order_no):09d}"
            self._expect(rule, oid)
            self._arrive(at, self._wrap(lambda: self._stray_scan(oid, at)))
            return
        if rule in ("fraud.address_cluster", "fraud.shared_phone", "fraud.new_account_burst"):
            self._inject_group(rule, at)
            return
        if rule in ("fraud.frequent_refunds", "logistics.repeated_rejections"):
            self._inject_behaviour(rule, at)
            return
        c = fresh(at)
        o = self._new_order(at, c, twist=rule, variant=r.randrange(4), cancel=None)
        o.fail_first = False
        o.promise = rule == "logistics.delivery_delayed" and o.variant % 2 == 1 and not demo
        if rule in ("payment.after_cancel", "payment.orphan"):
            self._expect("payment.paid_not_updated", o.order_id, rule)
        elif rule == "customer.remark_attention":
            o.remark = r.choice(_ATTENTION)
        elif rule == "fraud.abnormal_quantity":
            sku, _, price = o.items[0]
            o.items[0] = (sku, r.randint(25, 120), price)
        elif rule == "fraud.blacklisted":
            kind = ("customer_id", "phone", "address")[o.variant % 3]
            o.extra["blacklist"] = kind
        elif rule == "customer.invalid_address":
            o.address = self._broken_address(c.address, o.variant)
        elif rule == "customer.invalid_phone":
            o.address = {**c.address, "phone": self._broken_phone(c, o.variant)}
        self._expect(rule, o.order_id)
        start = at - HOUR if rule == "fraud.blacklisted" else at
        self._arrive(start, self._wrap(lambda: self._twisted(o)))

    def _inject_outage(self, at: float) -> None:
        """A gateway outage: every attempt in one window fails, and 25 orders try in it."""
        rule = "payment.success_rate_drop"
        r = self.rng
        if self.cfg.demo:
            self._expect(rule, "<the window at emission>")
            self._arrive(at, lambda: self._demo_outage(at))
            return
        w = window_start(at)
        while w in self.outages:
            w += 2 * WINDOW
        self.outages.add(w)
        self._expect(rule, iso(w))
        for _ in range(25):
            t = w - r.uniform(30, 240)
            o = self._new_order(t, self._fresh_customer(t), cancel=None)
            o.fail_first = False
            o.extra["pay_at"] = w + r.uniform(5, WINDOW - 20)
            self._arrive(t, partial(self._order, o))

    def _inject_drift(self, at: float) -> None:
        rule = "inventory.sync_drift"
        r = self.rng
        if self.cfg.demo:
            sku, wh = f"SKU-DRIFT-{next(self._order_no):06d}", r.choice(WAREHOUSES)
            self._expect(rule, f"{sku}/{wh}")
            self._arrive(at, self._wrap(lambda: self._drift_burst(sku, wh, at)))
            return
        sku, wh = r.choice(self.skus), r.choice(WAREHOUSES)
        rnd = r.randrange(self.rounds - 1)
        self.drifts[(sku, wh, rnd)] = r.randint(25, 60)  # percent off, far beyond max(5, 10 %)
        self._expect(rule, f"{sku}/{wh}")

    def _inject_group(self, rule: str, at: float) -> None:
        r = self.rng
        orders: list[_Order] = []
        if rule == "fraud.address_cluster":
            # five orders from three accounts to one drop address within a few hours
            people = [self._fresh_customer(at, cn=True) for _ in range(3)]
            drop = self._fresh_customer(at, cn=True).address
            for k, c in enumerate([*people, people[0], people[1]]):
                t = at + k * r.uniform(10, 50) * MINUTE
                addr = {**drop, "name": c.address["name"], "phone": c.phone}
                orders.append(self._new_order(t, c, address=addr))
        elif rule == "fraud.shared_phone":
            phone = self._fresh_customer(at, cn=True).phone
            for k in range(3):
                t = at + k * r.uniform(20, 120) * MINUTE
                c = self._fresh_customer(t, cn=True)
                orders.append(self._new_order(t, c, address={**c.address, "phone": phone}))
        else:  # new_account_burst: a young account places five orders within the hour
            c = self._fresh_customer(at, new_account=True)
            for k in range(5):
                orders.append(self._new_order(at + k * r.uniform(5, 11) * MINUTE, c))
        for o in orders:
            o.cancel, o.fail_first = None, False
            self._expect(rule, o.order_id)
            self._arrive(o.at, partial(self._order, o))

    def _inject_behaviour(self, rule: str, at: float) -> None:
        """v2 (section 11): one customer's orders refunded (cancelled after payment) three times
        in a day and a half, or two deliveries rejected eight days apart; spaced so that the
        order judged last (by the time of its refund or rejection) is the last one placed."""
        r = self.rng
        c = self._fresh_customer(at, cn=True)
        refunds = rule == "fraud.frequent_refunds"
        count, gap = (3, 12 * HOUR) if refunds else (2, 8 * DAY)
        for k in range(count):
            t = at + k * gap
            if refunds:
                o = self._new_order(t, c, cancel="paid")
            else:
                o = self._new_order(t, c, twist="logistics.rejected", variant=r.randrange(4))
                o.cancel = None
                self._expect("logistics.rejected", o.order_id, rule)
            o.fail_first, o.promise = False, False
            if k == count - 1:
                self._expect(rule, o.order_id)
            self._arrive(o.at, partial(self._order, o))

    @staticmethod
    def _broken_address(addr: dict[str, str], variant: int) -> dict[str, str]:
        broken = dict(addr)
        if variant % 3 == 0:
            broken["line1"] = broken["line1"][:3]  # "中山路" / "12 " : too short to deliver
        elif variant % 3 == 1:
            broken["city"] = " "
        elif addr["country"] == "CN":
            broken["postal_code"] = "2000"
        else:
            broken.pop("province")
        return broken

    @staticmethod
    def _broken_phone(c: _Customer, variant: int) -> str:
        digits = "".join(ch for ch in c.phone if ch.isdigit())
        if c.cn:
            return ("12" + digits[-9:]) if variant % 2 else digits[-10:]  # bad prefix / 10 digits
        return digits  # E.164 without the "+"

    # --- the event stream ----------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Every event of the run in event-time order (demo events carry ``AGO``)."""
        heap: list[tuple[float, int, Event, Iterator[Step]]] = []
        seq = itertools.count()
        arrivals = sorted(self._arrivals, key=lambda a: (a[0], a[1]))
        self._arrivals = []
        i, n = 0, len(arrivals)
        push = heapq.heappush
        while True:
            if i < n and (not heap or arrivals[i][0] <= heap[0][0]):
                life = arrivals[i][2]()
                i += 1
                step = next(life, None)
                if step is not None:
                    push(heap, (step[0], next(seq), step[1], life))
                continue
            if not heap:
                break
            t, _, ev, life = heapq.heappop(heap)
            if self.first_at is None:
                self.first_at = t
            self.last_at = t
            self.events_emitted += 1
            yield ev
            step = next(life, None)
            if step is not None:
                push(heap, (step[0], next(seq), step[1], life))

    def manifest(self) -> dict[str, Any]:
        """What the run must produce; valid once ``events()`` is exhausted.

        ``until`` is the clock to replay to: a week past the last event lets every injected
        deadline pass, and healthy lifecycles end with nothing pending, so it adds nothing else.
        """
        end = self.last_at if self.last_at is not None else self.cfg.start
        return {
            "seed": self.cfg.seed,
            "orders": self.cfg.orders,
            "events": self.events_emitted,
            "demo": self.cfg.demo,
            "start": iso(self.first_at if self.first_at is not None else self.cfg.start),
            "end": iso(end),
            "until": iso(end + 8 * DAY),
            "expected": [
                {"rule_id": e.rule_id, "subject": e.subject, "cause": e.cause}
                for e in sorted(set(self.expected))
            ],
        }

    # --- event builders ------------------------------------------------------------------

    def _ev(self, type_: str, t: float, source: str, east8: bool, **fields: Any) -> Event:
        return {
            "event_id": f"evt-{self.cfg.seed}-{next(self._eid):09d}",
            "type": type_,
            "occurred_at": _stamp(t, east8),
            "source": source,
            **fields,
        }

    def _status(self, o: _Order, t: float, status: str, previous: str | None) -> Step:
        fields: dict[str, Any] = {"order_id": o.order_id, "status": status}
        if previous is not None:
            fields["previous_status"] = previous
        return t, self._ev("order.status_changed", t, "oms", o.customer.cn, **fields)

    def _created(self, o: _Order, t: float, promised_by: float | None) -> Step:
        c = o.customer
        customer = {
            "customer_id": c.customer_id,
            "account_created_at": _stamp(c.account_created_at),
            "phone": c.phone,
            "email": c.email,
        }
        ev = self._ev(
            "order.created",
            t,
            "oms",
            c.cn,
            order_id=o.order_id,
            customer=customer,
            shipping_address=o.address,
            items=[{"sku": s, "quantity": q, "unit_price": _money(p)} for s, q, p in o.items],
            total_amount=_money(o.total),
            currency=c.currency,
            channel="app" if o.n % 3 else "web",
        )
        if o.remark:
            ev["remark"] = o.remark
        if promised_by is not None:
            ev["promised_delivery_by"] = _stamp(promised_by, c.cn)
        return t, ev

    def _payment(
        self, o: _Order, t: float, ok: bool, pid: str, cents: int | None = None, cur: str = ""
    ) -> Step:
        c = o.customer
        fields: dict[str, Any] = {
            "order_id": o.order_id,
            "payment_id": pid,
            "amount": _money(o.total if cents is None else cents),
            "currency": cur or c.currency,
        }
        if ok:
            fields["method"] = _METHODS[o.n % len(_METHODS)] if c.cn else "card"
            return t, self._ev("payment.succeeded", t, "pay-gateway", c.cn, **fields)
        fields["reason_code"] = _FAIL_REASONS[o.n % len(_FAIL_REASONS)]
        return t, self._ev("payment.failed", t, "pay-gateway", c.cn, **fields)

    def _refund(self, o: _Order, t: float, pid: str) -> Step:
        fields = {
            "order_id": o.order_id,
            "payment_id": pid,
            "refund_id": f"RF{pid[3:]}",
            "amount": _money(o.total),
            "currency": o.customer.currency,
        }
        return t, self._ev("payment.refunded", t, "pay-gateway", o.customer.cn, **fields)

    def _stock_ev(self, o: _Order, t: float, type_: str, sku: str, qty: int, **kw: Any) -> Step:
        fields = {"sku": sku, "warehouse_id": o.customer.warehouse, "quantity": qty, **kw}
        return t, self._ev(type_, t, "wms", False, order_id=o.order_id, **fields)

    def _take(self, o: _Order, sku: str, qty: int) -> int:
        """Reserve stock; the warehouse restocks before a line would go below zero."""
        key = (sku, o.customer.warehouse)
        if self.stock[key] < qty + 10:
            self.stock[key] += 1000 + qty
        self.stock[key] -= qty
        return self.stock[key]

    def _logi(self, o: _Order, t: float, what: str, tracking: str, **kw: Any) -> Step:
        carrier = o.extra["carrier"]
        return t, self._ev(
            f"logistics.{what}",
            t,
            carrier,
            False,
            order_id=o.order_id,
            tracking_no=tracking,
            carrier=carrier,
            **kw,
        )

    def _scan(self, o: _Order, t: float, tracking: str) -> Step:
        hubs = _CN_HUBS if o.customer.cn else _INTL_HUBS
        hub = hubs[self.rng.randrange(len(hubs))]
        return self._logi(
            o, t, "scanned", tracking, location=hub, detail="到达" if o.customer.cn else "arrived"
        )

    # --- lifecycles ----------------------------------------------------------------------

    def _attempts(self, t: float, fail_first: bool) -> tuple[list[tuple[float, bool]], float]:
        """Payment attempts from ``t``: a declined first try, and retries around outages."""
        r = self.rng
        tries: list[tuple[float, bool]] = []
        if fail_first:
            tries.append((t, False))
            t += r.uniform(40, 300)
        while window_start(t) in self.outages:
            tries.append((t, False))
            t = window_start(t) + WINDOW + r.uniform(20, 240)
        tries.append((t, True))
        return tries, t

    def _order(self, o: _Order) -> Life:
        """A healthy order from checkout to completion, inside every default threshold."""
        paid = yield from self._checkout(o)
        if paid is not None:
            yield from self._fulfil(o, *paid)

    def _checkout(self, o: _Order) -> Generator[Step, None, tuple[float, str] | None]:
        """created -> pending -> paid; returns (status paid time, payment_id) or None."""
        r, t0 = self.rng, o.at
        promised = None
        if o.promise and o.twist == "logistics.delivery_delayed":
            promised = o.extra["promised"] = t0 + r.uniform(2, 3) * DAY
        elif o.promise:
            # generous: healthy transit ends within 6 days of the order
            promised = t0 + r.uniform(7, 9) * DAY
        yield self._created(o, t0, promised)
        yield self._status(o, t0 + r.uniform(0.5, 2), "pending_payment", None)
        start = o.extra.get("pay_at", t0 + r.uniform(20, 480))
        if o.cancel == "unpaid" and not o.fail_first:
            yield self._status(o, start + r.uniform(300, 1200), "cancelled", "pending_payment")
            return None
        tries, ts = self._attempts(start, o.fail_first)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            if not ok and o.cancel == "unpaid":
                yield self._payment(o, t, False, pid)
                yield self._status(o, t + r.uniform(180, 1200), "cancelled", "pending_payment")
                return None
            yield self._payment(o, t, ok, pid)
        last = ts
        if r.random() < 0.3:  # the gateway calls back again: same payment_id, new event_id
            last = ts + r.uniform(2, 20)
            yield self._payment(o, last, True, pid)
        t_paid = last + r.uniform(25, 90)
        yield self._status(o, t_paid, "paid", "pending_payment")
        return t_paid, pid

    def _fulfil(self, o: _Order, t_paid: float, pid: str, cod: bool = False) -> Life:
        """Reserve, allocate, ship, scan, deliver, complete: every gap well inside its rule."""
        r = self.rng
        tw = o.twist
        t = t_paid
        for sku, qty, _ in o.items:
            t += r.uniform(1, 5)
            if tw == "inventory.oversold" and sku == o.items[0][0]:
                yield from self._short(o, t, sku, qty)
                t = o.extra["restocked_at"]
            elif tw == "inventory.reservation_failed" and sku == o.items[0][0]:
                reason = ("lock_timeout", "conflict", "other")[o.variant % 3]
                yield self._stock_ev(o, t, "inventory.reservation_failed", sku, qty, reason=reason)
                t += r.uniform(60, 600)
            yield self._stock_ev(
                o, t, "inventory.reserved", sku, qty, available_after=self._take(o, sku, qty)
            )
        status = "pending_payment" if cod else "paid"
        if not cod:
            t += r.uniform(60, 1800)
            yield self._status(o, t, "allocated", "paid")
            status = "allocated"
        if o.cancel == "paid":  # the customer cancels before shipping: refund and release
            t += r.uniform(600, 3 * HOUR)
            yield self._refund(o, t, pid)
            yield self._status(o, t + r.uniform(1, 30), "cancelled", status)
            t += 60
            for sku, qty, _ in o.items:
                t += r.uniform(1, 5)
                self.stock[(sku, o.customer.warehouse)] += qty
                yield self._stock_ev(o, t, "inventory.released", sku, qty)
            return
        carriers = _CN_CARRIERS if o.customer.cn else _INTL_CARRIERS
        carrier, prefix = carriers[o.n % len(carriers)]
        o.extra["carrier"] = carrier
        tracking = f"{prefix}{o.n:011d}"
        if tw == "logistics.not_shipped":
            ship = o.extra["paid_at"] + 48 * HOUR + r.uniform(1, 12) * HOUR
        elif cod:
            ship = t + r.uniform(HOUR, 6 * HOUR)
        else:
            ship = t + r.uniform(HOUR, 36 * HOUR)
        shipped = self._logi(o, ship, "shipped", tracking)
        if tw == "order.shipped_unpaid":
            shipped[1][_DUE] = ship + 10 * MINUTE
        yield shipped
        if not cod:
            yield self._status(o, ship + r.uniform(10, 600), "shipped", status)
            status = "shipped"
            if tw == "order.status_regression":
                t_back = ship + r.uniform(700, 1800)
                yield self._status(o, t_back, "allocated", "shipped")  # a stale OMS replica
                status = "allocated"
        yield from self._transit(o, ship, tracking, status, cod)

    def _short(self, o: _Order, t: float, sku: str, qty: int) -> Life:
        """inventory.oversold: the paid order finds no stock, until the warehouse restocks."""
        r = self.rng
        if o.variant % 2:
            yield self._stock_ev(
                o, t, "inventory.reservation_failed", sku, qty, reason="insufficient_stock"
            )
        else:
            yield self._stock_ev(
                o, t, "inventory.reserved", sku, qty, available_after=-r.randint(1, qty + 3)
            )
        o.extra["restocked_at"] = t + r.uniform(HOUR, 6 * HOUR)

    def _transit(self, o: _Order, ship: float, tracking: str, status: str, cod: bool) -> Life:
        r = self.rng
        tw = o.twist
        if tw == "logistics.delivery_delayed" and o.promise:
            delivered = max(ship + DAY, o.extra["promised"] + r.uniform(6, 30) * HOUR)
        elif tw == "logistics.delivery_delayed":
            delivered = ship + 7 * DAY + r.uniform(10, 30) * HOUR
        elif tw == "logistics.tracking_stale":
            delivered = ship + r.uniform(100, 130) * HOUR
        else:
            delivered = ship + r.uniform(24, 96) * HOUR
        ofd = delivered - r.uniform(2, 8) * HOUR
        t = ship + r.uniform(1, 8) * HOUR
        stale_done = False
        deadline = ship + 7 * DAY
        while t < ofd - HOUR:
            scan = self._scan(o, t, tracking)
            gap = r.uniform(8, 20) * HOUR
            if tw == "logistics.tracking_stale" and not stale_done:
                scan[1][_DUE] = t + 72 * HOUR
                gap, stale_done = 72 * HOUR + r.uniform(1, 8) * HOUR, True
            elif tw == "logistics.delivery_delayed" and not o.promise and t + gap >= deadline:
                scan[1][_DUE] = deadline  # the last scan before the 7-day mark
            yield scan
            if tw == "logistics.lost_or_damaged" and "lost" not in o.extra:
                kind = "lost" if o.variant % 2 else "damaged"
                o.extra["lost"] = kind
                yield self._logi(o, t + 600, "exception", tracking, kind=kind, detail=kind)
                if kind == "lost":  # the shop sends a replacement parcel
                    tracking = f"{tracking}R"
                    yield self._logi(o, t + r.uniform(1, 4) * HOUR, "shipped", tracking)
            t += gap
        if tw in ("logistics.rejected", "customer.unreachable"):
            # the first attempt fails at the door; the courier comes back the next day
            yield self._logi(o, ofd, "out_for_delivery", tracking)
            kind = "rejected"
            if tw == "customer.unreachable":
                kind = ("address_unreachable", "phone_unreachable")[o.variant % 2]
            yield self._logi(o, ofd + r.uniform(1, 3) * HOUR, "exception", tracking, kind=kind)
            if tw == "customer.unreachable":
                t_fix = ofd + 4 * HOUR
                fixed = self._ev(
                    "order.address_changed",
                    t_fix,
                    "oms",
                    o.customer.cn,
                    order_id=o.order_id,
                    shipping_address=o.customer.address,
                )
                yield t_fix, fixed
            ofd += DAY
            delivered = ofd + r.uniform(1, 4) * HOUR
        yield self._logi(o, ofd, "out_for_delivery", tracking)
        yield self._logi(o, delivered, "delivered", tracking)
        t = delivered
        if cod:  # cash on delivery: the courier's terminal reports the payment
            pid = f"PAY{o.n:09d}0"
            t += r.uniform(60, 600)
            yield self._payment(o, t, True, pid)
            t += r.uniform(20, 90)
            yield self._status(o, t, "paid", "pending_payment")
            status = "paid"
        t += r.uniform(60, 1800)
        yield self._status(o, t, "delivered", status)
        if r.random() < 0.7:
            t += r.uniform(DAY, 3 * DAY)
            yield self._status(o, t, "completed", "delivered")
            if r.random() < 0.02 and not cod:
                t += r.uniform(HOUR, 2 * DAY)
                yield self._refund(o, t, f"PAY{o.n:09d}0")
                yield self._status(o, t + 30, "refunded", "completed")

    def _twisted(self, o: _Order) -> Life:
        """The lifecycles that differ from a healthy one before fulfilment starts."""
        r, tw, t0 = self.rng, o.twist, o.at
        c = o.customer
        if tw == "fraud.blacklisted":
            kind = o.extra["blacklist"]
            value = {
                "customer_id": c.customer_id,
                "phone": c.address["phone"],
                "address": "|".join(
                    o.address.get(k, "")
                    for k in ("country", "province", "city", "district", "line1")
                ),
            }[kind]
            t = t0 - r.uniform(5, 55) * MINUTE
            yield (
                t,
                self._ev(
                    "blacklist.added", t, "risk", False, kind=kind, value=value, reason="chargeback"
                ),
            )
            yield from self._order(o)
            return
        if tw == "payment.failed_unpaid":
            yield self._created(o, t0, None)
            yield self._status(o, t0 + 1, "pending_payment", None)
            t = t0 + r.uniform(30, 300)
            failed = self._payment(o, t, False, f"PAY{o.n:09d}0")
            failed[1][_DUE] = t + 30 * MINUTE
            yield failed
            yield self._status(o, t + r.uniform(1, 3) * HOUR, "closed", "pending_payment")
            return
        if tw == "payment.after_cancel":
            yield self._created(o, t0, None)
            yield self._status(o, t0 + 1, "pending_payment", None)
            t = t0 + r.uniform(300, 1200)
            yield self._status(o, t, "cancelled", "pending_payment")
            t += r.uniform(60, 600)
            pid = f"PAY{o.n:09d}0"
            pay = self._payment(o, t, True, pid)  # the customer paid in a tab left open
            # the demo dates this history into the past (the cancel before the payment, both
            # before now) instead of emitting it at sim time, which runs ahead of the wall clock
            pay[1][_DUE] = t + 10 * MINUTE
            yield pay
            yield self._refund(o, t + r.uniform(20, 60) * MINUTE, pid)
            return
        if tw == "payment.orphan":
            # the gateway calls back before the OMS publishes the order (its outbox lagged)
            pid = f"PAY{o.n:09d}0"
            pay = self._payment(o, t0, True, pid)
            pay[1][_DUE] = t0 + 10 * MINUTE
            yield pay
            t = t0 + r.uniform(11, 20) * MINUTE
            yield self._created(o, t, None)
            yield self._status(o, t + 1, "pending_payment", None)
            yield self._status(o, t + r.uniform(5, 30), "paid", "pending_payment")
            yield from self._fulfil(o, t + 60, pid)
            return
        if tw == "order.shipped_unpaid":
            yield self._created(o, t0, None)
            yield self._status(o, t0 + 1, "pending_payment", None)
            yield from self._fulfil(o, t0 + r.uniform(60, 300), "", cod=True)
            return
        if tw in ("customer.invalid_address", "customer.invalid_phone"):
            paid = yield from self._checkout(o)
            assert paid is not None
            if o.variant % 2 == 0:  # customer service reaches the customer and fixes it
                t = paid[0] + r.uniform(5, 30) * MINUTE
                fixed = self._ev(
                    "order.address_changed",
                    t,
                    "oms",
                    c.cn,
                    order_id=o.order_id,
                    shipping_address=c.address,
                )
                yield t, fixed
                yield from self._fulfil(o, t, paid[1])
            else:
                yield from self._fulfil(o, *paid)
            return
        if tw in ("payment.paid_not_updated", "payment.duplicate", "payment.amount_mismatch"):
            yield from self._payment_twist(o)
            return
        if tw == "logistics.not_shipped":
            yield from self._paid_then(o, "not_shipped")
            return
        yield from self._order(o)

    def _payment_twist(self, o: _Order) -> Life:
        r, tw, t0 = self.rng, o.twist, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        tries, ts = self._attempts(t0 + r.uniform(20, 480), False)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            if ok and tw == "payment.amount_mismatch":
                if o.variant % 2:
                    short = min(o.total // 2, r.choice((100, 1000, 5000)))
                    step = self._payment(o, t, True, pid, o.total - short)
                else:
                    other = "USD" if o.customer.currency != "USD" else "EUR"
                    step = self._payment(o, t, True, pid, cur=other)
            else:
                step = self._payment(o, t, ok, pid)
            if ok and tw == "payment.paid_not_updated":
                step[1][_DUE] = t + 10 * MINUTE
            yield step
        t_paid = ts + r.uniform(25, 90)
        if tw == "payment.duplicate":
            # paid twice through two channels; both succeed, nobody refunds yet
            second = ts + r.uniform(10, 20)
            yield self._payment(o, second, True, f"PAY{o.n:09d}9")
            t_paid = second + r.uniform(5, 60)
        elif tw == "payment.paid_not_updated":
            t_paid = ts + r.uniform(11, 25) * MINUTE  # the OMS consumer was stuck
        yield self._status(o, t_paid, "paid", "pending_payment")
        yield from self._fulfil(o, t_paid, pid)

    def _paid_then(self, o: _Order, _: str) -> Life:
        """logistics.not_shipped: paid normally, shipped only after the 48 h deadline."""
        r, t0 = self.rng, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        tries, ts = self._attempts(t0 + r.uniform(20, 480), False)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            yield self._payment(o, t, ok, pid)
        o.extra["paid_at"] = ts
        t_paid = ts + r.uniform(25, 90)
        status = self._status(o, t_paid, "paid", "pending_payment")
        status[1][_DUE] = ts + 48 * HOUR
        yield status
        yield from self._fulfil(o, t_paid, pid)

    def _stray_scan(self, oid: str, at: float) -> Life:
        """logistics.orphan: a carrier scans a parcel under an order id this shop never had."""
        t, ev = self._scan_for(oid, at)
        ev[_DUE] = at + 10 * MINUTE
        yield t, ev

    def _scan_for(self, oid: str, at: float) -> Step:
        carrier, prefix = _CN_CARRIERS[0]
        return at, self._ev(
            "logistics.scanned",
            at,
            carrier,
            False,
            order_id=oid,
            tracking_no=f"{prefix}9{oid[3:]}",
            carrier=carrier,
            location=_CN_HUBS[0],
        )

    def _creation_failures(self, at: float, count: int, cause: str) -> Life:
        r = self.rng
        t = at
        for _ in range(count):
            with_id = r.random() < 0.5
            oid = f"SO{self.cfg.seed % 10000:04d}{next(self._order_no):08d}" if with_id else None
            fields: dict[str, Any] = {"error_code": r.choice(("DB_TIMEOUT", "STOCK_SERVICE_5XX"))}
            fields["error_message"] = "upstream timed out"
            fields["customer_id"] = f"C{r.randrange(self._pool_size):08d}"
            if oid:
                fields["order_id"] = oid
            ev = self._ev("order.creation_failed", t, "oms", True, **fields)
            self._expect("order.creation_failed", oid or ev["event_id"], cause)
            yield t, ev
            t += r.uniform(5, 15) if count > 1 else 0

    def _snapshots(self) -> Life:
        """Every 30 minutes, wms and erp report each sku's stock; they agree unless drifting."""
        r, start = self.rng, self.cfg.start
        for rnd in range(self.rounds):
            base = start + rnd * SNAPSHOT_EVERY
            batch: list[tuple[float, int, str, str, bool]] = []
            for sku in self.skus:
                for wh in WAREHOUSES:
                    t = base + r.uniform(0, 120)
                    batch.append((t, len(batch), sku, wh, False))
                    batch.append((t + r.uniform(5, 90), len(batch), sku, wh, True))
            batch.sort()
            # erp syncs from wms: both report the stock as of the wms count
            seen: dict[tuple[str, str], int] = {}
            for t, _, sku, wh, erp in batch:
                available = seen.pop((sku, wh)) if erp else self.stock[(sku, wh)]
                if not erp:
                    seen[(sku, wh)] = available
                off = self.drifts.get((sku, wh, rnd)) if erp else None
                if off:
                    available += max(10, available * off // 100)
                fields = {"sku": sku, "warehouse_id": wh, "available": available}
                fields["on_hand"] = available + 12
                yield t, self._ev("inventory.snapshot", t, "erp" if erp else "wms", False, **fields)

    def _blacklist_noise(self) -> Life:
        """A few entries no healthy customer matches, and one removal: the risk team at work."""
        t = self.cfg.start + 30
        for k, (kind, value) in enumerate(
            (
                ("customer_id", "C-FRAUD-0001"),
                ("phone", "+86 170 0000 0001"),
                ("address", "CN|广东|深圳|宝安区|福永街道仓库9号"),
                ("customer_id", "C-FRAUD-0002"),
            )
        ):
            yield t + k, self._ev("blacklist.added", t + k, "risk", False, kind=kind, value=value)
        t += HOUR
        yield (
            t,
            self._ev(
                "blacklist.removed", t, "risk", False, kind="customer_id", value="C-FRAUD-0002"
            ),
        )

    # --- demo: deadlines that pass seconds after the trigger is emitted --------------------

    def _wrap(self, make: Callable[[], Life]) -> Callable[[], Iterator[Step]]:
        return lambda: (self._backdated if self.cfg.demo else _strip)(make())

    def _backdated(self, life: Iterator[Step]) -> Iterator[Step]:
        """Emit a timeout anomaly's history up to its trigger at once, dated into the past.

        The trigger's deadline lands ``demo_lead`` seconds after it is emitted; what would have
        resolved it is left out, so the exception stays visible.
        """
        history: list[Step] = []
        due: float | None = None
        for step in life:
            history.append(step)
            due = step[1].pop(_DUE, None)
            if due is not None:
                break
        if due is None:  # not a timeout: nothing to shift
            yield from history
            return
        at = history[0][0]
        for t, ev in history:
            ev[AGO] = due - t - self.cfg.demo_lead
            yield at, ev

    def _demo_outage(self, at: float) -> Life:
        """25 declined attempts now, in the current window, which closes within five minutes."""
        r = self.rng
        for _ in range(25):
            o = self._new_order(at, self._fresh_customer(at), cancel=None)
            _, created = self._created(o, at, None)
            created[AGO] = 30.0
            yield at, created
            _, failed = self._payment(o, at, False, f"PAY{o.n:09d}0")
            failed[AGO] = r.uniform(0, 2)
            yield at, failed

    def _drift_burst(self, sku: str, wh: str, at: float) -> Life:
        wms = self._ev(
            "inventory.snapshot", at, "wms", False, sku=sku, warehouse_id=wh, available=120
        )
        erp = self._ev(
            "inventory.snapshot", at, "erp", False, sku=sku, warehouse_id=wh, available=170
        )
        yield at, wms
        erp[_DUE] = at + 15 * MINUTE + 1
        yield at + 1, erp


def _strip(life: Iterator[Step]) -> Iterator[Step]:
    for step in life:
        step[1].pop(_DUE, None)
        yield step


# --- output ------------------------------------------------------------------------------------


def topic_and_key(event: Event, topics: Mapping[str, str] = TOPICS) -> tuple[str, str]:
    """The contract's topic table: per order on order streams, sku on inventory, value on lists."""
    stream = event["type"].split(".", 1)[0]
    topic = topics[stream]
    if stream == "inventory":
        return topic, event["sku"]
    if stream == "blacklist":
        return topic, event["value"]
    return topic, event.get("order_id") or event["event_id"]


def _finish(event: Event, clock: Callable[[], float] | None) -> bytes:
    """Serialize one event; demo events get their ``occurred_at`` from the clock now."""
    ago = event.pop(AGO, None)
    if ago is not None and clock is not None:
        event["occurred_at"] = _stamp(clock() - ago)
    return orjson.dumps(event)


class _Pacer:
    """Holds emission to ``rate`` events a second (0: no limit), measured from the first."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.n = 0

    def delay(self) -> float:
        self.n += 1
        if self.rate <= 0:
            return 0.0
        return max(0.0, self.t0 + self.n / self.rate - time.monotonic())


def write_file(sim: Simulator, path: Path, rate: float = 0.0) -> dict[str, Any]:
    """Write the events as JSONL and the manifest beside it (``PATH.manifest.json``)."""
    clock = time.time if sim.cfg.demo else None
    pacer = _Pacer(rate)
    with open(path, "wb") as out:
        _write_lines(sim, out, clock, pacer)
    manifest = sim.manifest()
    manifest_path(path).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return manifest


def _write_lines(
    sim: Simulator, out: BinaryIO, clock: Callable[[], float] | None, pacer: _Pacer
) -> None:
    write = out.write
    if pacer.rate <= 0 and clock is None:
        dumps = orjson.dumps
        buf: list[bytes] = []
        for ev in sim.events():
            buf.append(dumps(ev))
            if len(buf) >= 4096:
                buf.append(b"")
                write(b"\n".join(buf))
                buf = []
        if buf:
            buf.append(b"")
            write(b"\n".join(buf))
        return
    for ev in sim.events():
        wait = pacer.delay()
        if wait:
            out.flush()
            time.sleep(wait)
        write(_finish(ev, clock) + b"\n")


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


async def produce(
    sim: Simulator,
    bootstrap: str,
    rate: float = 0.0,
    topics: Mapping[str, str] = TOPICS,
) -> dict[str, Any]:
    """Send the events to Kafka, keyed per the contract's topic table."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        pacer = _Pacer(rate)
        for ev in sim.events():
            wait = pacer.delay()
            if wait:
                await asyncio.sleep(wait)
            body = _finish(ev, time.time if sim.cfg.demo else None)
            topic, key = topic_and_key(ev, topics)
            await producer.send(topic, body, key=key.encode("utf-8"))
        await producer.flush()
    finally:
        await producer.stop()
    return sim.manifest()


__all__ = [
    "AGO",
    "DEFAULT_START",
    "TOPICS",
    "Expected",
    "SimConfig",
    "Simulator",
    "manifest_path",
    "parse_mix",
    "produce",
    "topic_and_key",
    "write_file",
]
