"""Address and phone normalization (CONTRACT section 4) and the masking that keeps PII out.

Everything that could identify a person passes through here before it reaches an exception, a log
line or a metric: phones keep their last four digits, addresses shrink to country/province/city
plus a hash of the normalized full address, names are never copied at all.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from orderwatch.events.inbound import Address

_CN_PHONE = re.compile(r"(?:\+86)?1[3-9][0-9]{9}")
_CN_MOBILE = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})")
_E164 = re.compile(r"\+[0-9]{8,15}")
_CN_POSTAL = re.compile(r"[0-9]{6}")
_PHONE_BRACKETS = str.maketrans("", "", "().")
#: Unicode category initials removed from address parts: punctuation, symbols, separators, format.
_DROPPED = frozenset("PSZC")


class _Table(dict[int, int | None]):
    """A ``str.translate`` table that decides each code point once, the first time it is seen.

    Per-character ``unicodedata`` calls dominated normalization; a lazily filled table keeps
    their answer (and is bounded by the characters that actually occur, a few thousand).
    """

    def __init__(self, drop: Callable[[str], bool]) -> None:
        super().__init__()
        self._drop = drop

    def __missing__(self, code: int) -> int | None:
        keep = None if self._drop(chr(code)) else code
        self[code] = keep
        return keep


_ADDRESS_DROP = _Table(lambda ch: ch.isspace() or unicodedata.category(ch)[0] in _DROPPED)
_PHONE_DROP = _Table(lambda ch: ch.isspace() or unicodedata.category(ch) == "Pd")


@lru_cache(maxsize=4096)
def _squash(part: str | None) -> str:
    """Casefold and drop every whitespace, punctuation and symbol character (Unicode-aware).

    NFKC first, so full-width forms typed on CJK keyboards (``１００号``) compare equal to their
    ASCII spelling; invisible format characters (zero-width spaces pasted with an address) go too.
    """
    if not part:
        return ""
    return unicodedata.normalize("NFKC", part).casefold().translate(_ADDRESS_DROP)


def normalize_address(address: Address) -> str:
    """``country|province|city|district|line1`` in the comparable form the blacklist uses."""
    return _normalize_parts(
        address.country, address.province, address.city, address.district, address.line1
    )


@lru_cache(maxsize=256)
def _normalize_parts(*parts: str | None) -> str:
    # small on purpose: one order.created normalizes its address up to three times (routing,
    # redaction, the blacklist), and only those repeats are worth remembering
    return "|".join(_squash(p) for p in parts)


def normalize_address_text(text: str) -> str:
    """Normalize a blacklist entry given as ``country|province|city|district|line1`` text."""
    parts = text.split("|")
    parts += [""] * (5 - len(parts))
    return "|".join(_squash(p) for p in parts[:5])


@lru_cache(maxsize=256)
def address_hash(normalized: str) -> str:
    """A short stable digest of a normalized address: lets people match addresses, not read them."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16]


def _clean_phone(phone: str) -> str:
    """Drop spaces and dashes, any Unicode spelling of them (no-break space, en dash ...)."""
    return phone.translate(_PHONE_DROP)


@lru_cache(maxsize=256)
def normalize_phone(phone: str | None) -> str:
    """The form used to compare phones across orders and with the blacklist.

    Spaces, dashes, dots and brackets go; a CN mobile is written ``+86`` plus its 11 digits however
    it came (``138 1234 5678``, ``+86-138...``, ``0086138...``), so one phone is one key.
    """
    if not phone:
        return ""
    cleaned = _clean_phone(phone).translate(_PHONE_BRACKETS)
    mobile = _CN_MOBILE.fullmatch(cleaned)
    return f"+86{mobile.group(1)}" if mobile else cleaned


def is_valid_phone(phone: str | None, country: str | None) -> bool:
    """CN mobiles (country CN or a ``+86`` number), E.164 elsewhere; spaces and dashes ignored."""
    if not phone:
        return False
    cleaned = _clean_phone(phone)
    if (country or "").strip().upper() == "CN" or cleaned.startswith("+86"):
        return _CN_PHONE.fullmatch(cleaned) is not None
    return _E164.fullmatch(cleaned) is not None


def is_valid_address(address: Address) -> bool:
    """Region and street present and non-blank, street of 5+ characters, CN postcode 6 digits."""
    for part in (address.country, address.province, address.city, address.line1):
        if part is None or not part.strip():
            return False
    assert address.line1 is not None
    if len(address.line1.strip()) < 5:
        return False
    country = (address.country or "").strip().upper()
    postal = (address.postal_code or "").strip()
    return not (country == "CN" and postal and _CN_POSTAL.fullmatch(postal) is None)


#: Phone numbers inside free text (an operator's note): a CN mobile however it is spaced, an
#: international number with its ``+``, or any run of 7 or more digits. Dates (``2026-11-20``) and
#: short numbers are left alone.
_PHONE_IN_TEXT = re.compile(
    r"(?<![0-9])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}(?![0-9])"
    r"|\+[0-9][0-9 -]{6,18}[0-9]"
    r"|(?<![0-9])[0-9]{7,}(?![0-9])"
)


def mask_text(text: str) -> str:
    """Free text with every phone-like number in it masked as ``mask_phone`` does."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def mask_phone(phone: str | None) -> str:
    """Keep the last four digits only: enough for an agent to confirm with the customer."""
    if not phone:
        return ""
    digits = [c for c in phone if c.isdigit()]
    tail = "".join(digits[-4:])
    return "*" * max(len(digits) - 4, 0) + tail


@lru_cache(maxsize=256)
def phone_hash(phone: str | None) -> str:
    """Digest of a normalized phone, for grouping orders by phone without storing the number."""
    return hashlib.sha256(normalize_phone(phone).encode("utf-8")).hexdigest()[:16]


def redact_address(address: Address) -> dict[str, str | None]:
    """The part of an address an exception may carry: region plus a hash of the whole."""
    return {
        "country": address.country,
        "province": address.province,
        "city": address.city,
        "address_hash": address_hash(normalize_address(address)),
    }
