"""The state table's local store: RocksDB on disk (default) or Faust's in-memory dict.

With ``ORDERWATCH_STORE=rocksdb`` the table ``state`` lives in one RocksDB database per changelog
partition under ``ORDERWATCH_DATA_DIR`` (Faust's store, driven by ``rocksdict``), together with the
changelog offset it holds. A restart on the same directory reads only the changelog beyond that
offset, and the engine keeps a bounded cache of hot shards over the database
(``orderwatch.engine.cache``) instead of every shard in RAM. ``memory`` keeps today's behaviour:
the table and every shard in RAM, rebuilt from the whole changelog at each start.

This module is what the worker needs beyond Faust's store:

- ``Writer``: writes the worker's changed shards straight into the partition's database (Faust's
  ``table[key] = value`` finds the partition from the current event, and the worker writes from
  timers and commit hooks, where there is none), and records the changelog offset of each flush
  once the producer has it on the broker.
- the **timer index**: each stored shard's earliest deadline also lives in its partition's
  database under ``TIMER_PREFIX + due (ordered bytes) + key``, as Flink's RocksDB timer service
  keeps timers, written in the same write batch as the shard (``apply_writes``: the old entry
  deleted, the new one put) by the worker's flushes, the changelog catch-up and Faust's own
  changelog recovery and standby alike. A start reads the index a chunk at a time in due order
  (``Writer.timers``, ``Engine.index_lazily``), never every shard: what is due soon is in
  memory, the rest stays on disk until the clock nears it.
- ``check_state_dir``: a directory that does not fit (another app id, another shard format or
  partition count, a database that does not open, a rebuild asked for) is never read as this
  worker's state: it is removed and the state rebuilt from the changelog, or, with
  ``ORDERWATCH_STATE_MISMATCH=fail``, the worker refuses to start with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from orderwatch.agents.faust_internals import register_store, rocksdb_partition
from orderwatch.engine.cache import ShardCache
from orderwatch.engine.state import ACTION_RECORDS, FORMAT_VERSION, StateFormatError
from orderwatch.metrics import OPEN_STATUSES, STATE_SHARD_KINDS

log = logging.getLogger("orderwatch.store")

#: Written next to the tables: whose state this is and in which format.
MARKER = "orderwatch-state.json"
#: Faust's key of the changelog offset inside each partition's database.
OFFSET_KEY = b"__faust\0offset__"
#: Version of what a partition's database holds besides the shards (in the marker): 2 adds the
#: timer index. A directory of another layout is rebuilt from the changelog like any mismatch.
#: 3: the counts record also counts the stored deadlines and action-record shards as their own
#: kind (counts of layout 2 would be off by what was stored before)
LAYOUT = 3
#: The timer index's keys start with this: before every shard key and Faust's offset key.
TIMER_PREFIX = b"\x00T"
#: Each partition's counts of stored shards by kind, of open exceptions by rule and status and
#: of deadlines (``apply_writes`` keeps them in the same write batch as the shards; the state
#: gauges).
COUNTS_KEY = b"\x00C"
#: Shard key prefix -> the ``kind`` label of ``orderwatch_state_shards`` (others: "rates").
SHARD_KINDS = {b"o:": "order", b"s:": "stock", b"a:": "address", b"p:": "phone", b"c:": "customer"}
#: The action records of one order (``g:actions/<order_id>``, ``state.ACTION_RECORDS``): one per
#: order with actions, so a kind of their own, not among the few global shards ("rates").
ACTION_RECORDS_PREFIX = ACTION_RECORDS.encode()
#: The counts record's total of stored deadlines (``orderwatch_pending_deadlines``).
DEADLINES = "deadlines"
#: Stored shards' earliest deadlines read into the heap at a time (``Writer.timers``): ~100 B
#: each in memory.
TIMER_CHUNK = 10_000

#: RocksDB options per partition database. Faust's defaults (a 2 GiB block cache and three
#: 64 MiB memtables per database) are sized for a machine of its own; these bound one database's
#: memtables to 2 x 4 MiB. Shards are ~500 B and written once per commit: small memtables flush
#: often and cost little.
WRITE_BUFFER_SIZE = 4 * 1024 * 1024
MAX_WRITE_BUFFER_NUMBER = 2
MiB = 1024 * 1024


class StateDirMismatch(RuntimeError):
    """The state directory is not this worker's (and the policy says fail)."""


def rocksdb_options(block_cache_mb: int, write_buffer_mb: int = 0) -> dict[str, Any]:
    """``options`` of the table for Faust's RocksDB store.

    ``block_cache_mb`` is one block cache shared by every partition database of the process and
    ``write_buffer_mb`` (> 0) the memtables of all of them together, charged to that cache
    (RocksDB's write buffer manager): RocksDB's memory is then one figure whatever the number of
    partitions a worker owns (``SharedOptions``)."""
    return {
        "driver": "rocksdict",
        "write_buffer_size": WRITE_BUFFER_SIZE,
        "max_write_buffer_number": MAX_WRITE_BUFFER_NUMBER,
        "block_cache_size": block_cache_mb * MiB,
        "shared_write_buffer_size": write_buffer_mb * MiB,
        # Faust keeps 90 % of the process limit; a few hundred is plenty for four databases
        "max_open_files": 512,
    }


#: (cache bytes, write buffer bytes) -> the process's shared block cache and write buffer
#: manager: every partition database opened with those sizes uses the same two objects.
_SHARED: dict[tuple[int, int], tuple[Any, Any]] = {}


def shared_memory(cache_bytes: int, write_buffer_bytes: int) -> tuple[Any, Any]:
    """The block cache and the write buffer manager (None when ``write_buffer_bytes`` is 0)
    shared by the partition databases of this process."""
    from rocksdict import Cache, WriteBufferManager

    key = (cache_bytes, write_buffer_bytes)
    found = _SHARED.get(key)
    if found is None:
        cache = Cache(cache_bytes)
        manager = (
            WriteBufferManager.new_write_buffer_manager_with_cache(write_buffer_bytes, False, cache)
            if write_buffer_bytes > 0
            else None
        )
        found = _SHARED[key] = (cache, manager)
    return found


class SharedOptions(RocksDBOptions):
    """Faust's options for a rocksdict database (the same table format: bloom filter, binary
    search index), with the block cache and memtable budget of the process shared
    (``shared_memory``) instead of a cache of its own per partition database.

    Faust's ``as_options`` builds a new ``Cache`` per call (per database opened): four
    partitions took four times ``ORDERWATCH_ROCKSDB_BLOCK_CACHE_MB`` plus 2 x 4 MiB of
    memtables each, ~35 MiB of a worker's RSS after the 10,000-order quick check."""

    def as_options(self) -> Any:
        import rocksdict

        cache, manager = shared_memory(
            self.block_cache_size, int(self.extra_options.get("shared_write_buffer_size", 0))
        )
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        if manager is not None:
            options.set_write_buffer_manager(manager)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


def _marker(app_id: str, partitions: int) -> dict[str, Any]:
    return {"app_id": app_id, "format": FORMAT_VERSION, "partitions": partitions, "layout": LAYOUT}


# --- the timer index -----------------------------------------------------------------------------

_HEAD = struct.Struct(">2sBd")
_BITS = struct.Struct(">Q")
_DOUBLE = struct.Struct(">d")
_ALL = (1 << 64) - 1


def timer_key(due: float, key: bytes) -> bytes:
    """The index key of a shard's earliest deadline: prefix, the due time as bytes that sort as
    the floats do, then the shard key.

    A due time at or after the epoch (all of them, in practice) is a 1 and its IEEE 754
    big-endian bytes, which sort as the numbers do; one before is a 0 and every bit inverted."""
    if due >= 0.0:
        return _HEAD.pack(TIMER_PREFIX, 1, due + 0.0) + key
    return TIMER_PREFIX + b"\x00" + _BITS.pack(_BITS.unpack(_DOUBLE.pack(due))[0] ^ _ALL) + key


def _due_of(raw: bytes) -> float:
    """The due time of an index key."""
    if raw[2] == 1:
        return float(_DOUBLE.unpack_from(raw, 3)[0])
    return float(_DOUBLE.unpack(_BITS.pack(_BITS.unpack_from(raw, 3)[0] ^ _ALL))[0])


def parse_timer_key(raw: bytes) -> tuple[float, str]:
    """``(due, shard key)`` of an index key."""
    return _due_of(raw), raw[11:].decode()


_CURRENT = f'{{"v":{FORMAT_VERSION},"key":'.encode()


def earliest(value: bytes | None) -> float | None:
    """The earliest deadline of a stored shard value (None: it has none, or it is no shard)."""
    return _summary(value)[0]


def _summary(value: bytes | None) -> tuple[float | None, int]:
    """The earliest deadline of a stored shard value and how many it has (None, 0: none, or no
    shard): the index entry and the ``deadlines`` count of ``apply_writes`` from one parse."""
    dl = deadlines_of(value)
    try:
        return (float(min(dl.values())), len(dl)) if dl else (None, 0)
    except (TypeError, ValueError):  # not a shard's deadlines: found when the value is read
        return None, 0


def _dl_bytes(value: bytes) -> bytes | None:
    """The serialized ``dl`` of a value in the current format (b"" when it has none), or None
    when only parsing the whole value can tell.

    The current format writes "v", "key", "at" (a number), then "dl" if the shard has
    deadlines: the slice is found without parsing the rest. ``,"at":`` cannot occur inside the
    key (a quote in a JSON string is escaped)."""
    if not value.startswith(_CURRENT):
        return None
    at = value.find(b',"at":', len(_CURRENT))
    if at < 0:
        return None
    after = value.find(b",", at + 6)
    if after < 0:
        return b""
    if not value.startswith(b'"dl":{', after + 1):
        return b""
    end = value.find(b"}", after + 7)
    return None if end < 0 else value[after + 6 : end + 1]


def deadlines_of(value: bytes | None) -> dict[str, float]:
    """The deadlines (``dl``) of a stored shard value, {} for none or for a value that is not a
    shard (the blacklist's copy, the flush's end mark, something unreadable: a shard that cannot
    be read is found when it is loaded or by ``verify``, not here).

    Read from the ``dl`` slice alone where the format allows (``_dl_bytes``; a cut inside a
    string is never valid JSON, so a name with a brace falls back to the whole value)."""
    if not value:
        return {}
    raw = _dl_bytes(value)
    if raw is not None:
        if not raw:
            return {}
        try:
            found = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return found if isinstance(found, dict) else {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    dl = data.get("dl") if isinstance(data, dict) else None
    return dl if isinstance(dl, dict) else {}


def _open_tally(counts: dict[str, int], value: bytes, sign: int) -> None:
    """Count a stored value's open exceptions by rule and status in (``sign`` 1) or out (-1);
    parsed only when it has any (a few shards in a hundred)."""
    if b'"open":[' not in value:
        return
    try:
        found = orjson.loads(value).get("open") or ()
        for op in found:
            name = f"open|{op['r']}|{op.get('st', 'open')}"
            counts[name] = counts.get(name, 0) + sign
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return  # not a shard: found when it is read


def _kind(key: bytes) -> str | None:
    """The ``orderwatch_state_shards`` kind of a stored key (None: the blacklist's copy)."""
    if key.startswith(b"*:"):
        return None
    if key.startswith(ACTION_RECORDS_PREFIX):
        return "kind|actions"
    return "kind|" + SHARD_KINDS.get(key[:2], "rates")


def apply_writes(
    db: Any, writes: dict[bytes, bytes | None], offset: int | None = None
) -> dict[str, int]:
    """Shard values (None: deleted) into ``db`` in one write batch, with the timer index entries
    they add and remove and, if given, the changelog offset they reach: a kill -9 leaves the
    shards, their index and the offset consistent with each other, whatever instant it hits.

    The index holds one entry per shard with deadlines, at its earliest one (the engine reads
    the shard's others when that one comes, ``Engine.index_lazily``); the old entry's time comes
    from the value the database holds now (one multi-get). The partition's counts (``COUNTS_KEY``:
    shards by kind, open exceptions by rule and status, deadlines) change in the same batch;
    returns them."""
    from rocksdict import WriteBatch

    keys = list(writes)
    olds = db.get([COUNTS_KEY, *keys])
    stored = olds.pop(0)
    counts: dict[str, int] = orjson.loads(stored) if stored else {}
    batch = WriteBatch(raw_mode=True)
    put, delete = batch.put, batch.delete
    for key, old in zip(keys, olds, strict=True):
        new = writes[key]
        if new == old:
            continue
        if old is None or new is None:  # a shard added or removed
            kind = _kind(key)
            if kind is not None:
                counts[kind] = counts.get(kind, 0) + (1 if old is None else -1)
        if new is None:
            delete(key)
            if old is None:
                continue
            after = None
        else:
            put(key, new)
            _open_tally(counts, new, 1)
            if old is None:  # a new shard (every record of a failover into an empty directory)
                after, n = _summary(new)
                if after is not None:
                    put(timer_key(after, key), b"")
                    counts[DEADLINES] = counts.get(DEADLINES, 0) + n
                continue
            dl = _dl_bytes(new)
            if dl is not None and dl == _dl_bytes(old):
                _open_tally(counts, old, -1)
                continue  # the same deadlines: the same index entry
            after, n = _summary(new)
            counts[DEADLINES] = counts.get(DEADLINES, 0) + n
        _open_tally(counts, old, -1)
        before, n = _summary(old)
        counts[DEADLINES] = counts.get(DEADLINES, 0) - n
        if before == after:
            continue
        if before is not None:
            delete(timer_key(before, key))
        if after is not None:
            put(timer_key(after, key), b"")
    put(COUNTS_KEY, orjson.dumps(counts))
    if offset is not None:
        put(OFFSET_KEY, str(offset).encode())
    db.write(batch)
    return counts


def read_timers(db: Any, start: bytes, limit: int) -> tuple[list[tuple[float, str]], bytes | None]:
    """Up to ``limit`` index entries from ``start`` on (in due order) and the key of the first
    one left (None: no more)."""
    from rocksdict import ReadOptions

    it = db.iter(ReadOptions())
    it.seek(start)
    entries: list[tuple[float, str]] = []
    add = entries.append
    while it.valid():
        raw = it.key()
        if not raw.startswith(TIMER_PREFIX):
            return entries, None
        if len(entries) >= limit:
            return entries, raw
        add(parse_timer_key(raw))
        it.next()
    return entries, None


def _mismatch(tabledir: Path, app_id: str, partitions: int) -> str | None:
    """Why the tables in ``tabledir`` are not this worker's, or None if they are (or none)."""
    dbs = sorted(tabledir.glob("*.db")) if tabledir.is_dir() else []
    marker_path = tabledir / MARKER
    if not marker_path.exists():
        return f"tables without {MARKER}: {[p.name for p in dbs]}" if dbs else None
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {MARKER}: {exc}"
    if not isinstance(marker, dict):
        return f"unreadable {MARKER}"
    if marker.get("rebuild"):
        return f"a rebuild was asked for: {marker['rebuild']}"
    want = _marker(app_id, partitions)
    if marker.get("layout", 1) != LAYOUT:
        return f"layout is {marker.get('layout', 1)!r}, this worker's is {LAYOUT}"
    for field in ("app_id", "format", "partitions"):
        if marker.get(field) != want[field]:
            return f"{field} is {marker.get(field)!r}, this worker's is {want[field]!r}"
    for db in dbs:
        problem = _open_problem(db)
        if problem:
            return f"{db.name} does not open: {problem}"
    return None


def _open_problem(path: Path) -> str | None:
    """Open a partition's database read-only and read its offset (a damaged manifest or
    offset shows here; a damaged value shows in the start-up scan of ``restore``)."""
    from rocksdict import AccessType, Options, Rdict

    try:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    except Exception as exc:  # rocksdict raises plain exceptions for every RocksDB status
        return str(exc)
    try:
        value = db.get(OFFSET_KEY)
        if value is not None:
            int(value)
    except Exception as exc:
        return str(exc)
    finally:
        db.close()
    return None


def check_state_dir(tabledir: Path, app_id: str, partitions: int, policy: str) -> str | None:
    """Make ``tabledir`` hold this worker's state or nothing; returns the mismatch, if any.

    ``policy`` ``rebuild`` removes a directory that does not fit (the state then comes back from
    the changelog, as on a new machine); ``fail`` raises ``StateDirMismatch`` instead.
    """
    reason = _mismatch(tabledir, app_id, partitions)
    if reason is not None:
        if policy == "fail":
            raise StateDirMismatch(
                f"state directory {tabledir} is not this worker's ({reason}); remove it or set "
                "ORDERWATCH_STATE_MISMATCH=rebuild to rebuild it from the changelog"
            )
        log.warning("state directory %s rebuilt from the changelog: %s", tabledir, reason)
        shutil.rmtree(tabledir, ignore_errors=True)
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / MARKER).write_text(json.dumps(_marker(app_id, partitions)))
    return reason


def ask_rebuild(tabledir: Path, reason: str) -> None:
    """Mark the directory for a rebuild at the next start (a shard that cannot be read)."""
    marker_path = tabledir / MARKER
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError):
        marker = {}
    marker["rebuild"] = reason
    marker_path.write_text(json.dumps(marker))


def _ignore(reason: str) -> None:
    """An unreadable stored value before ``restore`` (its load raises ``StateFormatError``)."""


class Writer:
    """Changed shards into the partition databases, and the changelog offsets they reached."""

    def __init__(self, store: Any, changelog: str, metrics: Any = None) -> None:
        self.store = store
        self.changelog = changelog
        self.metrics = metrics
        #: partition -> the send future of its last changelog write (the flush's end mark)
        self.pending: dict[int, Any] = {}
        #: partition -> shard writes not in the database yet (one write batch per flush)
        self.writes: dict[int, dict[bytes, bytes | None]] = {}
        #: cache lookups already counted in the metrics: (hits, misses)
        self._counted = (0, 0)
        #: partition -> its stored counts as last written (``apply_writes``; read when missing)
        self.counts: dict[int, dict[str, int]] = {}
        #: what a stored value that is not a readable shard does (``restore``: rebuild, exit)
        self.unreadable: Callable[[str], None] = _ignore
        #: the shell's engines by partition (``restore``): their caches learn the stored size
        #: of each shard written (``ShardCache.sized``), what their byte budget counts
        self.engines: Mapping[int, Any] = {}

    def db(self, partition: int) -> Any:
        return rocksdb_partition(self.store, partition)

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue a shard write; ``flush`` (at the end of the worker's flush, or before anything
        reads the database) writes the queue as one batch with its timer index entries."""
        writes = self.writes.get(partition)
        if writes is None:
            writes = self.writes[partition] = {}
        writes[key] = value

    def flush(self, partition: int | None = None) -> None:
        """The queued writes of one partition (None: every partition) into its database."""
        for p in list(self.writes) if partition is None else [partition]:
            writes = self.writes.pop(p, None)
            if writes:
                self.counts[p] = apply_writes(self.db(p), writes)
                engine = self.engines.get(p)
                cache = None if engine is None else engine.shards
                if isinstance(cache, ShardCache):
                    sized = cache.sized
                    for key, value in writes.items():
                        if value is not None:
                            sized(key.decode(), len(value))

    def loader(self, partition: int) -> Callable[[str], bytes | None]:
        """The engine's read of a shard not in its cache. A stored value that is not a shard of
        a known format stops the worker for a rebuild (``unreadable``)."""
        writes = self.writes

        def load(key: str) -> bytes | None:
            if partition in writes:
                self.flush(partition)
            raw = key.encode()
            value: bytes | None = self.db(partition).get(raw)
            if value is not None and not value.startswith(_CURRENT + orjson.dumps(key)):
                check_value(raw, value, self.unreadable)
            return value

        return load

    def timers(self, partition: int) -> Callable[[], tuple[list[tuple[float, str]], float | None]]:
        """The engine's source of stored deadlines (``Engine.index_lazily``): the partition's
        timer index, ``TIMER_CHUNK`` at a time, from where the last read stopped."""
        cursor = [TIMER_PREFIX]

        def more() -> tuple[list[tuple[float, str]], float | None]:
            entries, rest = read_timers(self.db(partition), cursor[0], TIMER_CHUNK)
            if rest is None:
                cursor[0] = b"\xff"  # the end: nothing stored after this start is unread
                return entries, None
            cursor[0] = rest
            return entries, _due_of(rest)

        return more

    def sent(self, partition: int, future: Any) -> None:
        self.pending[partition] = future

    def commit_offsets(self) -> int:
        """After the producer's flush: store each partition's changelog offset now on the
        broker, so a restart on this directory reads the changelog from there on."""
        self.flush()  # the shards first: an offset never runs ahead of what is stored
        stored = 0
        for partition, future in list(self.pending.items()):
            if not future.done():
                continue
            del self.pending[partition]
            if future.cancelled() or future.exception() is not None:
                continue
            offset = future.result().offset
            self.store.set_persisted_offset(TP(self.changelog, partition), offset)
            if self.metrics is not None:
                self.metrics.state_changelog_offset.labels(partition=str(partition)).set(offset)
            stored += 1
        return stored

    def report(self, engines: Mapping[int, Any]) -> None:
        """The cache metrics, summed over the engines, and the state gauges from the stored
        counts of the partitions owned (every sweep tick: a few additions).

        The shards by kind and the open exceptions by rule and status are counted where they
        are stored (``apply_writes``), not by walking the cache, which holds a part of them."""
        if self.metrics is None:
            return
        hits = misses = size = held = 0
        for engine in engines.values():
            cache = engine.shards
            if isinstance(cache, ShardCache):
                hits += cache.hits
                misses += cache.misses
                size += len(cache)
                held += cache.bytes
        counted_hits, counted_misses = self._counted
        # engines come and go with partitions: count what grew, never negative
        if hits > counted_hits:
            self.metrics.shard_cache_lookups.labels(result="hit").inc(hits - counted_hits)
        if misses > counted_misses:
            self.metrics.shard_cache_lookups.labels(result="miss").inc(misses - counted_misses)
        self._counted = (hits, misses)
        self.metrics.shard_cache_shards.set(size)
        self.metrics.shard_cache_bytes.set(held)
        self._gauges(engines)

    def stored_counts(self, partition: int) -> dict[str, int]:
        counts = self.counts.get(partition)
        if counts is None:
            raw = self.db(partition).get(COUNTS_KEY)
            counts = self.counts[partition] = orjson.loads(raw) if raw else {}
        return counts

    def _gauges(self, engines: Mapping[int, Any]) -> None:
        totals: dict[str, int] = {}
        rules: set[str] = set()
        for partition, engine in engines.items():
            rules.update(engine.rules)
            try:
                counts = self.stored_counts(partition)
            except Exception:  # a partition closed meanwhile: counted at the next tick
                continue
            for name, n in counts.items():
                totals[name] = totals.get(name, 0) + n
        m = self.metrics
        for kind in STATE_SHARD_KINDS:
            m.state_shards.labels(kind=kind).set(totals.get(f"kind|{kind}", 0))
        # every stored deadline as of the last write-back, not only the shards in memory
        m.pending_deadlines.set(totals.get(DEADLINES, 0))
        for rule_id in rules:
            total = 0
            for status in OPEN_STATUSES:
                n = totals.get(f"open|{rule_id}|{status}", 0)
                total += n
                m.exceptions_by_status.labels(rule_id=rule_id, status=status).set(n)
            m.open_exceptions.labels(rule_id=rule_id).set(total)


def check_value(key: bytes, value: bytes, unreadable: Callable[[str], None]) -> None:
    """A stored value not in the current format's shape is parsed whole: a shard of a format
    this engine reads passes; anything else calls ``unreadable`` with the reason."""
    from orderwatch.engine.cache import decode_shard

    if key.startswith(b"*:"):  # the blacklist's copy (``broadcast_key``)
        return
    try:
        decode_shard(key.decode(), value)
    except (StateFormatError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        unreadable(f"{exc}")


def _rebuild_and_exit(tabledir: Any) -> Callable[[str], None]:
    def stop(reason: str) -> None:
        log.critical(
            "state directory %s cannot be read (%s): rebuilding at restart", tabledir, reason
        )
        ask_rebuild(Path(tabledir), reason)
        logging.shutdown()
        os._exit(3)

    return stop


def restore(
    shell: Any, writer: Writer, owned: set[int], capacity: int, tabledir: Any, budget: int = 0
) -> int:
    """The shell's engines of newly owned partitions over their stores (``Shell.restore_store``);
    returns the deadlines read into memory (the first chunk of each partition's timer index).

    A stored value that is not a shard of a known format is never read as state: the directory
    is marked for a rebuild and the worker exits at once (status 3); started again, it rebuilds
    the state from the changelog (``check_state_dir``). Exiting is the safe way out: the inputs'
    offsets of what used that state are not committed. Such a value is found when a shard is
    loaded, or by ``verify``, which reads every stored value in the background after the start.
    """
    started = time.monotonic()
    writer.unreadable = _rebuild_and_exit(tabledir)
    fresh = owned - shell.assigned
    for partition in fresh:
        writer.counts.pop(partition, None)  # recovered meanwhile: read again when reported
    # ``budget``: bytes of stored form per partition (0: the count alone)
    indexed: int = shell.restore_store(owned, writer.timers, writer.loader, capacity, budget)
    writer.engines = shell.engines
    seconds = time.monotonic() - started
    log.info("deadline index: %d stored entries read in %.2f s", indexed, seconds)
    if writer.metrics is not None:
        writer.metrics.state_restore_seconds.set(seconds)
    for partition in sorted(fresh):
        _spawn(verify(writer, partition))
    return indexed


_tasks: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:  # no loop (a test): nothing to verify in the background
        coro.close()
        return
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


#: Stored values ``verify`` reads between two yields to the event loop.
VERIFY_CHUNK = 5_000


async def verify(writer: Writer, partition: int) -> None:
    """Read every stored value of a partition once, in the background after the start, so a
    value that is not a shard of a known format is found even if no event loads it (it stops
    the worker for a rebuild, as at a load), and count the stored shards."""
    started = time.monotonic()
    checked = 0
    try:
        db = writer.db(partition)
        start = b"\x00U"  # just after the timer index
        while True:
            from rocksdict import ReadOptions

            it = db.iter(ReadOptions())
            it.seek(start)
            n = 0
            while it.valid() and n < VERIFY_CHUNK:
                key, value = it.key(), it.value()
                if key != OFFSET_KEY and not value.startswith(_CURRENT + b'"' + key + b'"'):
                    check_value(key, value, writer.unreadable)
                n += 1
                it.next()
            checked += n
            if not it.valid():
                break
            start = it.key()
            del it
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        raise
    except Exception:  # a partition revoked meanwhile (its database closed): nothing to check
        log.debug("state verification of partition %d stopped", partition, exc_info=True)
        return
    log.info(
        "state verified: %d stored values of partition %d in %.2f s",
        checked,
        partition,
        time.monotonic() - started,
    )


# --- a fast changelog catch-up -------------------------------------------------------------------

#: The longest the catch-up waits for a record before it leaves the rest to Faust's recovery.
CATCH_UP_IDLE = 10.0


def consumer_options(settings: Any) -> dict[str, Any]:
    """aiokafka options of a plain consumer on the worker's brokers and credentials."""
    import ssl

    options: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in settings.bootstrap_servers.split(",") if h],
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
        options["ssl_context"] = context
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username or "",
            "sasl_plain_password": password,
        }
    return options


async def catch_up(store: Any, tps: list[TP], options: dict[str, Any]) -> dict[TP, int]:
    """Read the changelog of newly assigned active partitions into their databases with a
    plain consumer, from the offset each holds to the broker's end; returns records per tp.

    Faust's recovery turns every changelog record into a stream event (~4,000 records/s on this
    2-core machine, a 1M-shard changelog in minutes); a plain fetch applied as RocksDB write
    batches reads the same records more than ten times as fast. It runs inside Faust's
    rebalance, before Faust's recovery, which then starts from the offsets stored here and
    reads what is left (the flush's end mark, or anything a timeout left unread).
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(
        **options,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    counts = {tp: 0 for tp in tps}
    try:
        kafka = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        consumer.assign(list(kafka))
        ends = await consumer.end_offsets(list(kafka))
        remaining = set()
        for ktp, tp in kafka.items():
            start = store.persisted_offset(tp)
            start = 0 if start is None else start
            if ends[ktp] > start:
                consumer.seek(ktp, start)
                remaining.add(ktp)
        idle_since = time.monotonic()
        while remaining and time.monotonic() - idle_since < CATCH_UP_IDLE:
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=20_000)
            if batches:
                idle_since = time.monotonic()
            for ktp, records in batches.items():
                tp = kafka[ktp]
                # the last write of each key in the fetch, in one batch with its index entries
                # and the offset reached
                writes = {r.key: r.value for r in records if r.key is not None}
                writes.pop(OFFSET_KEY, None)
                last = records[-1].offset
                apply_writes(rocksdb_partition(store, tp.partition), writes, last)
                counts[tp] += len(records)
                if last + 1 >= ends[ktp]:
                    remaining.discard(ktp)
        if remaining:
            log.warning("changelog catch-up idle, Faust's recovery reads the rest: %s", remaining)
    finally:
        await consumer.stop()
    return counts


class Store(RocksDBStore):
    """Faust's RocksDB store whose newly assigned active partitions first ``catch_up``, and
    whose changelog reads (Faust's recovery of the rest, standby replicas) keep the timer index
    as the worker's own writes do, and whose partition databases share one block cache and one
    memtable budget (``SharedOptions``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_rocksdict:
            self.rocksdb_options = SharedOptions(**(self.options or {}), use_rocksdict=True)

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        writes: dict[int, dict[bytes, bytes | None]] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            if message.key is None or message.key == OFFSET_KEY:
                continue
            writes.setdefault(message.partition, {})[message.key] = message.value
            offsets[message.partition] = max(message.offset, offsets.get(message.partition, -1))
        for partition, items in writes.items():
            apply_writes(rocksdb_partition(self, partition), items, offsets[partition])

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        options = getattr(self.app, "catch_up_options", None)
        if options is None:
            return
        standbys = self.app.assignor.assigned_standbys()
        topics = self.table.changelog_topic.topics
        tps = sorted(tp for tp in newly_assigned if tp.topic in topics and tp not in standbys)
        if not tps:
            return
        started = time.monotonic()
        try:
            counts = await catch_up(self, tps, options)
        except Exception:  # Faust's own recovery still reads the changelog, only slower
            log.exception("changelog catch-up failed; Faust's recovery reads it")
            return
        seconds = time.monotonic() - started
        total = sum(counts.values())
        log.info(
            "changelog catch-up: %d records in %.2f s (%.0f/s) into %s",
            total,
            seconds,
            total / seconds if seconds else 0.0,
            [tp.partition for tp in tps],
        )


#: ``store="orderwatch-rocksdb://"`` names ``Store`` (Faust resolves stores by URL scheme)
register_store("orderwatch-rocksdb", f"{__name__}:Store")
