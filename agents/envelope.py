"""Many routed events in one message of the shard topic.

Faust's stream machinery costs about as much per message as the whole engine does per event
(several event-loop turns, an ``Event`` object, acking). Sent one by one, every input event would
pay it twice, once per stage, and an ``order.created`` routed to four shards five times. So stage 1
packs what one of its batches routed to each shard partition into one message, as Flink packs
records into network buffers, and stage 2 pays Faust's cost once per envelope. The table keys are
still the shard keys inside the envelope; only the transport is batched.

Format (version 1): ``b"OWB1"`` then, per item, a big-endian ``u16`` key length, a ``u32`` event
length, the key and the raw event bytes exactly as read from the input topic.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

MAGIC = b"OWB1"
_ITEM = struct.Struct(">HI")
#: An envelope is closed at this size, far below Kafka's 1 MB default message limit.
MAX_BYTES = 256 * 1024


class EnvelopeError(ValueError):
    """The bytes are not an envelope this version can read (a foreign writer, or corruption)."""


def pack(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    parts = [MAGIC]
    for key, raw in items:
        parts.append(_ITEM.pack(len(key), len(raw)))
        parts.append(key)
        parts.append(raw)
    return b"".join(parts)


def item_size(key: bytes, raw: bytes) -> int:
    """Bytes an item adds to an envelope (to close one before it grows past ``MAX_BYTES``)."""
    return _ITEM.size + len(key) + len(raw)


def unpack(value: bytes) -> list[tuple[bytes, bytes]]:
    """Every (shard key, raw event) of an envelope; all or nothing, so a torn one applies none."""
    if not value.startswith(MAGIC):
        raise EnvelopeError("not an orderwatch envelope")
    items: list[tuple[bytes, bytes]] = []
    pos, end, head = len(MAGIC), len(value), _ITEM.size
    unpack_from = _ITEM.unpack_from
    while pos < end:
        if pos + head > end:
            raise EnvelopeError(f"truncated item header at byte {pos}")
        klen, rlen = unpack_from(value, pos)
        pos += head
        stop = pos + klen + rlen
        if stop > end:
            raise EnvelopeError(f"truncated item at byte {pos}")
        items.append((value[pos : pos + klen], value[pos + klen : stop]))
        pos = stop
    return items
