"""Input events of the contract (CONTRACT section 1) as pydantic v2 models.

One model per ``type``, joined in a discriminated union so a message is validated against exactly
one schema in a single pass (pydantic-core picks the model by ``type`` before validating). Unknown
fields are ignored because producers on an existing bus add fields we do not own. Money is a
``Decimal`` parsed from a JSON *string*: a float would already have lost cents before we saw it.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
)

OrderStatus: TypeAlias = Literal[
    "pending_payment",
    "paid",
    "allocated",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "refunded",
    "closed",
]

#: Rank in the progress order; terminal statuses have no rank.
PROGRESS: dict[str, int] = {
    "pending_payment": 0,
    "paid": 1,
    "allocated": 2,
    "shipped": 3,
    "delivered": 4,
    "completed": 5,
}
TERMINAL: frozenset[str] = frozenset({"cancelled", "refunded", "closed"})


#: Money has at most this many digits before and after the decimal point: any amount a shop
#: charges, and every sum of them stays exact in the default decimal context (28 digits)
_MONEY_DIGITS = 12
#: Timestamps from these years only: the engine adds days to an event's time and writes the
#: result back as a date, which a year-1 or year-9999 timestamp would push out of range
_YEARS = (1900, 9000)


#: Money in the shape nearly every amount has: at most ``_MONEY_DIGITS`` digits either side of
#: the point, no sign but ``-``, no exponent, no space. ``_money`` accepts every such string as
#: ``Decimal(text)``; ``events.fastpath`` checks it natively and leaves the rest to ``_money``.
MONEY_SHAPE = rf"-?[0-9]{{1,{_MONEY_DIGITS}}}(?:\.[0-9]{{1,{_MONEY_DIGITS}}})?"
#: A currency as nearly every message writes it; ``_currency`` returns such a code unchanged.
CURRENCY_SHAPE = "[A-Z]{3}"


def _money(value: object) -> Decimal:
    """Accept money only as a decimal string, so no float rounding sneaks in upstream."""
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "199.00"')
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    exponent = amount.as_tuple().exponent
    if amount.adjusted() >= _MONEY_DIGITS or (
        isinstance(exponent, int) and exponent < -_MONEY_DIGITS
    ):
        # "1e999999999" is a finite Decimal whose first sum overflows the decimal context
        raise ValueError(f"money beyond {_MONEY_DIGITS} digits either side of the point")
    return amount


def _currency(value: object) -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise ValueError("currency must be a 3-letter ISO 4217 code")
    # interned: an order and its payments each keep their currency, and a few codes repeat
    # across every order held (a fresh 3-letter string is 52 bytes)
    return sys.intern(value.strip().upper())


#: RFC 3339 date-time (section 5.6): seconds required, offset ``Z`` or ``±hh:mm``. Python's own
#: parser also takes ``+0800``, a missing seconds field or week dates, which the contract does not.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


#: ``_RFC3339`` with the year within ``_YEARS``: what nearly every timestamp matches, so that
#: ``_rfc3339`` accepts it in one C call (a timestamp it refuses gets the full checks, and their
#: reasons, below). ``[0-9]``, not ``\d``: the same text is pydantic-core's pattern in
#: ``events.fastpath``, whose regex engine reads ``\d`` as any Unicode digit.
RFC3339_IN_YEARS = (
    r"(?:19[0-9]{2}|[2-8][0-9]{3}|9000)-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_IN_YEARS = re.compile(RFC3339_IN_YEARS).fullmatch


def _rfc3339(value: object) -> object:
    """Refuse epoch numbers and other shapes: the contract promises RFC 3339 text with an offset,
    and a bare int or ``+0800`` is what a producer that has drifted from it sends."""
    if type(value) is str and _RFC3339_IN_YEARS(value) is not None:
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("timestamp must be an RFC 3339 string with an offset")
    if not _YEARS[0] <= int(value[:4]) <= _YEARS[1]:
        raise ValueError(f"timestamp outside the years {_YEARS[0]}-{_YEARS[1]}")
    return value


Money = Annotated[Decimal, BeforeValidator(_money)]
#: A JSON integer the engine can hold and write back (orjson encodes 64 bits at most)
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Currency = Annotated[str, BeforeValidator(_currency)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
EventId = Annotated[str, Field(min_length=1, max_length=128)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


class Customer(_Model):
    customer_id: NonEmpty
    account_created_at: Timestamp
    phone: str  # required by the contract, though only the shipping phone is judged
    email: str | None = None


class Address(_Model):
    """A shipping address as the shop sent it.

    Every part is optional here on purpose: an incomplete address is not a broken message but a
    case for ``customer.invalid_address``, which must see it.
    """

    name: str | None = None
    phone: str | None = None
    country: str | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    line1: str | None = None
    postal_code: str | None = None


class OrderItem(_Model):
    sku: NonEmpty
    quantity: Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]
    unit_price: Money


class _EpochSeconds:
    """``occurred_at.timestamp()``, kept in the instance dict on first use.

    A non-data descriptor, so every later read finds the instance's own value and never reaches
    it; ``functools.cached_property`` would do the same but takes a lock on every first use.
    """

    def __get__(self, event: Any, owner: type | None = None) -> float:
        ts = epoch_seconds(event.occurred_at)
        event.__dict__["occurred_ts"] = ts
        return ts


def epoch_seconds(at: datetime) -> float:
    """``at.timestamp()`` exactly (the same float: the same integer of microseconds since the
    epoch, divided the same way), in a fraction of its instructions for the times
    pydantic-core parses.

    ``timestamp()`` asks the ``tzinfo`` for its offset through a call of pydantic-core's
    ``TzInfo.utcoffset``, then subtracts the epoch: ~6,300 instructions (cachegrind), a tenth
    of a simple event's decode and step. An offset-0 time holds pydantic-core's one ``Z``
    object (``_UTC``), and subtracting an epoch with that same object reads no offset (~2,300).
    Any other fixed offset is a fresh ``TzInfo`` per message, equal and hashing equal to every
    other of that offset: its offset is read once (``_OFFSETS``) and the time summed from its
    fields as ``timestamp()`` does (~4,500). Another ``tzinfo`` (a zone, in tests) takes
    ``timestamp()`` itself.
    """
    tz: Any = at.tzinfo
    if tz is _UTC:
        return (at - _EPOCH_UTC).total_seconds()
    if type(tz) is _TZINFO:
        offset = _OFFSETS.get(tz)
        if offset is None:
            offset = _offset_of(tz)
        if offset is not None:
            seconds = (at.toordinal() - _EPOCH_DAY) * 86400 + at.hour * 3600 + at.minute * 60
            return ((seconds + at.second - offset) * 1_000_000 + at.microsecond) / 1_000_000
    return at.timestamp()


def _offset_of(tz: tzinfo) -> int | None:
    """A fixed offset in seconds east of UTC, kept for the next message of the same offset while
    few are kept (a producer sending every possible offset cannot grow the table); None for
    what is not whole seconds (pydantic-core's offsets are): ``timestamp()`` takes that."""
    delta = tz.utcoffset(None)
    if delta is None or delta.microseconds:
        return None
    offset = delta.days * 86400 + delta.seconds
    if len(_OFFSETS) < _MAX_OFFSETS:
        _OFFSETS[tz] = offset
    return offset


#: the offset-0 ``tzinfo`` pydantic-core's parser gives every ``Z`` / ``+00:00`` timestamp (one
#: shared object; were it not, the test against it fails and the general way is taken)
_UTC = TypeAdapter(AwareDatetime).validate_json(b'"2000-01-01T00:00:00Z"').tzinfo
#: pydantic-core's fixed-offset ``tzinfo`` class
_TZINFO: Any = type(_UTC)
#: the epoch holding that very object: ``datetime`` subtracts two times that share their
#: ``tzinfo`` object without reading its offset, giving the delta ``timestamp()`` divides
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=_UTC)
#: seconds east of UTC of each fixed offset read, by its (equal, not identical) ``TzInfo``
_OFFSETS: dict[tzinfo, int] = {}
_MAX_OFFSETS = 64
#: 1970-01-01 as a proleptic Gregorian ordinal (``date.toordinal``)
_EPOCH_DAY = 719_163


class _Event(_Model):
    event_id: EventId
    occurred_at: Timestamp
    source: str

    #: ``occurred_at`` in epoch seconds, computed once: every rule the event reaches uses it
    occurred_ts: ClassVar[_EpochSeconds] = _EpochSeconds()


class _OrderKeyed(_Event):
    order_id: NonEmpty


class OrderCreated(_OrderKeyed):
    type: Literal["order.created"]
    customer: Customer
    shipping_address: Address
    items: Annotated[list[OrderItem], Field(min_length=1)]
    total_amount: Money
    currency: Currency
    channel: str | None = None
    remark: str | None = None
    promised_delivery_by: Timestamp | None = None


class OrderStatusChanged(_OrderKeyed):
    type: Literal["order.status_changed"]
    status: OrderStatus
    previous_status: OrderStatus | None = None


class OrderAddressChanged(_OrderKeyed):
    type: Literal["order.address_changed"]
    shipping_address: Address


class OrderCreationFailed(_Event):
    type: Literal["order.creation_failed"]
    order_id: str | None = None
    error_code: str
    error_message: str | None = None
    customer_id: str | None = None


class _Payment(_OrderKeyed):
    payment_id: NonEmpty
    amount: Money
    currency: Currency


class PaymentSucceeded(_Payment):
    type: Literal["payment.succeeded"]
    method: str | None = None


class PaymentFailed(_Payment):
    type: Literal["payment.failed"]
    reason_code: str


class PaymentRefunded(_Payment):
    type: Literal["payment.refunded"]
    refund_id: NonEmpty


class _Stock(_Event):
    sku: NonEmpty
    warehouse_id: NonEmpty


class InventoryReserved(_Stock):
    type: Literal["inventory.reserved"]
    order_id: NonEmpty
    quantity: Int64
    available_after: Int64


class InventoryReservationFailed(_Stock):
    type: Literal["inventory.reservation_failed"]
    order_id: NonEmpty
    quantity: Int64
    reason: Literal["insufficient_stock", "lock_timeout", "conflict", "other"]


class InventoryReleased(_Stock):
    type: Literal["inventory.released"]
    order_id: NonEmpty
    quantity: Int64


class InventorySnapshot(_Stock):
    type: Literal["inventory.snapshot"]
    available: Int64
    on_hand: Int64 | None = None


class _Logistics(_OrderKeyed):
    tracking_no: NonEmpty
    carrier: NonEmpty


class LogisticsShipped(_Logistics):
    type: Literal["logistics.shipped"]


class LogisticsScanned(_Logistics):
    type: Literal["logistics.scanned"]
    location: str | None = None
    detail: str | None = None


class LogisticsOutForDelivery(_Logistics):
    type: Literal["logistics.out_for_delivery"]


class LogisticsDelivered(_Logistics):
    type: Literal["logistics.delivered"]


LogisticsExceptionKind: TypeAlias = Literal[
    "lost",
    "damaged",
    "rejected",
    "address_unreachable",
    "phone_unreachable",
    "returned_to_sender",
    "other",
]


class LogisticsException(_Logistics):
    type: Literal["logistics.exception"]
    kind: LogisticsExceptionKind
    detail: str | None = None


class _Blacklist(_Event):
    kind: Literal["customer_id", "phone", "address"]
    value: NonEmpty
    reason: str | None = None


class BlacklistAdded(_Blacklist):
    type: Literal["blacklist.added"]


class BlacklistRemoved(_Blacklist):
    type: Literal["blacklist.removed"]


# commands (section 8) build on the envelope above; imported here, once it exists, so that they
# join the one discriminated union every input is decoded with
# v2: the results of remediation actions (section 10), the ``action.*`` stream
from orderwatch.events.actions import ActionFailed, ActionSucceeded  # noqa: E402
from orderwatch.events.commands import (  # noqa: E402
    CommandAcknowledge,
    CommandApprove,
    CommandAssign,
    CommandComment,
    CommandReject,
    CommandReopen,
    CommandResolve,
    CommandSnooze,
    CommandUnacknowledge,
)

InboundEvent: TypeAlias = Annotated[
    OrderCreated
    | OrderStatusChanged
    | OrderAddressChanged
    | OrderCreationFailed
    | PaymentSucceeded
    | PaymentFailed
    | PaymentRefunded
    | InventoryReserved
    | InventoryReservationFailed
    | InventoryReleased
    | InventorySnapshot
    | LogisticsShipped
    | LogisticsScanned
    | LogisticsOutForDelivery
    | LogisticsDelivered
    | LogisticsException
    | BlacklistAdded
    | BlacklistRemoved
    | CommandAcknowledge
    | CommandUnacknowledge
    | CommandAssign
    | CommandSnooze
    | CommandComment
    | CommandResolve
    | CommandReopen
    | CommandApprove
    | CommandReject
    | ActionSucceeded
    | ActionFailed,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)

#: Every event type of the contract, in the order of section 1.
EVENT_TYPES: tuple[str, ...] = (
    "order.created",
    "order.status_changed",
    "order.address_changed",
    "order.creation_failed",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "inventory.reserved",
    "inventory.reservation_failed",
    "inventory.released",
    "inventory.snapshot",
    "logistics.shipped",
    "logistics.scanned",
    "logistics.out_for_delivery",
    "logistics.delivered",
    "logistics.exception",
    "blacklist.added",
    "blacklist.removed",
)

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "PROGRESS",
    "TERMINAL",
    "Address",
    "BlacklistAdded",
    "BlacklistRemoved",
    "Customer",
    "InboundEvent",
    "InventoryReleased",
    "InventoryReservationFailed",
    "InventoryReserved",
    "InventorySnapshot",
    "LogisticsDelivered",
    "LogisticsException",
    "LogisticsOutForDelivery",
    "LogisticsScanned",
    "LogisticsShipped",
    "OrderAddressChanged",
    "OrderCreated",
    "OrderCreationFailed",
    "OrderItem",
    "OrderStatus",
    "OrderStatusChanged",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentSucceeded",
]
