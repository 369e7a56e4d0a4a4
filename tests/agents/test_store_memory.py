"""RocksDB's memory in the worker (agents/store.py ``SharedOptions``): every partition database
of the process shares one block cache, and their memtables are charged to it, so RocksDB takes
one bounded figure however many partitions a worker owns."""

from __future__ import annotations

from pathlib import Path

from orderwatch.agents import store

MiB = 1024 * 1024


def options(cache_mb: int, write_buffer_mb: int) -> store.SharedOptions:
    found = store.rocksdb_options(cache_mb, write_buffer_mb)
    found.pop("driver")
    return store.SharedOptions(**found, use_rocksdict=True)


def test_partition_databases_share_one_cache_with_their_memtables_charged_to_it(
    tmp_path: Path,
) -> None:
    opts = options(4, 2)
    dbs = [opts.open(tmp_path / f"state-{p}.db") for p in range(4)]
    try:
        cache, manager = store.shared_memory(4 * MiB, 2 * MiB)
        assert manager is not None and manager.get_buffer_size() == 2 * MiB
        value = b"x" * 400
        for db in dbs:
            for i in range(20_000):
                db[b"o:%08d" % i] = value
        for db in dbs:
            db.flush()
            for i in range(0, 20_000, 3):
                assert db[b"o:%08d" % i] == value
        # four databases, ~32 MiB written and read back: one 4 MiB cache (its capacity is not
        # a hard limit for entries in use, hence the slack), not four caches and 2 x 4 MiB of
        # memtables each
        assert 0 < cache.get_usage() <= 5 * MiB
        assert manager.get_usage() <= 2 * MiB + MiB
    finally:
        for db in dbs:
            db.close()


def test_the_same_sizes_give_the_same_objects_and_no_write_buffer_budget_none() -> None:
    assert store.shared_memory(3 * MiB, MiB) is store.shared_memory(3 * MiB, MiB)
    cache, manager = store.shared_memory(3 * MiB, 0)
    assert manager is None and cache.get_usage() == 0
