"""The simulated world: time units, markers, regions, carriers, keywords, and how they are written.

Shared by every part of the simulator; nothing here holds state or draws random numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

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
