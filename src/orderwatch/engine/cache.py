"""A bounded cache of hot shards in front of a store: the engine's state beyond RAM.

``Engine.shards`` is a plain dict for replay and the tests. A live worker on a local store (the
shell's RocksDB table) swaps in a ``ShardCache``: the shards of the events being read stay in
memory, up to ``capacity``, and any other shard is read from the store when an event or a
deadline needs it, as Kafka Streams' record cache sits in front of RocksDB. It keeps the dict
methods the engine and the rule modules use (``get``, ``[]``, ``in``, ``del``, ``values``,
``items``, ``len``), so engine code is the same either way.

Pure: the store is a callable ``key -> bytes | None`` the shell injects; nothing here does I/O.

The cache is bounded by a count of shards (``capacity``) and, optionally, by bytes (``budget``):
a shard's size is estimated by the length of its stored form, which the store reads (a miss) or
writes (``sized``, at write-back) anyway; a shard created in memory counts ``NEW_SHARD_BYTES``
until it is written. Shards differ in size by two orders of magnitude (a stock shard ~190 B
stored, an order ~700 B, a busy customer's or KPI hour's many KB), so a count alone does not
bound memory: in RAM a decoded shard takes ~2.8 times its stored length (measured on a
simulated day, tracemalloc), which is what ``budget`` bounds.

Write-back is unchanged: a changed shard is in the engine's ``dirty`` set until the shell takes
and writes it at the next commit, and a dirty shard is never dropped from the cache (it would be
lost, and a read from the store would return its older state). A shard deleted by eviction is a
tombstone here until the shell has written the deletion (``flushed``), for the same reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, ItemsView, Iterator, MutableMapping, ValuesView
from typing import Any

import orjson

from orderwatch.engine.state import Shard, StateFormatError, shard_from_dict

#: Shards kept in memory per engine (one engine per shard partition) unless configured.
DEFAULT_CAPACITY = 20_000
#: The smallest capacity: one step holds references to the few shards it touches (an order,
#: its customer, address and phone, the rate windows) while it loads the next, and a sweep
#: fires deadline after deadline; the most recently used shards must never be the ones dropped.
MIN_CAPACITY = 16
#: Estimated stored bytes of a shard created in memory, until its first write-back says.
NEW_SHARD_BYTES = 256

Loader = Callable[[str], bytes | None]


def decode_shard(key: str, value: bytes) -> Shard:
    """A stored shard from its bytes; ``StateFormatError`` names the key if it cannot be read."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise StateFormatError(f"shard {key!r} is not JSON: {exc}") from exc
    shard = shard_from_dict(data)
    if shard.key != key:
        raise StateFormatError(f"the value stored under {key!r} is shard {shard.key!r}")
    return shard


class ShardCache(MutableMapping[str, Shard]):
    """Hot shards in LRU order over a store; see the module docstring.

    ``pinned`` is the engine's ``dirty`` set (shared, not copied): those shards stay. A pinned
    shard that reaches the cold end moves aside (``_held``) until the next ``flushed``, so the
    LRU order is never walked twice; the ``MIN_CAPACITY`` most recently used shards are never
    dropped (a step may still hold them). ``values()``/``items()``/``len()`` cover the shards in
    memory only (the metrics walk).
    """

    def __init__(self, load: Loader, capacity: int, pinned: set[str], budget: int = 0) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"a shard cache holds at least {MIN_CAPACITY} shards")
        self.load = load
        self.capacity = capacity
        #: stored bytes of the shards in memory above which the coldest go (0: no byte bound)
        self.budget = budget
        #: the estimated stored size of each shard in memory, and their sum
        self.sizes: dict[str, int] = {}
        self.bytes = 0
        self.pinned = pinned
        self._data: OrderedDict[str, Shard] = OrderedDict()
        #: changed shards moved out of the LRU order until they are written back
        self._held: dict[str, Shard] = {}
        #: keys deleted in memory whose deletion the store has not seen yet
        self._deleted: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.loads = 0
        self.evictions = 0
        #: told of every shard read from the store (``Engine.index_lazily``)
        self.on_load: Callable[[Shard], None] | None = None

    # --- reads -----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        data = self._data
        shard = data.get(key)
        if shard is not None:
            self.hits += 1
            data.move_to_end(key)
            return shard
        shard = self._held.get(key)
        if shard is not None:
            self.hits += 1
            return shard
        self.misses += 1
        if key in self._deleted:
            return default
        value = self.load(key)
        if value is None:
            return default
        self.loads += 1
        shard = decode_shard(key, value)
        if self.on_load is not None:
            self.on_load(shard)
        data[key] = shard
        size = len(value)
        self.bytes += size - self.sizes.get(key, 0)
        self.sizes[key] = size
        self._trim()
        return shard

    def __getitem__(self, key: str) -> Shard:
        shard = self.get(key)
        if shard is None:
            raise KeyError(key)
        return shard  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    # --- writes ----------------------------------------------------------------------------

    def __setitem__(self, key: str, shard: Shard) -> None:
        self._deleted.discard(key)
        self._held.pop(key, None)
        self._data[key] = shard
        self._data.move_to_end(key)
        if key not in self.sizes:
            self.sizes[key] = NEW_SHARD_BYTES
            self.bytes += NEW_SHARD_BYTES
        self._trim()

    def __delitem__(self, key: str) -> None:
        found = self._data.pop(key, None) or self._held.pop(key, None)
        if found is None and key in self._deleted:
            raise KeyError(key)
        self.bytes -= self.sizes.pop(key, 0)
        self._deleted.add(key)

    def sized(self, key: str, size: int) -> None:
        """The store was given ``size`` bytes for ``key``: its estimate, if it is in memory
        (the shell's writer tells the cache at write-back; ``_trim`` runs at ``flushed``)."""
        old = self.sizes.get(key)
        if old is not None:
            self.sizes[key] = size
            self.bytes += size - old

    def flushed(self) -> None:
        """The shell wrote every change taken from the engine: the store now has the deletions,
        and the shards held as changed may go (they rejoin the LRU order at its cold end)."""
        self._deleted.clear()
        if self._held:
            held, self._held = self._held, {}
            data = self._data
            for key, shard in held.items():
                data[key] = shard
                data.move_to_end(key, last=False)
        self._trim()

    def _trim(self) -> None:
        data = self._data
        held = self._held
        pinned = self.pinned
        budget = self.budget
        while (len(data) + len(held) > self.capacity or (budget and self.bytes > budget)) and len(
            data
        ) > MIN_CAPACITY:
            key, shard = data.popitem(last=False)
            if key in pinned:
                held[key] = shard  # still in memory: its bytes still count
            else:
                self.evictions += 1
                self.bytes -= self.sizes.pop(key, 0)

    # --- the in-memory view ------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        return iter([*self._data, *self._held])

    def __len__(self) -> int:
        return len(self._data) + len(self._held)

    def values(self) -> ValuesView[Shard]:
        return ValuesView(self._view())

    def items(self) -> ItemsView[str, Shard]:
        return ItemsView(self._view())

    def _view(self) -> dict[str, Shard]:
        if not self._held:
            return self._data
        return {**self._data, **self._held}

    def resident(self, key: str) -> bool:
        """Whether the shard is in memory now (no load)."""
        return key in self._data or key in self._held
