"""The Alertmanager bridge: exception events from ``order-exceptions`` become Alertmanager alerts.

Alertmanager owns routing, grouping, silences and paging; orderwatch only tells it which
exceptions are open. Two halves, kept apart so the first can be tested without a socket:

* ``to_alert`` and ``OpenAlerts`` are pure: they turn an exception event into the JSON of the
  Alertmanager v2 API and keep the set of open alerts that must be re-posted before Alertmanager
  lets them expire (it forgets an alert once its ``endsAt`` has passed).
* ``run_bridge`` is the I/O shell: an aiokafka consumer, an aiohttp client, and a loop that
  posts, re-posts and commits offsets only once Alertmanager has accepted the alerts.

Alertmanager identifies an alert by its label set. Escalation changes the ``severity`` label, so
an escalated exception is a *new* alert in Alertmanager's eyes: the bridge ends the previous
label set when it posts the raised one, otherwise both would stay active.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import aiohttp
import structlog
from pydantic import ValidationError

from orderwatch.engine.catalog import RULE_DEFS
from orderwatch.events.exception import ExceptionEvent, Severity
from orderwatch.settings import Settings

log = structlog.get_logger(__name__)

#: One alert as ``POST /api/v2/alerts`` takes it (``postableAlert`` in Alertmanager's OpenAPI).
Alert: TypeAlias = dict[str, Any]

#: Severities from mild to severe: an escalation moves the label one step to the right.
SEVERITY_STEPS: tuple[Severity, ...] = ("low", "medium", "high", "critical")

#: Label names the bridge sets; also how it recognises its own alerts in Alertmanager.
LABEL_NAMES = ("alertname", "severity", "owner", "category", "exception_id")

#: Larger messages are not exception events; refusing them early bounds the parser's work.
MAX_MESSAGE_BYTES = 256 * 1024


def escalated_severity(severity: Severity, level: int) -> Severity:
    """The rule's severity raised one step per escalation level, capped at ``critical``."""
    index = SEVERITY_STEPS.index(severity) + max(level, 0)
    return SEVERITY_STEPS[min(index, len(SEVERITY_STEPS) - 1)]


def labels_for(event: ExceptionEvent, level: int | None = None) -> dict[str, str]:
    """The label set of the exception at ``level`` (default: the event's own level).

    Computed from the event alone, so a restarted bridge resolves the same label set it raised.
    """
    lvl = event.escalation_level if level is None else level
    return {
        "alertname": event.rule_id,
        "severity": escalated_severity(event.severity, lvl),
        "owner": event.owner,
        "category": event.category,
        "exception_id": event.exception_id,
    }


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_alert(event: ExceptionEvent, ends_at: datetime, level: int | None = None) -> Alert:
    """The Alertmanager alert for an exception, active until ``ends_at``.

    ``endsAt`` is never before ``startsAt``: Alertmanager rejects such an alert outright.
    """
    ends_at = max(ends_at, event.event_time)
    return {
        "labels": labels_for(event, level),
        "annotations": {"summary": event.summary, "actions": "\n".join(event.actions)},
        "startsAt": rfc3339(event.event_time),
        "endsAt": rfc3339(ends_at),
    }


def parse_exception(raw: bytes | None) -> ExceptionEvent:
    """Validate one message of the exceptions topic; ``ValueError`` says why it is not one."""
    if raw is None:
        raise ValueError("empty message (tombstone)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        return ExceptionEvent.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[:3]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in first
        )
        raise ValueError(detail) from None


def _is_resolvable(rule_id: str) -> bool:
    """Notifications (rules without a resolving condition) are never resolved by the detector.

    Unknown rule ids count as resolvable: tracking them costs a slot in a bounded set, while
    treating a resolvable rule as a notification would let its alert expire while still open.
    """
    rule = RULE_DEFS.get(rule_id)
    return rule is None or rule.resolvable


@dataclass
class _Tracked:
    alert: Alert
    level: int
    posted_at: datetime


@dataclass
class OpenAlerts:
    """Which exceptions are open, and what to post to Alertmanager when something happens.

    Every method takes ``now`` (the bridge's wall clock, which is what Alertmanager compares
    ``endsAt`` with) instead of reading a clock, so tests can drive time.

    Attributes:
        hold: how far past ``now`` an open alert's ``endsAt`` is set; must outlast a few re-posts.
        repost_every: re-post an open alert when its last post is older than this.
        max_open: at most this many open alerts are tracked; the oldest are dropped first (they
            then expire in Alertmanager after ``hold`` instead of staying up forever).
        notification_hold: how long a notification (a rule that never resolves) stays active.
        resolvable: whether a rule id can resolve; notifications are posted once, not tracked.
    """

    hold: timedelta = timedelta(minutes=10)
    repost_every: timedelta = timedelta(minutes=2, seconds=30)
    max_open: int = 10_000
    notification_hold: timedelta = timedelta(hours=1)
    resolvable: Callable[[str], bool] = _is_resolvable
    _open: OrderedDict[str, _Tracked] = field(default_factory=OrderedDict, init=False)
    _closed: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False)
    dropped: int = field(default=0, init=False)

    @classmethod
    def for_resolve_timeout(cls, resolve_timeout: float, max_open: int = 10_000) -> OpenAlerts:
        """Re-post at half Alertmanager's resolve_timeout, hold for twice it (four chances)."""
        return cls(
            hold=timedelta(seconds=2 * resolve_timeout),
            repost_every=timedelta(seconds=resolve_timeout / 2),
            max_open=max_open,
        )

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, exception_id: object) -> bool:
        return exception_id in self._open

    def apply(self, event: ExceptionEvent, now: datetime) -> list[Alert]:
        """Record one exception event; return the alerts to post for it (maybe none)."""
        ex_id = event.exception_id
        if event.state == "resolved":
            self._open.pop(ex_id, None)
            self._remember_closed(ex_id)
            return [to_alert(event, event.detected_at)]
        if ex_id in self._closed:
            return []  # a re-delivered raise or escalation of something already resolved
        if event.state == "inhibited":
            # v2 (CONTRACT section 9): never sent to alerting; an alert already firing for it
            # ends now. Released later, it comes back as a raise and is posted again.
            return [to_alert(event, event.detected_at)] if self._open.pop(ex_id, None) else []
        tracked = self._open.get(ex_id)
        if tracked is not None and tracked.level > event.escalation_level:
            return []  # an older state re-delivered after a newer one
        if not self.resolvable(event.rule_id):
            self._remember_closed(ex_id)
            return [to_alert(event, event.detected_at + self.notification_hold)]
        alerts: list[Alert] = []
        if event.escalation_level > 0:
            previous = labels_for(event, event.escalation_level - 1)
            if previous != labels_for(event):
                alerts.append(to_alert(event, event.detected_at, event.escalation_level - 1))
        alert = to_alert(event, now + self.hold)
        alerts.append(alert)
        self._track(ex_id, _Tracked(alert, event.escalation_level, now))
        return alerts

    def recover(self, alerts: Iterable[Alert], now: datetime) -> int:
        """Adopt the bridge's open alerts that Alertmanager still holds (``GET /api/v2/alerts``).

        Offsets are committed, so a restarted bridge never re-reads the raise of an exception
        that is still open; without this its alert would expire in Alertmanager while open.
        Returns how many were adopted.
        """
        adopted = 0
        for alert in alerts:
            labels = alert.get("labels") or {}
            ex_id = labels.get("exception_id")
            if not ex_id or ex_id in self._open or ex_id in self._closed:
                continue
            if not self.resolvable(str(labels.get("alertname", ""))):
                continue
            postable = {
                "labels": {k: str(labels[k]) for k in LABEL_NAMES if k in labels},
                "annotations": dict(alert.get("annotations") or {}),
                "startsAt": alert.get("startsAt"),
                "endsAt": rfc3339(now + self.hold),
            }
            # posted_at=now - repost_every: re-post at once to move endsAt ahead
            self._track(ex_id, _Tracked(postable, 0, now - self.repost_every))
            adopted += 1
        return adopted

    def due(self, now: datetime) -> list[Alert]:
        """Open alerts whose last post is old enough to re-post, with ``endsAt`` moved ahead."""
        alerts = []
        for tracked in self._open.values():
            if now - tracked.posted_at >= self.repost_every:
                tracked.posted_at = now
                tracked.alert = {**tracked.alert, "endsAt": rfc3339(now + self.hold)}
                alerts.append(tracked.alert)
        return alerts

    def _track(self, exception_id: str, tracked: _Tracked) -> None:
        self._open[exception_id] = tracked
        self._open.move_to_end(exception_id)
        while len(self._open) > self.max_open:
            old_id, _ = self._open.popitem(last=False)
            self.dropped += 1
            log.warning("alertmanager.open_set_full", dropped_exception_id=old_id)

    def _remember_closed(self, exception_id: str) -> None:
        self._closed[exception_id] = None
        self._closed.move_to_end(exception_id)
        while len(self._closed) > self.max_open:
            self._closed.popitem(last=False)


def coalesce(alerts: Iterable[Alert]) -> list[Alert]:
    """Keep the last alert per label set, in first-seen order.

    A batch read after downtime may hold a raise and its resolution; Alertmanager only needs the
    final word, and posting both would page for something already over.
    """
    latest: dict[tuple[tuple[str, str], ...], Alert] = {}
    for alert in alerts:
        latest[tuple(sorted(alert["labels"].items()))] = alert
    return list(latest.values())


# --------------------------------------------------------------------------------------------
# I/O shell


class AlertmanagerRejected(Exception):
    """Alertmanager answered 4xx: retrying the same body cannot help."""


@dataclass
class BridgeConfig:
    alertmanager_url: str
    bootstrap_servers: str
    topic: str = "order-exceptions"
    group_id: str = "orderwatch-alertmanager-bridge"
    resolve_timeout: float = 300.0
    max_open: int = 10_000
    poll_timeout: float = 1.0
    request_timeout: float = 10.0
    kafka: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> BridgeConfig:
        target = url or settings.alertmanager_url
        if not target:
            raise ValueError("no Alertmanager URL: set ORDERWATCH_ALERTMANAGER_URL or --url")
        return cls(
            alertmanager_url=target,
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topic_exceptions,
            group_id=settings.alertmanager_group_id,
            resolve_timeout=settings.alertmanager_resolve_timeout,
            kafka=kafka_security(settings),
        )


def kafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the broker's TLS/SASL settings."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        kwargs["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            kwargs["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return kwargs


def _api(url: str) -> str:
    return f"{url.rstrip('/')}/api/v2/alerts"


async def post_alerts(session: aiohttp.ClientSession, url: str, alerts: list[Alert]) -> None:
    """One ``POST /api/v2/alerts``; ``AlertmanagerRejected`` on 4xx, ``aiohttp`` errors else."""
    async with session.post(_api(url), json=alerts) as resp:
        if 400 <= resp.status < 500:
            raise AlertmanagerRejected(f"{resp.status}: {(await resp.text())[:500]}")
        resp.raise_for_status()


async def fetch_open_alerts(session: aiohttp.ClientSession, url: str) -> list[Alert]:
    """The alerts the bridge posted earlier and Alertmanager still holds, silenced ones too."""
    params = {"filter": 'exception_id=~".+"', "silenced": "true", "inhibited": "true"}
    async with session.get(_api(url), params=params) as resp:
        resp.raise_for_status()
        body = await resp.json()
    return [a for a in body if isinstance(a, dict)] if isinstance(body, list) else []


async def _deliver(
    session: aiohttp.ClientSession, url: str, alerts: list[Alert], stop: asyncio.Event
) -> bool:
    """Post until Alertmanager takes the alerts; False if asked to stop first.

    Transient failures are retried with backoff rather than dropped: offsets are committed only
    after delivery, and an alert lost here would be an exception nobody is paged for.
    """
    delay = 0.2
    while not stop.is_set():
        try:
            await post_alerts(session, url, alerts)
            return True
        except AlertmanagerRejected as exc:
            log.error("alertmanager.rejected", count=len(alerts), detail=str(exc))
            return True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("alertmanager.unreachable", error=str(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
    return False


def _now() -> datetime:
    return datetime.now(UTC)


async def run_bridge(
    config: BridgeConfig,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = _now,
) -> None:
    """Consume exception events and keep Alertmanager in step until ``stop`` is set."""
    from aiokafka import AIOKafkaConsumer

    stop = stop or asyncio.Event()
    state = OpenAlerts.for_resolve_timeout(config.resolve_timeout, config.max_open)
    timeout = aiohttp.ClientTimeout(total=config.request_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            adopted = state.recover(
                await fetch_open_alerts(session, config.alertmanager_url), clock()
            )
            log.info("alertmanager.recovered", open_alerts=adopted)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("alertmanager.recover_failed", error=str(exc))
        consumer = AIOKafkaConsumer(
            config.topic,
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **config.kafka,
        )
        await consumer.start()
        try:
            log.info("alertmanager.bridge_started", topic=config.topic, url=config.alertmanager_url)
            await _loop(consumer, session, state, config, stop, clock)
        finally:
            await consumer.stop()


async def _loop(
    consumer: Any,
    session: aiohttp.ClientSession,
    state: OpenAlerts,
    config: BridgeConfig,
    stop: asyncio.Event,
    clock: Callable[[], datetime],
) -> None:
    next_repost_check = time.monotonic()
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=int(config.poll_timeout * 1000))
        alerts: list[Alert] = []
        for records in batches.values():
            for record in records:
                try:
                    event = parse_exception(record.value)
                except ValueError as exc:
                    log.warning(
                        "alertmanager.malformed_exception",
                        partition=record.partition,
                        offset=record.offset,
                        reason=str(exc),
                    )
                    continue
                alerts.extend(state.apply(event, clock()))
        if time.monotonic() >= next_repost_check:
            # once a second is plenty: re-posts are due every resolve_timeout/2
            alerts.extend(state.due(clock()))
            next_repost_check = time.monotonic() + 1.0
        if alerts and not await _deliver(session, config.alertmanager_url, coalesce(alerts), stop):
            return
        if batches:
            await consumer.commit()
