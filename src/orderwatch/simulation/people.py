"""The people and orders of the simulated shop: identities that are valid and unique per index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orderwatch.simulation.world import (
    _CN_MOBILE,
    _CN_NAMES,
    _CN_REGIONS,
    _CN_ROADS,
    _INTL,
    _INTL_NAMES,
)


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
