"""The console's own view of the world: a SQLite projection of the exception, command and action
topics.

The topics are the truth. This database is a cache of them that the console can query fast (the
queue's filters are indexed) and throw away: delete the file and the projector rebuilds it by
reading the topics from the beginning. Every write is idempotent, so a re-delivered record changes
nothing: an exception row is replaced only by an event with a higher ``seq``, history rows are
keyed by ``(exception_id, seq)``, commands and replies by ``command_id``. The topic offsets read are
stored in the same transaction as the rows they produced, so a restart resumes where it stopped.

Everything here is synchronous ``sqlite3``: each query takes milliseconds, so the aiohttp handlers
call it directly on the event loop instead of paying for a thread hop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from orderwatch.normalize import is_valid_phone, mask_phone, mask_text

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: exception states that an operator's command produces, by the command type that produces them
STATE_OF_COMMAND = {
    "command.acknowledge": "acknowledged",
    "command.unacknowledge": "unacknowledged",
    "command.assign": "assigned",
    "command.snooze": "snoozed",
    "command.comment": "commented",
    "command.resolve": "resolved",
    "command.reopen": "reopened",
}
COMMAND_STATES = frozenset(STATE_OF_COMMAND.values())
#: the commands that decide a remediation action awaiting approval (CONTRACT 8 and 10)
DECISION_TYPES = frozenset({"command.approve", "command.reject"})
#: how far along its lifecycle (CONTRACT 10) an action status is: a row is replaced only by a
#: later stage, so re-delivered or reordered action events never move an action backwards
ACTION_STAGE = {
    "planned": 0,
    "awaiting_approval": 0,
    "requested": 1,
    "rejected": 1,
    "expired": 1,
    "cancelled": 1,
    "throttled": 1,
    "paused": 1,
    "succeeded": 2,
    "failed": 2,
}
#: the approval_ttl of the contract when the console does not know the rule's own (24 h)
DEFAULT_APPROVAL_TTL = 86400.0
#: states that move an exception back to open with its next escalation due escalate_after later
_REARMING = frozenset({"unacknowledged", "reopened"})
#: how far a command's issue time may lie after the event it produced (clock skew between hosts)
_SKEW = 5.0
#: urgency of a row that will not escalate: after every escalating one, by severity
_NO_ESCALATION = 1e12

SCHEMA = """
CREATE TABLE IF NOT EXISTS exceptions (
    exception_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    status TEXT NOT NULL,
    is_open INTEGER NOT NULL,
    subject TEXT NOT NULL,
    order_id TEXT,
    owner TEXT NOT NULL,
    assignee TEXT,
    acknowledged_by TEXT,
    snoozed_until REAL,
    resolved_by TEXT,
    resolution TEXT,
    inhibited_by TEXT,
    escalation_level INTEGER NOT NULL,
    raised_at REAL NOT NULL,
    event_time REAL NOT NULL,
    updated_at REAL NOT NULL,
    acknowledged_at REAL,
    resolved_at REAL,
    escalates_at REAL,
    urgency REAL NOT NULL,
    summary TEXT NOT NULL,
    search TEXT NOT NULL
);
-- substring search (trigram index) over id, subject, order, sku, summary and evidence values;
-- its rowid is the exception row's rowid, which the upsert below keeps
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5 (text, tokenize = 'trigram');
-- the full event, apart: queue scans and counts read compact rows, only the detail page reads this
CREATE TABLE IF NOT EXISTS docs (exception_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
-- each filter's index ends with the sort keys (urgency, raised_at): a page is chosen from the
-- index alone, and only its 50 rows are read from the table
CREATE INDEX IF NOT EXISTS ix_open_new ON exceptions (is_open, raised_at);
CREATE INDEX IF NOT EXISTS ix_open_urgent ON exceptions (is_open, urgency, raised_at);
CREATE INDEX IF NOT EXISTS ix_open_team
    ON exceptions (is_open, owner, severity, status, urgency, raised_at);
CREATE INDEX IF NOT EXISTS ix_rule ON exceptions (rule_id, is_open, urgency, raised_at);
CREATE INDEX IF NOT EXISTS ix_status ON exceptions (status, urgency, raised_at);
CREATE INDEX IF NOT EXISTS ix_assignee ON exceptions (assignee, is_open, urgency, raised_at);
CREATE INDEX IF NOT EXISTS ix_raised ON exceptions (raised_at, rule_id);
CREATE INDEX IF NOT EXISTS ix_acknowledged ON exceptions (acknowledged_at, owner, raised_at);
CREATE INDEX IF NOT EXISTS ix_resolved ON exceptions (resolved_at, owner, raised_at);
CREATE TABLE IF NOT EXISTS history (
    exception_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT,
    command_id TEXT,
    note TEXT,
    escalation_level INTEGER NOT NULL,
    assignee TEXT,
    resolution TEXT,
    PRIMARY KEY (exception_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    exception_id TEXT NOT NULL,
    type TEXT,
    actor TEXT,
    source TEXT,
    note TEXT,
    issued_at REAL,
    accepted INTEGER,
    reason TEXT,
    status TEXT,
    replied INTEGER NOT NULL DEFAULT 0,
    reply_order INTEGER,
    matched_seq INTEGER
);
CREATE INDEX IF NOT EXISTS ix_commands_exception ON commands (exception_id, reply_order);
-- remediation actions (CONTRACT 10): the latest status of each, and each status it reached
CREATE TABLE IF NOT EXISTS actions (
    action_id TEXT PRIMARY KEY,
    exception_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    order_id TEXT,
    type TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    stage INTEGER NOT NULL,
    target TEXT,
    params TEXT NOT NULL,
    at REAL NOT NULL,
    awaiting_since REAL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS ix_actions_exception ON actions (exception_id, awaiting_since, at);
CREATE INDEX IF NOT EXISTS ix_actions_status ON actions (status, awaiting_since, at);
CREATE TABLE IF NOT EXISTS action_history (
    action_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (action_id, status)
) WITHOUT ROWID;
-- approve / reject commands (who decided, and why), with their replies
CREATE TABLE IF NOT EXISTS decisions (
    command_id TEXT PRIMARY KEY,
    action_id TEXT,
    exception_id TEXT NOT NULL,
    type TEXT,
    actor TEXT,
    note TEXT,
    issued_at REAL,
    accepted INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS ix_decisions_action ON decisions (action_id, accepted);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "exception_id, seq, rule_id, category, severity, state, status, is_open, subject, order_id, "
    "owner, assignee, acknowledged_by, snoozed_until, resolved_by, resolution, inhibited_by, "
    "escalation_level, raised_at, event_time, updated_at, acknowledged_at, resolved_at, "
    "escalates_at, urgency, summary"
)


_UPDATE = ", ".join(
    f"{c} = excluded.{c}" for c in [*(c.strip() for c in _COLUMNS.split(",")), "search"][1:]
)


def ts(value: Any) -> float | None:
    """An RFC 3339 string (or None) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _seq(doc: Mapping[str, Any]) -> int:
    """``seq`` of an event; for a v1 event (no seq) an order that is right for its three states."""
    seq = doc.get("seq")
    if isinstance(seq, int):
        return seq
    state = doc.get("state")
    if state == "resolved":
        return 10
    return 1 + int(doc.get("escalation_level") or 0)


def _status(doc: Mapping[str, Any]) -> str:
    status = doc.get("status")
    if isinstance(status, str):
        return status
    return "resolved" if doc.get("state") == "resolved" else "open"


@dataclass(frozen=True)
class QueueFilter:
    """What the queue page asks for; every field is optional."""

    owner: str | None = None
    severity: str | None = None
    rule_id: str | None = None
    status: str | None = None  # None: every open status
    assignee: str | None = None
    text: str | None = None
    sort: str = "urgent"  # or "newest"
    page: int = 1
    page_size: int = 50


@dataclass
class Changes:
    """What one applied batch changed, for the live updates."""

    exceptions: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


class Store:
    """The projection database; one per console replica."""

    def __init__(
        self,
        path: Path | str,
        escalate_after: Mapping[str, float | None],
        approval_ttl: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        """``approval_ttl``: by ``(rule_id, action type)``, from the rule files (CONTRACT 10)."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.escalate_after = dict(escalate_after)
        self.approval_ttl = dict(approval_ttl or {})
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # 100,000 open exceptions are ~60 MB: keep them in memory rather than re-reading pages
        self.db.execute("PRAGMA cache_size=-131072")
        self.db.execute("PRAGMA mmap_size=268435456")
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.executescript(SCHEMA)
        self._unanalyzed = 0
        self._reply_order = int(
            self.db.execute("SELECT COALESCE(MAX(reply_order), 0) FROM commands").fetchone()[0]
        )

    def close(self) -> None:
        self.db.close()

    # -- offsets ---------------------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, partition, next_offset FROM offsets")
        return {(r[0], r[1]): r[2] for r in rows}

    # -- writes ----------------------------------------------------------------------------

    def apply(
        self,
        exceptions: Iterable[Mapping[str, Any]] = (),
        commands: Iterable[Mapping[str, Any]] = (),
        replies: Iterable[Mapping[str, Any]] = (),
        offsets: Mapping[tuple[str, int], int] | None = None,
        actions: Iterable[Mapping[str, Any]] = (),
    ) -> Changes:
        """Apply one batch read from the topics in one transaction, with the offsets it reached."""
        changes = Changes()
        touched: set[str] = set()
        self.db.execute("BEGIN")
        try:
            for cmd in commands:
                self._command(cmd)
                touched.add(str(cmd.get("exception_id")))
            for doc in exceptions:
                if self._exception(doc):
                    changes.exceptions.append(dict(doc))
                if doc.get("state") in COMMAND_STATES:
                    touched.add(str(doc["exception_id"]))
            for reply in replies:
                self._reply(reply)
                changes.replies.append(dict(reply))
                touched.add(str(reply.get("exception_id")))
            for exception_id in touched:
                self._match(exception_id)
            for event in actions:
                if self._action(event):
                    changes.actions.append(dict(event))
            for (topic, partition), offset in (offsets or {}).items():
                self.db.execute(
                    "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                    (topic, partition, offset),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._unanalyzed += len(changes.exceptions)
        return changes

    def analyze_if_grown(self) -> bool:
        """Refresh the planner's statistics once the data grew by a fifth (or 1,000 rows).

        Without them SQLite may walk the urgency index through 100,000 rows to find the 50 of
        one team, instead of the team's index: ANALYZE is what keeps every filter fast.
        """
        if self._unanalyzed < 1000:
            return False
        total = int(self.db.execute("SELECT COUNT(*) FROM exceptions").fetchone()[0])
        if self._unanalyzed < total // 5:
            return False
        self.db.execute("ANALYZE")
        self._unanalyzed = 0
        return True

    def _escalates_at(
        self, doc: Mapping[str, Any], status: str, level: int, previous: float | None
    ) -> float | None:
        """When the exception escalates next, as the detector will judge it (CONTRACT 6, 8)."""
        after = self.escalate_after.get(str(doc["rule_id"]))
        if status != "open" or after is None or level >= 3:
            return None
        state = doc["state"]
        detected = ts(doc["detected_at"]) or 0.0
        if state == "raised" and _seq(doc) == 1:
            return (ts(doc["event_time"]) or detected) + after
        if state in ("escalated", "raised") or state in _REARMING:
            return detected + after
        return previous if previous is not None else detected + after

    def _exception(self, doc: Mapping[str, Any]) -> bool:
        """Upsert one exception event; False when it was already known (a re-delivery)."""
        exception_id = str(doc["exception_id"])
        seq = _seq(doc)
        status = _status(doc)
        state = str(doc["state"])
        detected = ts(doc["detected_at"]) or 0.0
        level = int(doc.get("escalation_level") or 0)
        note = doc.get("note")
        actor: str | None = None
        if state in ("raised", "escalated", "inhibited"):
            actor = "orderwatch"
        elif state == "acknowledged":
            actor = doc.get("acknowledged_by")
        elif state == "resolved" and doc.get("resolved_by") != "operator":
            actor = "rule"
        inserted = self.db.execute(
            "INSERT OR IGNORE INTO history (exception_id, seq, state, status, at, actor, note, "
            "escalation_level, assignee, resolution) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                exception_id,
                seq,
                state,
                status,
                detected,
                actor,
                note,
                level,
                doc.get("assignee"),
                doc.get("resolution"),
            ),
        ).rowcount
        if not inserted:
            return False
        row = self.db.execute(
            "SELECT seq, raised_at, acknowledged_at, escalates_at FROM exceptions "
            "WHERE exception_id = ?",
            (exception_id,),
        ).fetchone()
        raised_at = detected
        acknowledged_at = detected if state == "acknowledged" else None
        if row is not None:
            raised_at = min(row["raised_at"], detected)
            if row["acknowledged_at"] is not None:
                acknowledged_at = min(row["acknowledged_at"], acknowledged_at or 1e18)
            if row["seq"] >= seq:
                # an older event arriving late: it only adds history and first times
                self.db.execute(
                    "UPDATE exceptions SET raised_at = ?, acknowledged_at = ? "
                    "WHERE exception_id = ?",
                    (raised_at, acknowledged_at, exception_id),
                )
                return True
        escalates = self._escalates_at(
            doc, status, level, row["escalates_at"] if row is not None else None
        )
        urgency = (
            escalates if escalates is not None else _NO_ESCALATION + SEVERITY_RANK[doc["severity"]]
        )
        evidence = doc.get("evidence") or {}
        values = evidence.get("values") or {} if isinstance(evidence, Mapping) else {}
        search = " ".join(
            str(x)
            for x in (
                exception_id,
                doc.get("subject"),
                doc.get("order_id"),
                doc.get("sku"),
                doc.get("summary"),
                *[v for v in values.values() if v is not None],
            )
            if x
        ).casefold()
        self.db.execute(
            "INSERT OR REPLACE INTO docs VALUES (?, ?)", (exception_id, orjson.dumps(dict(doc)))
        )
        rowid = self.db.execute(
            f"INSERT INTO exceptions ({_COLUMNS}, search) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            f"?, ?) ON CONFLICT (exception_id) DO UPDATE SET {_UPDATE} RETURNING rowid",
            (
                exception_id,
                seq,
                doc["rule_id"],
                doc.get("category") or "",
                doc["severity"],
                state,
                status,
                int(status != "resolved"),
                doc.get("subject") or "",
                doc.get("order_id"),
                doc.get("owner") or "",
                doc.get("assignee"),
                doc.get("acknowledged_by"),
                ts(doc.get("snoozed_until")),
                doc.get("resolved_by"),
                doc.get("resolution"),
                doc.get("inhibited_by"),
                level,
                raised_at,
                ts(doc.get("event_time")) or detected,
                detected,
                acknowledged_at,
                detected if status == "resolved" else None,
                escalates,
                urgency,
                doc.get("summary") or "",
                search,
            ),
        ).fetchone()[0]
        if row is not None:
            self.db.execute("DELETE FROM search_fts WHERE rowid = ?", (rowid,))
        self.db.execute("INSERT INTO search_fts (rowid, text) VALUES (?, ?)", (rowid, search))
        return True

    def _command(self, cmd: Mapping[str, Any]) -> None:
        """A command read from the commands topic (or sent by this console): who did what."""
        command_id = cmd.get("event_id")
        exception_id = cmd.get("exception_id")
        if not isinstance(command_id, str) or not isinstance(exception_id, str):
            return
        if cmd.get("type") in DECISION_TYPES:
            self._decision(cmd, command_id, exception_id)
        self.db.execute(
            "INSERT INTO commands (command_id, exception_id, type, actor, source, note, issued_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (command_id) DO UPDATE SET "
            "type = excluded.type, actor = excluded.actor, source = excluded.source, "
            "note = excluded.note, issued_at = excluded.issued_at",
            (
                command_id,
                exception_id,
                cmd.get("type"),
                cmd.get("actor"),
                cmd.get("source"),
                None,  # a command's note is unmasked: the history shows the event's, masked
                _safe_ts(cmd.get("occurred_at")),
            ),
        )

    def _reply(self, reply: Mapping[str, Any]) -> None:
        command_id = reply.get("command_id")
        exception_id = reply.get("exception_id")
        if not isinstance(command_id, str) or not isinstance(exception_id, str):
            return
        known = self.db.execute(
            "SELECT replied FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        if known is not None and known[0]:
            return  # a repeated reply: the first one already counted
        self.db.execute(
            "UPDATE decisions SET accepted = ?, reason = ? WHERE command_id = ?",
            (int(bool(reply.get("accepted"))), reply.get("reason"), command_id),
        )
        self._reply_order += 1
        self.db.execute(
            "INSERT INTO commands (command_id, exception_id, accepted, reason, status, replied, "
            "reply_order) VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (command_id) DO UPDATE SET "
            "accepted = excluded.accepted, reason = excluded.reason, status = excluded.status, "
            "replied = 1, reply_order = excluded.reply_order",
            (
                command_id,
                exception_id,
                int(bool(reply.get("accepted"))),
                reply.get("reason"),
                reply.get("status"),
                self._reply_order,
            ),
        )

    def _decision(self, cmd: Mapping[str, Any], command_id: str, exception_id: str) -> None:
        """An approve or reject read from the commands topic: who decided which action, and why.

        Its reply may come first (another console sent it): the reply's columns are kept then.
        The note is masked here whatever tool sent it (CONTRACT 8: notes are stored masked).
        """
        note = cmd.get("note")
        action = cmd.get("action_id")
        self.db.execute(
            "INSERT INTO decisions (command_id, action_id, exception_id, type, actor, note, "
            "issued_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (command_id) DO UPDATE SET "
            "action_id = excluded.action_id, type = excluded.type, actor = excluded.actor, "
            "note = excluded.note, issued_at = excluded.issued_at",
            (
                command_id,
                action if isinstance(action, str) else None,
                exception_id,
                cmd.get("type"),
                cmd.get("actor") if isinstance(cmd.get("actor"), str) else None,
                mask_text(note)[:2000] if isinstance(note, str) else None,
                _safe_ts(cmd.get("occurred_at")),
            ),
        )
        # its reply read first (in an earlier batch): keep what it said
        self.db.execute(
            "UPDATE decisions SET (accepted, reason) = (SELECT accepted, reason FROM commands "
            "WHERE command_id = ? AND replied = 1) WHERE command_id = ? AND accepted IS NULL",
            (command_id, command_id),
        )

    def _action(self, event: Mapping[str, Any]) -> bool:
        """Upsert one action event (CONTRACT 10); False when it changed nothing (a re-delivery).

        The row keeps the latest stage of the lifecycle; the history keeps every status reached
        (each at most once). Phone numbers in free-text params are masked (``_masked``).
        """
        action_id = str(event["action_id"])
        status = str(event["status"])
        at = ts(event["at"]) or 0.0
        inserted = self.db.execute(
            "INSERT OR IGNORE INTO action_history VALUES (?, ?, ?)", (action_id, status, at)
        ).rowcount
        if not inserted:
            return False
        stage = ACTION_STAGE.get(status, 1)
        row = self.db.execute(
            "SELECT stage, at, awaiting_since FROM actions WHERE action_id = ?", (action_id,)
        ).fetchone()
        awaiting_since = row["awaiting_since"] if row is not None else None
        if status == "awaiting_approval":
            awaiting_since = at
        if row is not None and (row["stage"], row["at"]) >= (stage, at):
            # an earlier status arriving late: it only adds history (and when it began waiting)
            self.db.execute(
                "UPDATE actions SET awaiting_since = ?, expires_at = ? WHERE action_id = ?",
                (awaiting_since, self._expiry(event, awaiting_since), action_id),
            )
            return True
        target = event.get("target")
        self.db.execute(
            "INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                action_id,
                str(event["exception_id"]),
                str(event.get("rule_id") or ""),
                event.get("order_id"),
                str(event["type"]),
                str(event.get("mode") or ""),
                status,
                stage,
                _masked_target(target),
                orjson.dumps(_masked(event.get("params") or {})).decode(),
                at,
                awaiting_since,
                self._expiry(event, awaiting_since),
            ),
        )
        return True

    def _expiry(self, event: Mapping[str, Any], awaiting_since: float | None) -> float | None:
        """When ``approval_ttl`` expires an action awaiting approval, on the rule's own TTL."""
        if awaiting_since is None:
            return None
        ttl = self.approval_ttl.get((str(event.get("rule_id")), str(event.get("type"))))
        return awaiting_since + (ttl if ttl is not None else DEFAULT_APPROVAL_TTL)

    def _match(self, exception_id: str) -> None:
        """Name who caused each operator state change: pair it with the accepted command.

        Exception events do not carry the command that made them; each accepted command publishes
        exactly one event, in the order the engine applied them (the order of the replies), so the
        k-th accepted command of a type pairs with the k-th unexplained event of its state.
        """
        commands = self.db.execute(
            "SELECT command_id, type, actor, note, issued_at FROM commands "
            "WHERE exception_id = ? AND accepted = 1 AND matched_seq IS NULL AND type IS NOT NULL "
            "ORDER BY reply_order",
            (exception_id,),
        ).fetchall()
        if not commands:
            return
        events = self.db.execute(
            "SELECT seq, state, at FROM history WHERE exception_id = ? AND command_id IS NULL "
            "AND (actor IS NULL OR state = 'acknowledged') ORDER BY seq",
            (exception_id,),
        ).fetchall()
        used: set[str] = set()
        for event in events:
            if event["state"] not in COMMAND_STATES:
                continue
            for cmd in commands:
                if cmd["command_id"] in used or STATE_OF_COMMAND.get(cmd["type"]) != event["state"]:
                    continue
                if cmd["issued_at"] is not None and cmd["issued_at"] > event["at"] + _SKEW:
                    continue
                used.add(cmd["command_id"])
                self.db.execute(
                    "UPDATE history SET actor = ?, command_id = ? "
                    "WHERE exception_id = ? AND seq = ?",
                    (cmd["actor"], cmd["command_id"], exception_id, event["seq"]),
                )
                self.db.execute(
                    "UPDATE commands SET matched_seq = ? WHERE command_id = ?",
                    (event["seq"], cmd["command_id"]),
                )
                break

    # -- reads -----------------------------------------------------------------------------

    def queue(self, f: QueueFilter) -> tuple[list[sqlite3.Row], int]:
        """One page of the queue and the number of rows matching the filters."""
        where: list[str] = []
        args: list[Any] = []
        if f.status:
            where.append("status = ?")
            args.append(f.status)
        else:
            where.append("is_open = 1")
        for column, value in (
            ("owner", f.owner),
            ("severity", f.severity),
            ("rule_id", f.rule_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if f.assignee:
            if f.assignee == "-":
                where.append("assignee IS NULL")
            else:
                where.append("assignee = ?")
                args.append(f.assignee)
        if f.text:
            text = f.text.casefold()
            if len(text) >= 3:  # the trigram index finds any substring of three or more
                where.append("rowid IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)")
                args.append('"' + text.replace('"', '""') + '"')
            else:
                where.append("instr(search, ?) > 0")
                args.append(text)
        clause = " AND ".join(where)
        order = "urgency, raised_at DESC" if f.sort == "urgent" else "raised_at DESC"
        total = int(
            self.db.execute(f"SELECT COUNT(*) FROM exceptions WHERE {clause}", args).fetchone()[0]
        )
        offset = max(f.page - 1, 0) * f.page_size
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM exceptions WHERE rowid IN (SELECT rowid FROM exceptions "
            f"WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?) ORDER BY {order}",
            [*args, f.page_size, offset],
        ).fetchall()
        return rows, total

    def exception(self, exception_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS}, doc FROM exceptions JOIN docs USING (exception_id) "
            "WHERE exception_id = ?",
            (exception_id,),
        ).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["doc"] = orjson.loads(row["doc"])
        return out

    def history(self, exception_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM history WHERE exception_id = ? ORDER BY seq", (exception_id,)
        ).fetchall()

    def command(self, command_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return row

    def actions_of(self, exception_id: str) -> list[dict[str, Any]]:
        """An exception's actions, oldest first, each with its status history and decision."""
        rows = self.db.execute(
            "SELECT * FROM actions WHERE exception_id = ? ORDER BY COALESCE(awaiting_since, at), "
            "action_id",
            (exception_id,),
        ).fetchall()
        return [self._action_out(r) for r in rows]

    def action(self, action_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM actions WHERE action_id = ?", (action_id,)).fetchone()
        return None if row is None else self._action_out(row)

    def actions(
        self, status: str | None, limit: int = 200, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Actions in one status (None: every status), with their exception's owner and subject:
        ``limit`` of them from ``offset`` (a page), and how many there are in all.

        Awaiting approval: the oldest first (the nearest to expiry); else the latest first.
        """
        where, args = ("a.status = ?", [status]) if status else ("1", [])
        order = "a.awaiting_since, a.action_id" if status == "awaiting_approval" else "a.at DESC"
        total = int(
            self.db.execute(f"SELECT COUNT(*) FROM actions a WHERE {where}", args).fetchone()[0]
        )
        rows = self.db.execute(
            f"SELECT a.*, e.owner AS owner, e.subject AS subject, e.status AS exception_status "
            f"FROM actions a LEFT JOIN exceptions e USING (exception_id) WHERE {where} "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return [self._action_out(r) for r in rows], total

    def awaiting_count(self) -> int:
        """How many actions await approval (the header's badge; one index lookup)."""
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM actions WHERE status = 'awaiting_approval'"
            ).fetchone()[0]
        )

    def _action_out(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["params"] = orjson.loads(row["params"])
        out["history"] = sorted(
            (
                dict(h)
                for h in self.db.execute(
                    "SELECT status, at FROM action_history WHERE action_id = ?",
                    (row["action_id"],),
                )
            ),
            key=lambda h: (ACTION_STAGE.get(h["status"], 1), h["at"]),
        )
        decided = self.db.execute(
            "SELECT type, actor, note, issued_at FROM decisions WHERE action_id = ? "
            "AND accepted = 1 ORDER BY issued_at LIMIT 1",
            (row["action_id"],),
        ).fetchone()
        out["decision"] = None if decided is None else dict(decided)
        return out

    def decision(self, command_id: str) -> sqlite3.Row | None:
        found: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM decisions WHERE command_id = ?", (command_id,)
        ).fetchone()
        return found

    def distinct(self, column: str) -> list[str]:
        """Values present in a filterable column (for the filter menus)."""
        assert column in ("owner", "rule_id", "assignee", "severity", "status")
        rows = self.db.execute(
            f"SELECT DISTINCT {column} FROM exceptions WHERE {column} IS NOT NULL ORDER BY 1"
        )
        return [r[0] for r in rows]

    def overview(self, now: float) -> dict[str, Any]:
        """The numbers behind the overview page's charts."""
        day = now - 86400
        # one pass over the covering index (is_open, owner, severity, status) for both tallies
        tally = self.db.execute(
            "SELECT owner, severity, status, COUNT(*) FROM exceptions WHERE is_open = 1 "
            "GROUP BY owner, severity, status"
        ).fetchall()
        by_team: dict[tuple[str, str], int] = {}
        by_status: dict[str, int] = {}
        for owner, severity, status, n in tally:
            by_team[(owner, severity)] = by_team.get((owner, severity), 0) + n
            by_status[status] = by_status.get(status, 0) + n
        per_hour = self.db.execute(
            "SELECT CAST((raised_at - ?) / 3600 AS INTEGER) AS h, COUNT(*) FROM exceptions "
            "WHERE raised_at >= ? GROUP BY h",
            (day, day),
        ).fetchall()
        top_rules = self.db.execute(
            "SELECT rule_id, COUNT(*) AS n FROM exceptions WHERE raised_at >= ? "
            "GROUP BY rule_id ORDER BY n DESC LIMIT 10",
            (day,),
        ).fetchall()
        mtta = self.db.execute(
            "SELECT owner, AVG(acknowledged_at - raised_at), COUNT(*) FROM exceptions "
            "WHERE acknowledged_at IS NOT NULL AND acknowledged_at >= ? GROUP BY owner",
            (day,),
        ).fetchall()
        mttr = self.db.execute(
            "SELECT owner, AVG(resolved_at - raised_at), COUNT(*) FROM exceptions "
            "WHERE resolved_at IS NOT NULL AND resolved_at >= ? GROUP BY owner",
            (day,),
        ).fetchall()
        hours = [0] * 24
        for h, n in per_hour:
            if 0 <= h < 24:
                hours[h] += n
        return {
            "by_owner_severity": [(o, s, n) for (o, s), n in by_team.items()],
            "by_status": by_status,
            "per_hour": hours,
            "top_rules": [tuple(r) for r in top_rules],
            "mtta": {r[0]: (r[1], r[2]) for r in mtta},
            "mttr": {r[0]: (r[1], r[2]) for r in mttr},
            "mtta_all": _weighted(mtta),
            "mttr_all": _weighted(mttr),
        }


def _weighted(rows: Sequence[Sequence[Any]]) -> float | None:
    n = sum(r[2] for r in rows)
    return sum(r[1] * r[2] for r in rows) / n if n else None


#: action params that hold free text (a rule file's reason, an executor's detail): phone numbers
#: in them are masked; identifiers (payment_id, tracking_no, value_hash) are shown as sent, since
#: an approver must see which payment is refunded and the engine puts no personal data there
_FREE_TEXT = frozenset({"reason", "note", "detail", "message", "remark", "comment"})
_PHONE_KEYS = ("phone", "mobile", "tel")


def _masked_target(target: Any) -> str | None:
    """The target as sent (a payment_id: the approver must see which payment is refunded, and
    the exception's own evidence shows it), unless it is shaped like a phone number."""
    if not isinstance(target, str):
        return None
    if is_valid_phone(target, "CN") or is_valid_phone(target, None):
        return mask_phone(target)
    return target


def _masked(value: Any, key: str = "") -> Any:
    """``value`` (an action's params) with phone numbers masked where people's text can be."""
    if isinstance(value, str):
        if any(k in key for k in _PHONE_KEYS):
            return mask_phone(value)
        return mask_text(value) if key in _FREE_TEXT else value
    if isinstance(value, Mapping):
        return {str(k): _masked(v, str(k).lower()) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, key) for v in value]
    return value


def _safe_ts(value: Any) -> float | None:
    try:
        return ts(value)
    except (TypeError, ValueError):
        return None
