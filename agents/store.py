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

from faust.types import TP

from orderwatch.engine.cache import ShardCache
from orderwatch.engine.state import FORMAT_VERSION, StateFormatError

log = logging.getLogger("orderwatch.store")

#: Written next to the tables: whose state this is and in which format.
MARKER = "orderwatch-state.json"
#: Faust's key of the changelog offset inside each partition's database.
OFFSET_KEY = b"__faust\0offset__"

#: RocksDB options per partition database. Faust's defaults (a 2 GiB block cache and three
#: 64 MiB memtables per database) are sized for a machine of its own; these bound what a worker
#: with four partitions can take: 4 x (2 x 16 MiB memtables + the block cache).
WRITE_BUFFER_SIZE = 16 * 1024 * 1024
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

    def db(self, partition: int) -> Any:
        return self.store._db_for_partition(partition)

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        db = self.db(partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)

    def loader(self, partition: int) -> Callable[[str], bytes | None]:
        """The engine's read of a shard not in its cache."""

        def load(key: str) -> bytes | None:
            value: bytes | None = self.db(partition).get(key.encode())
            return value

        return load

    def scan(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every shard of the partition, in key order, one at a time (never all in memory)."""
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
