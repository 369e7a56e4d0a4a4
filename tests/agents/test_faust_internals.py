"""What the worker leans on inside Faust and aiokafka (``agents/faust_internals.py``), checked
against the installed versions.

An upgrade that removes or renames one of these fails here, not silently in production, where
the worker would fall back to Faust's own behaviour (slower, later detection) or, for the crash
path, lose the guarantee that an agent's error never commits what it did not process.
"""

from __future__ import annotations

import asyncio
import collections
import inspect

import aiokafka
import faust
import mode
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from orderwatch.agents import faust_internals
from orderwatch.agents.faust_internals import TunedApp


def source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def test_faust_hands_every_agent_the_apps_error_handler() -> None:
    """The crash path (``app.crash``) hangs on ``App._on_agent_error``: Faust passes it as each
    agent's ``on_error`` and awaits it before its supervisor restarts the agent."""
    assert "on_error=self._on_agent_error" in source(faust.App.agent)
    app = TunedApp("internals-test", broker="kafka://127.0.0.1:1", store="memory://")

    @app.agent(app.topic("t"))
    async def agent(stream: object) -> None:  # pragma: no cover (never run)
        pass

    assert agent._on_error == app._on_agent_error  # type: ignore[attr-defined]
    executed = source(faust.agents.Agent._execute_actor)
    crashed = executed[executed.index("except Exception") :]
    assert "await self._on_error(self, exc)" in crashed
    assert crashed.index("self._on_error") < crashed.index("aref.crash"), "before the restart"


def test_take_events_acks_the_whole_batch_when_it_is_left() -> None:
    """Why an exception may never leave an agent: the batch is acked in a ``finally``."""
    taken = source(faust.Stream.take_events)
    assert "finally:" in taken and "await self.ack(event)" in taken


def test_the_app_hooks_override_methods_faust_calls() -> None:
    for name in ("_new_producer", "_new_consumer", "_on_agent_error", "on_init_dependencies"):
        assert name in vars(faust.App) or any(name in vars(k) for k in faust.App.__mro__[1:]), name
        assert name in vars(TunedApp), name
    assert "self.sensors.add(self.monitor)" in source(faust.App), "what TunedApp undoes"


def test_the_fetcher_and_the_consumer_still_have_what_the_tweaks_set() -> None:
    fetcher_init = source(Fetcher.__init__)
    assert "self._records" in fetcher_init and "self._fetch_max_wait_ms" in fetcher_init
    assert inspect.iscoroutinefunction(Fetcher.fetched_records)
    assert "self._fetcher" in source(aiokafka.AIOKafkaConsumer)
    assert "self._thread" in source(faust_aiokafka.Consumer)
    assert hasattr(faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer")
    assert "self._committed_offset" in source(faust_consumer.Consumer.__init__)
    assert "self._read_offset" in source(faust_consumer.Consumer.__init__)
    assert "self._committed_offset.update(" in source(faust_consumer.Consumer.perform_seek)
    assert hasattr(faust_aiokafka.Producer, "_ensure_producer")
    # fetch_times: the time of a partition's last fetch response (the event clock's idleness)
    assert "last_poll_timestamp" in source(aiokafka.AIOKafkaConsumer.last_poll_timestamp)


def test_the_fetch_loop_still_skips_records_of_partitions_gone_from_its_active_set() -> None:
    """Why ``InputPause`` filters a copy in ``StreamGate.fetch`` and not Faust's own set (through
    ``Consumer.pause_partitions``): the loop checks each handed-over record against the very set
    it passed to ``_getmany``, so a partition paused mid-batch lost its records in hand; and
    the stream buffer's ``on_buffer_drop`` adds a partition back whatever paused it. If Faust
    stops doing either, ``pause_partitions`` may do; until then the gate must."""
    getmany = source(faust_consumer.Consumer.getmany)
    assert "tp in active_partitions" in getmany and "_wait_next_records" in getmany
    assert "active_partitions.add(tp)" in source(faust_consumer.Consumer.on_buffer_drop)
    # aiokafka hands over the partitions it is asked for, in its buffer's order (shard_first)
    fetched = source(Fetcher.fetched_records)
    assert "for tp in list(self._records.keys()):" in fetched
    assert "if partitions and tp not in partitions:" in fetched


def test_direct_delivery_still_matches_faust_s_fetch_loop() -> None:
    """The loop's call ``wait_first(callback(message), suspend_flow.wait())`` and the events
    ``direct_delivery`` reads (see ``test_direct_delivery.py`` for its behaviour)."""
    drain = source(faust_consumer.Consumer._drain_messages)
    assert "self.suspend_flow.wait()" in drain and "wait_first(" in drain
    assert "self.suspend_flow" in source(faust_consumer.Consumer.__init__)
    service_init = source(mode.Service.__init__)
    assert "self._stopped" in service_init and "self._crashed" in service_init


def test_every_internal_is_in_the_one_module() -> None:
    """``app.py`` builds the topology on public Faust API and ``faust_internals`` only."""
    from orderwatch.agents import app, shell, store, telemetry

    for module in (app, shell, store, telemetry):
        text = inspect.getsource(module)
        for private in (
            "._thread",
            "._fetcher",
            "._read_offset",
            "._committed_offset",
            "._ensure_producer",
            "._records",
            "._db_for_partition",
            "STORES.",
        ):
            assert private not in text, (module.__name__, private)
    assert faust_internals.committed_offset.__module__ == faust_internals.__name__


def test_the_rocksdb_store_still_has_what_the_local_state_store_uses() -> None:
    """``rocksdb_partition`` and ``register_store`` (the RocksDB state store, agents/store.py)."""
    from faust.stores import STORES
    from faust.stores.rocksdb import Store

    assert "def _db_for_partition" in source(Store)
    assert isinstance(STORES.aliases, dict)
    assert "rocksdb" in STORES.aliases
    # ``SharedOptions`` (agents/store.py) replaces the store's ``rocksdb_options`` and rebuilds
    # ``RocksDBOptions.as_options`` from these fields: were either renamed, the worker would
    # silently fall back to a cache per partition database
    from faust.stores.rocksdb import RocksDBOptions

    store_source = source(Store)
    assert "self.rocksdb_options = " in store_source and "self.use_rocksdict" in store_source
    assert "self.rocksdb_options.open(" in store_source
    options_init = source(RocksDBOptions.__init__)
    for field in (
        "block_cache_size",
        "bloom_filter_size",
        "write_buffer_size",
        "target_file_size_base",
        "max_write_buffer_number",
        "max_open_files",
        "extra_options",
    ):
        assert f"self.{field}" in options_init, field
    assert "def as_options" in source(RocksDBOptions)


def test_the_stream_gate_still_matches_faust_s_rebalance_and_fetch_loop() -> None:
    """What ``StreamGate`` (``test_stream_gate.py`` for its behaviour) leans on."""
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery

    # the flag and count the gate reads: set by the rebalance listener first thing
    begin = source(faust.App.on_rebalance_start)
    assert "self.rebalancing = True" in begin and "self.rebalancing_count += 1" in begin
    assert "self.rebalancing = False" in source(faust.App.on_rebalance_end)
    listener = source(faust_aiokafka.ConsumerRebalanceListener.on_partitions_revoked)
    assert "app.on_rebalance_start()" in listener
    # the end of a recovery, in this order: seek, clear the streams' queues, end the rebalance
    done = source(Recovery.on_recovery_completed)
    seek, clear, end = (
        done.index("consumer.perform_seek()"),
        done.index("flow_control.resume()"),
        done.index("on_rebalance_end()"),
    )
    assert seek < clear < end
    # the three methods wrapped, called as the fetch loop calls them
    waiting = source(faust_consumer.Consumer._wait_next_records)
    assert "self._getmany(" in waiting and "active_partitions=active_partitions" in waiting
    drain = source(faust_consumer.Consumer._drain_messages)
    assert "getmany = self.getmany" in drain and "set_read_offset(tp, offset)" in drain
    assert "await self.perform_seek()" in source(faust_consumer.Consumer.getmany)
    # the buffer-pressure set whose non-emptiness shortens a fetch's wait (PRESSURE_POLL)
    assert "self._buffered_partitions.add(tp)" in source(faust_consumer.Consumer.on_buffer_full)
    assert "buffered_partitions.discard(tp)" in source(faust_consumer.Consumer.on_buffer_drop)
    assert "getmany(timeout=1.0)" in drain
    seeking = source(faust_consumer.Consumer.perform_seek)
    assert "read_offset.update(" in seeking and "self._committed_offset.update(" in seeking
    assert inspect.iscoroutinefunction(faust_consumer.Consumer.seek)
    # aiokafka: no seek without a committed offset; records of partitions not asked for kept
    assert "if offset and offset > 0:" in source(aiokafka.AIOKafkaConsumer.seek_to_committed)
    assert "if partitions and tp not in partitions:" in source(Fetcher.fetched_records)
    assert isinstance(vars(TableManager)["changelog_topics"], property)


def test_the_group_member_id_and_leave_group_are_still_where_membership_reads_them() -> None:
    """``group_member`` and ``leave_group`` (``agents/membership.py``: a restart after kill -9
    ends its dead incarnation's membership). Were these renamed, ``group_member`` would return
    None and nothing would be recorded: restarts would wait for the dead member's session
    again, silently; ``test_group_membership.py`` shows the behaviour against the broker."""
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.group import LeaveGroupRequest

    assert "self._coordinator = " in source(aiokafka.AIOKafkaConsumer)
    assert "self.member_id = " in source(GroupCoordinator.__init__)
    assert inspect.iscoroutinefunction(AIOKafkaClient.coordinator_lookup)
    assert CoordinationType.GROUP == 0
    assert list(inspect.signature(LeaveGroupRequest.__init__).parameters) == [
        "self",
        "group",
        "member_id",
    ]
    app = TunedApp("internals-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert faust_internals.group_member(app) is None  # not joined: the fallback, no error


def test_the_prompt_table_manager_is_faust_s_on_start_without_its_sleep() -> None:
    """``PromptTableManager``: were Faust's ``on_start`` to do more than sleep and these two
    calls, the override would skip it; here that shows before a release does."""
    from faust.tables import TableManager

    from orderwatch.agents.faust_internals import PromptTableManager

    def body(fun: object) -> list[str]:
        lines = [line.strip() for line in source(fun).splitlines()]
        return [line for line in lines if line and not line.startswith(('"""', "async def"))]

    assert body(TableManager.on_start) == [
        "await self.sleep(1.0)",
        "if not self.should_stop:",
        "await self._update_channels()",
        "await self.recovery.start()",
    ]
    assert body(PromptTableManager.on_start) == body(TableManager.on_start)[1:]
    app = TunedApp(
        "internals-test",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        TableManager=PromptTableManager,
    )
    assert isinstance(app.tables, PromptTableManager)


def test_a_seek_from_the_worker_s_thread_deletes_from_the_buffer_the_fetcher_hands_out_of() -> None:
    """Why ``Buffered`` tolerates a second delete: Faust's ``seek`` calls aiokafka's from the
    worker's thread, and aiokafka's ``seek_to`` deletes the partition's buffered records that
    the consumer's thread reads and deletes in ``fetched_records``. If either stops deleting,
    or Faust seeks through the consumer's thread, ``Buffered`` may go."""
    assert "del self._records[tp]" in source(Fetcher.seek_to)
    assert "del self._records[tp]" in source(Fetcher.fetched_records)
    assert "self._ensure_consumer().seek(" in source(faust_aiokafka.AIOKafkaConsumerThread.seek)


def test_a_partition_deleted_twice_from_the_buffer_is_not_an_error() -> None:
    """The race of a seek with a hand-out, played in one thread: both delete the entry."""
    a, b, c = (TopicPartition(topic, 0) for topic in "abc")
    records: collections.OrderedDict[TopicPartition, int] = collections.OrderedDict(
        [(a, 1), (b, 2), (c, 3)]
    )

    class FakeFetcher:
        _records = records

        async def fetched_records(self) -> dict[TopicPartition, int]:
            drained = {}
            for tp in list(self._records.keys()):
                value = self._records[tp]
                fetcher._records.pop(tp)  # the seek, from the other thread
                del self._records[tp]  # aiokafka's own delete after taking the records
                drained[tp] = value
            return drained

    fetcher = FakeFetcher()
    serve = faust_internals.shard_first(fetcher, "b")
    assert isinstance(fetcher._records, faust_internals.Buffered)
    drained = asyncio.run(serve())
    assert list(drained.items()) == [(b, 2), (a, 1), (c, 3)]  # every partition's, b first
    assert not fetcher._records
    plain = collections.OrderedDict([(a, 1)])  # aiokafka's own buffer
    del plain[a]
    with pytest.raises(KeyError):
        del plain[a]  # deleted twice: what crashed the surviving worker
