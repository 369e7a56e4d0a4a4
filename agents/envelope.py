"""Many routed events in one message of the shard topic.

Faust's stream machinery costs about as much per message as the whole engine does per event
(several event-loop turns, an ``Event`` object, acking). Sent one by one, every input event would
pay it twice, once per stage, and an ``order.created`` routed to four shards five times. So stage 1
packs what one of its batches routed to each shard partition into one message, as Flink packs
records into network buffers, and stage 2 pays Faust's cost once per envelope. The table keys are
still the shard keys inside the envelope; only the transport is batched.

Format (version 2): ``b"OWB2"``, a big-endian ``u16`` count of sources and each source's name
(``u16`` length, UTF-8: ``"topic/partition"`` of an input), then per item a ``u16`` key length, a
``u32`` event length, the ``u16`` index of its source, an ``i64`` position, the key and the raw
event bytes exactly as read from the input topic. The position is the input offset times
``PER_MESSAGE`` plus the item's rank among the items one input message put in this shard
partition: it grows with every item a router sends a shard partition from one input, and a
router that reads the input again from an older commit sends the same positions again, which is
how stage 2 knows a copy (``Shell._unread``). Version 1 (``b"OWB1"``: no sources, no positions)
is still read, its items as of no known source; a requeued envelope is sent in it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

MAGIC = b"OWB2"
MAGIC_V1 = b"OWB1"
_COUNT = struct.Struct(">H")
_ITEM = struct.Struct(">HIHq")
_ITEM_V1 = struct.Struct(">HI")
#: An envelope is closed at this size, far below Kafka's 1 MB default message limit.
MAX_BYTES = 256 * 1024
#: Items one input message may put in one shard partition (an ``order.created`` reaches at most
#: four shards): a position is ``offset * PER_MESSAGE + rank``.
PER_MESSAGE = 64
#: The source of an item read from a version-1 envelope: none known, never taken for a copy.
NO_SOURCE = ""

#: (shard key, raw event, source, position)
Item = tuple[bytes, bytes, str, int]


class EnvelopeError(ValueError):
    """The bytes are not an envelope this version can read (a foreign writer, or corruption)."""


def pack(items: Iterable[Item]) -> bytes:
    sources: dict[str, int] = {}
    body: list[bytes] = []
    for key, raw, source, position in items:
        index = sources.get(source)
        if index is None:
            index = sources[source] = len(sources)
        body.append(_ITEM.pack(len(key), len(raw), index, position))
        body.append(key)
        body.append(raw)
    head = [MAGIC, _COUNT.pack(len(sources))]
    for name in sources:
        encoded = name.encode()
        head.append(_COUNT.pack(len(encoded)))
        head.append(encoded)
    return b"".join(head + body)


def pack_v1(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Items without their sources: a requeued envelope, which the new owner must read whole
    (``Shell.process``), and what an older worker wrote."""
    parts = [MAGIC_V1]
    for key, raw in items:
        parts.append(_ITEM_V1.pack(len(key), len(raw)))
        parts.append(key)
        parts.append(raw)
    return b"".join(parts)


def item_size(key: bytes, raw: bytes) -> int:
    """Bytes an item adds to an envelope (to close one before it grows past ``MAX_BYTES``; a
    source's name adds a few dozen more, once)."""
    return _ITEM.size + len(key) + len(raw)


def unpack(value: bytes) -> list[Item]:
    """Every (shard key, raw event, source, position) of an envelope; all or nothing, so a torn
    one applies none."""
    if value.startswith(MAGIC_V1):
        return _unpack_v1(value)
    if not value.startswith(MAGIC):
        raise EnvelopeError("not an orderwatch envelope")
    end = len(value)
    try:
        (count,) = _COUNT.unpack_from(value, len(MAGIC))
        pos = len(MAGIC) + _COUNT.size
        names: list[str] = []
        for _ in range(count):
            (length,) = _COUNT.unpack_from(value, pos)
            pos += _COUNT.size
            if pos + length > end:
                raise EnvelopeError(f"truncated source name at byte {pos}")
            names.append(value[pos : pos + length].decode())
            pos += length
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"unreadable source table: {exc}") from None
    items: list[Item] = []
    head = _ITEM.size
    unpack_from = _ITEM.unpack_from
    while pos < end:
        if pos + head > end:
            raise EnvelopeError(f"truncated item header at byte {pos}")
        klen, rlen, index, position = unpack_from(value, pos)
        pos += head
        stop = pos + klen + rlen
        if stop > end:
            raise EnvelopeError(f"truncated item at byte {pos}")
        if index >= len(names):
            raise EnvelopeError(f"unknown source {index} at byte {pos}")
        items.append((value[pos : pos + klen], value[pos + klen : stop], names[index], position))
        pos = stop
    return items


def _unpack_v1(value: bytes) -> list[Item]:
    items: list[Item] = []
    pos, end, head = len(MAGIC_V1), len(value), _ITEM_V1.size
    unpack_from = _ITEM_V1.unpack_from
    while pos < end:
        if pos + head > end:
            raise EnvelopeError(f"truncated item header at byte {pos}")
        klen, rlen = unpack_from(value, pos)
        pos += head
        stop = pos + klen + rlen
        if stop > end:
            raise EnvelopeError(f"truncated item at byte {pos}")
        items.append((value[pos : pos + klen], value[pos + klen : stop], NO_SOURCE, -1))
        pos = stop
    return items
