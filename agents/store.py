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
- ``check_state_dir``: a directory that does not fit (another app id, another shard format or
  partition count, a database that does not open, a rebuild asked for) is never read as this
  worker's state: it is removed and the state rebuilt from the changelog, or, with
  ``ORDERWATCH_STATE_MISMATCH=fail``, the worker refuses to start with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from orderwatch.agents.faust_internals import register_store, rocksdb_partition
from orderwatch.engine.cache import ShardCache
from orderwatch.engine.state import FORMAT_VERSION, StateFormatError

log = logging.getLogger("orderwatch.store")

#: Written next to the tables: whose state this is and in which format.
MARKER = "orderwatch-state.json"
#: Faust's key of the changelog offset inside each partition's database.
OFFSET_KEY = b"__faust\0offset__"

#: RocksDB options per partition database. Faust's defaults (a 2 GiB block cache and three
#: 64 MiB memtables per database) are sized for a machine of its own; these bound what a worker
#: with four partitions can take: 4 x (2 x 4 MiB memtables + the block cache). Shards are
#: ~500 B and written once per commit: small memtables flush often and cost little.
WRITE_BUFFER_SIZE = 4 * 1024 * 1024
MAX_WRITE_BUFFER_NUMBER = 2


class StateDirMismatch(RuntimeError):
    """The state directory is not this worker's (and the policy says fail)."""


def rocksdb_options(block_cache_mb: int) -> dict[str, Any]:
    """``options`` of the table for Faust's RocksDB store."""
    return {
        "driver": "rocksdict",
        "write_buffer_size": WRITE_BUFFER_SIZE,
        "max_write_buffer_number": MAX_WRITE_BUFFER_NUMBER,
        "block_cache_size": block_cache_mb * 1024 * 1024,
        # Faust keeps 90 % of the process limit; a few hundred is plenty for four databases
        "max_open_files": 512,
    }


def _marker(app_id: str, partitions: int) -> dict[str, Any]:
    return {"app_id": app_id, "format": FORMAT_VERSION, "partitions": partitions}


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


class Writer:
    """Changed shards into the partition databases, and the changelog offsets they reached."""

    def __init__(self, store: Any, changelog: str, metrics: Any = None) -> None:
        self.store = store
        self.changelog = changelog
        self.metrics = metrics
        #: partition -> the send future of its last changelog write (the flush's end mark)
        self.pending: dict[int, Any] = {}
        #: cache lookups already counted in the metrics: (hits, misses)
        self._counted = (0, 0)
        #: partition -> the writes of the flush under way, applied as one RocksDB write batch
        #: by ``write_batches`` (a ``put`` per shard cost about twice as much per write)
        self.batches: dict[int, Any] = {}

    def db(self, partition: int) -> Any:
        return rocksdb_partition(self.store, partition)

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Into the partition's batch; ``write_batches`` applies it (any read here first)."""
        batch = self.batches.get(partition)
        if batch is None:
            from rocksdict import WriteBatch

            batch = self.batches[partition] = WriteBatch(raw_mode=True)
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)

    def write_batches(self) -> None:
        """Apply the pending writes, one batch per partition (atomic per partition)."""
        batches, self.batches = self.batches, {}
        for partition, batch in batches.items():
            self.db(partition).write(batch)

    def loader(self, partition: int) -> Callable[[str], bytes | None]:
        """The engine's read of a shard not in its cache."""

        def load(key: str) -> bytes | None:
            if self.batches:
                self.write_batches()  # read what was written
            value: bytes | None = self.db(partition).get(key.encode())
            return value

        return load

    def scan(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every shard of the partition, in key order, one at a time (never all in memory)."""
        if self.batches:
            self.write_batches()
        for key, value in self.db(partition).items():
            if key != OFFSET_KEY and value is not None:
                yield key, value

    def sent(self, partition: int, future: Any) -> None:
        self.pending[partition] = future

    def commit_offsets(self) -> int:
        """After the producer's flush: store each partition's changelog offset now on the
        broker, so a restart on this directory reads the changelog from there on."""
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

    def report(self, engines: Iterable[Any]) -> None:
        """The cache metrics, summed over the engines (every sweep tick: a few additions)."""
        if self.metrics is None:
            return
        hits = misses = size = 0
        for engine in engines:
            cache = engine.shards
            if isinstance(cache, ShardCache):
                hits += cache.hits
                misses += cache.misses
                size += len(cache)
        counted_hits, counted_misses = self._counted
        # engines come and go with partitions: count what grew, never negative
        if hits > counted_hits:
            self.metrics.shard_cache_lookups.labels(result="hit").inc(hits - counted_hits)
        if misses > counted_misses:
            self.metrics.shard_cache_lookups.labels(result="miss").inc(misses - counted_misses)
        self._counted = (hits, misses)
        self.metrics.shard_cache_shards.set(size)


def restore(shell: Any, writer: Writer, owned: set[int], capacity: int, tabledir: Any) -> int:
    """The shell's engines of newly owned partitions over their stores (``Shell.restore_store``).

    A stored value that is not a shard of a known format is never read as state: the directory
    is marked for a rebuild and the worker exits at once (status 3); started again, it rebuilds
    the state from the changelog (``check_state_dir``). Exiting is the safe way out: the state
    of the partitions is already half read, and the offsets of the inputs were not committed.
    """
    started = time.monotonic()
    try:
        loaded: int = shell.restore_store(owned, writer.scan, writer.loader, capacity)
    except StateFormatError as exc:
        log.critical("state directory %s cannot be read (%s): rebuilding at restart", tabledir, exc)
        ask_rebuild(Path(tabledir), str(exc))
        logging.shutdown()
        os._exit(3)
    seconds = time.monotonic() - started
    log.info("deadline index of %d stored shards rebuilt in %.2f s", loaded, seconds)
    if writer.metrics is not None:
        writer.metrics.state_restore_seconds.set(seconds)
    return loaded


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
    from rocksdict import WriteBatch

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
                batch = WriteBatch(raw_mode=True)
                for record in records:
                    if record.key is None or record.key == OFFSET_KEY:
                        continue
                    if record.value is None:
                        batch.delete(record.key)
                    else:
                        batch.put(record.key, record.value)
                rocksdb_partition(store, tp.partition).write(batch)
                last = records[-1].offset
                store.set_persisted_offset(tp, last)
                counts[tp] += len(records)
                if last + 1 >= ends[ktp]:
                    remaining.discard(ktp)
        if remaining:
            log.warning("changelog catch-up idle, Faust's recovery reads the rest: %s", remaining)
    finally:
        await consumer.stop()
    return counts


class Store(RocksDBStore):
    """Faust's RocksDB store whose newly assigned active partitions first ``catch_up``."""

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
