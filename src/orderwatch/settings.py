"""Every knob of the worker, from ``ORDERWATCH_*`` environment variables (pydantic-settings).

``docs/configuration.md`` lists them; a test keeps that page and this model in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Worker settings; defaults suit the embedded broker of ``make demo``."""

    model_config = SettingsConfigDict(env_prefix="ORDERWATCH_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    app_id: str = Field("orderwatch", description="Faust app id: consumer group and table prefix")
    rules_dir: Path | None = Field(None, description="directory of rule files (default: ./rules)")
    rules_reload_interval: float = Field(
        5.0, ge=0, description="seconds between checks of the rules directory (0: SIGHUP only)"
    )

    topic_orders: str = Field("orders", description="order events topic")
    topic_payments: str = Field("payment-callbacks", description="payment callback topic")
    topic_inventory: str = Field("inventory", description="inventory events topic")
    topic_logistics: str = Field("logistics", description="logistics events topic")
    topic_blacklist: str = Field("blacklist", description="blacklist topic")
    topic_exceptions: str = Field("order-exceptions", description="where exceptions go")
    topic_dlq: str = Field("orderwatch-dlq", description="dead-letter topic for bad input")
    topic_commands: str = Field(
        "order-exception-commands", description="operator commands (acknowledge, resolve ...)"
    )
    topic_command_results: str = Field(
        "order-exception-command-results", description="one reply per operator command"
    )
    topic_actions: str = Field(
        "order-actions", description="remediation action events, for the executing systems"
    )
    topic_action_results: str = Field(
        "order-action-results", description="action.succeeded / action.failed from executors"
    )
    topic_kpis: str = Field("order-kpis", description="hourly KPI records (numerator, denominator)")
    partitions: int = Field(4, ge=1, description="partitions of internal topics and tables")

    clock: Literal["wall", "event"] = Field(
        "wall", description="detector clock: wall time, or largest occurred_at read (backfills)"
    )
    sweep_interval: float = Field(0.5, gt=0, le=1, description="seconds between deadline sweeps")
    retention: str = Field("14d", description="forget quiet finished state after this long")
    batch_max: int = Field(500, ge=1, description="events per agent batch")
    batch_within: float = Field(0.05, gt=0, description="seconds to wait to fill a batch")
    commit_interval: float = Field(
        10.0,
        gt=0,
        le=60,
        description="seconds between input offset commits, each writing the state changed since "
        "the last one first: longer writes a busy shard less often, a restart re-reads more",
    )

    align_drift: float = Field(
        60.0,
        ge=0,
        description="event-time mode: seconds of event time an input partition may be read ahead "
        "of the clock (the slowest input with a backlog, or one just read to its end that still "
        "holds it) before its fetching pauses, once it also holds 250 records the clock has not "
        "reached (watermark alignment, which bounds the events parked ahead of the clock; while "
        "an input with nothing left to read holds the clock, the others read on until 24,000 "
        "records wait past it); 0 never pauses",
    )

    on_processing_error: Literal["dead_letter", "fail"] = Field(
        "dead_letter",
        description="an unexpected error on one message: dead-letter it (internal_error) and go "
        "on, or stop the worker (exit 70) without committing it",
    )

    session_timeout: float = Field(6.0, description="Kafka consumer session timeout, seconds")
    fetch_max_wait: float = Field(
        0.1, gt=0, le=1.5, description="longest a consumer fetch waits for data, seconds"
    )
    heartbeat_interval: float = Field(1.0, description="Kafka consumer heartbeat, seconds")
    data_dir: Path = Field(Path(".orderwatch-data"), description="Faust local data directory")
    store: Literal["rocksdb", "memory"] = Field(
        "rocksdb",
        description="state table store: RocksDB in data_dir (restart reads the changelog's "
        "tail) or memory (every shard in RAM, whole changelog read at start)",
    )
    shard_cache: int = Field(
        20_000, ge=64, description="shards kept in memory per partition (rocksdb store)"
    )
    shard_cache_mb: int = Field(
        8,
        ge=0,
        description="stored MiB of the shards kept in memory per partition (rocksdb store; a "
        "decoded shard takes ~3x its stored size in RAM; 0: only ORDERWATCH_SHARD_CACHE bounds)",
    )
    rocksdb_block_cache_mb: int = Field(
        16,
        ge=1,
        description="RocksDB block cache shared by all the worker's partition databases, MiB "
        "(the memtables are charged to it)",
    )
    rocksdb_write_buffer_mb: int = Field(
        8,
        ge=0,
        description="RocksDB memtables of all the worker's partition databases together, MiB, "
        "charged to the block cache (write buffer manager); 0: up to 2 x 4 MiB per database",
    )
    state_mismatch: Literal["rebuild", "fail"] = Field(
        "rebuild",
        description="a state directory of another app id, shard format or partition count, "
        "or corrupt: rebuild it from the changelog, or refuse to start",
    )
    standby_replicas: int = Field(
        0, ge=0, description="standby copies of each state partition kept by other workers"
    )

    metrics_host: str = Field("127.0.0.1", description="bind address of /metrics and /healthz")
    metrics_port: int = Field(9464, ge=0, le=65535, description="port of /metrics (0: off)")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client key (mutual TLS)")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password")

    log_format: Literal["json", "console"] = Field("json", description="log output format")
    log_level: str = Field("INFO", description="log level")

    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL the alertmanager bridge posts to"
    )
    alertmanager_group_id: str = Field(
        "orderwatch-alertmanager-bridge", description="consumer group of the alertmanager bridge"
    )
    alertmanager_resolve_timeout: float = Field(
        300.0,
        gt=0,
        description="Alertmanager resolve_timeout, seconds: open alerts re-post at half",
    )

    @property
    def aligned(self) -> bool:
        """Watermark alignment is on: the event-time clock with a drift (``align_drift``). The
        app's fetch sizes, the router's pauses and the shell's record lead all follow it."""
        return self.clock == "event" and self.align_drift > 0
