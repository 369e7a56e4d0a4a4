"""The console's pure parts: the SQLite projection, sign-in and sessions, languages, texts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch.console.auth import (
    ProxyAuth,
    Signer,
    User,
    add_account,
    load_accounts,
    verify_password,
)
from orderwatch.console.i18n import (
    LABELS,
    Translator,
    load_rule_translations,
    negotiate,
)
from orderwatch.console.settings import ConsoleSettings
from orderwatch.console.store import QueueFilter, Store, ts
from orderwatch.rulefiles import default_rules_dir, load_catalog

T0 = "2026-12-01T10:00:00Z"


def exc(
    exception_id: str = "E1", seq: int = 1, state: str = "raised", **over: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "exception_id": exception_id,
        "rule_id": "payment.duplicate",
        "category": "payment",
        "severity": "high",
        "state": state,
        "subject": "SO1",
        "order_id": "SO1",
        "sku": None,
        "warehouse_id": None,
        "detected_at": T0,
        "event_time": T0,
        "summary": "Order SO1 was paid twice.",
        "evidence": {"event_ids": ["ev-1"], "values": {"payment_ids": "P1, P2"}},
        "owner": "payments",
        "actions": ["Refund one."],
        "escalation_level": 0,
        "seq": seq,
        "status": "open",
        "assignee": None,
        "acknowledged_by": None,
        "snoozed_until": None,
        "resolved_by": None,
        "resolution": None,
        "note": None,
        "inhibited_by": None,
    }
    doc.update(over)
    return doc


@pytest.fixture
def store() -> Store:
    return Store(":memory:", {"payment.duplicate": 3600.0, "customer.remark_attention": None})


def test_upsert_keeps_the_highest_seq_and_redelivery_changes_nothing(store: Store) -> None:
    ack = exc(
        seq=2,
        state="acknowledged",
        status="acknowledged",
        acknowledged_by="alice",
        detected_at="2026-12-01T10:05:00Z",
    )
    store.apply([exc(), ack])
    store.apply([exc()])  # the raise delivered again, after the acknowledgement
    row = store.exception("E1")
    assert row is not None
    assert (row["seq"], row["status"], row["acknowledged_by"]) == (2, "acknowledged", "alice")
    assert row["acknowledged_at"] - row["raised_at"] == 300
    assert [h["state"] for h in store.history("E1")] == ["raised", "acknowledged"]
    changes = store.apply([ack])
    assert changes.exceptions == []  # a re-delivery is not news


def test_late_older_event_only_adds_history(store: Store) -> None:
    store.apply(
        [exc(seq=2, state="escalated", escalation_level=1, detected_at="2026-12-01T11:00:00Z")]
    )
    store.apply([exc(seq=1)])
    row = store.exception("E1")
    assert row is not None
    assert (row["seq"], row["state"], row["raised_at"]) == (2, "escalated", ts(T0))
    assert len(store.history("E1")) == 2


def test_escalation_time_follows_the_contract(store: Store) -> None:
    store.apply([exc()])
    row = store.exception("E1")
    assert row is not None and row["escalates_at"] == ts(T0) + 3600  # event_time + 1 h
    store.apply([exc(seq=2, state="acknowledged", status="acknowledged", acknowledged_by="a")])
    row = store.exception("E1")
    assert row is not None and row["escalates_at"] is None  # acknowledged: no escalation
    store.apply([exc(seq=3, state="unacknowledged", detected_at="2026-12-01T12:00:00Z")])
    row = store.exception("E1")
    assert row is not None and row["escalates_at"] == ts("2026-12-01T13:00:00Z")
    store.apply([exc("N1", rule_id="customer.remark_attention", severity="low")])
    row = store.exception("N1")
    assert row is not None and row["escalates_at"] is None  # a notification never escalates


def test_history_names_who_sent_each_command(store: Store) -> None:
    store.apply([exc()])
    cmd = {
        "event_id": "C1",
        "type": "command.comment",
        "occurred_at": "2026-12-01T10:09:59Z",
        "source": "console",
        "exception_id": "E1",
        "actor": "bob",
        "note": "looked",
    }
    reply = {"command_id": "C1", "exception_id": "E1", "accepted": True, "status": "open"}
    # the event may be read before the command and its reply, or after: both name bob
    store.apply([exc(seq=2, state="commented", note="looked", detected_at="2026-12-01T10:10:00Z")])
    store.apply(commands=[cmd], replies=[reply])
    history = store.history("E1")
    assert (history[1]["state"], history[1]["actor"], history[1]["note"]) == (
        "commented",
        "bob",
        "looked",
    )
    assert store.command("C1")["matched_seq"] == 2  # type: ignore[index]
    # a rejected command explains nothing
    store.apply(
        commands=[{**cmd, "event_id": "C2", "actor": "eve"}],
        replies=[{"command_id": "C2", "exception_id": "E1", "accepted": False, "reason": "stale"}],
    )
    store.apply([exc(seq=3, state="commented", note="x", detected_at="2026-12-01T10:11:00Z")])
    assert store.history("E1")[2]["actor"] is None


def test_queue_filters_sort_and_pages(store: Store) -> None:
    docs = []
    for i in range(30):
        docs.append(
            exc(
                f"E{i:02d}",
                subject=f"SO{i}",
                order_id=f"SO{i}",
                owner="payments" if i % 2 else "tech",
                severity="critical" if i % 3 == 0 else "high",
                summary=f"order SO{i} <b>note</b>",
                detected_at=f"2026-12-01T10:{i:02d}:00Z",
                event_time=f"2026-12-01T10:{i:02d}:00Z",
                assignee="bob" if i == 7 else None,
            )
        )
    docs.append(exc("R1", seq=5, state="resolved", status="resolved", resolved_by="rule"))
    store.apply(docs)
    rows, total = store.queue(QueueFilter(page_size=10))
    assert total == 30 and len(rows) == 10
    assert rows[0]["exception_id"] == "E00"  # escalates first
    rows, _ = store.queue(QueueFilter(sort="newest", page=3, page_size=10))
    assert [r["exception_id"] for r in rows][-1] == "E00"
    assert store.queue(QueueFilter(owner="tech"))[1] == 15
    assert store.queue(QueueFilter(severity="critical", owner="tech"))[1] == 5
    assert store.queue(QueueFilter(assignee="bob"))[1] == 1
    assert store.queue(QueueFilter(assignee="-"))[1] == 29
    assert store.queue(QueueFilter(text="so17"))[1] == 1
    assert store.queue(QueueFilter(text="P2"))[1] == 30  # evidence values are searched too
    assert store.queue(QueueFilter(text='"<b>" OR x*'))[1] == 0  # text, never a query
    assert store.queue(QueueFilter(text="<b>NOTE"))[1] == 30
    store.apply([exc("E17", seq=2, state="assigned", assignee="zoe", subject="SO17")])
    assert store.queue(QueueFilter(text="zoe"))[1] == 0  # assignees are a filter, not text
    assert store.queue(QueueFilter(text="so17"))[1] == 1  # re-indexed once, not twice
    assert store.queue(QueueFilter(status="resolved"))[1] == 1
    assert store.queue(QueueFilter(rule_id="fraud.blacklisted"))[1] == 0


def test_queue_uses_an_index(store: Store) -> None:
    for clause in ("is_open = 1 ORDER BY urgency", "owner = 'tech' AND is_open = 1"):
        plan = " ".join(
            str(r[3])
            for r in store.db.execute(f"EXPLAIN QUERY PLAN SELECT * FROM exceptions WHERE {clause}")
        )
        assert "USING INDEX" in plan, plan


def test_overview_counts(store: Store) -> None:
    now = ts("2026-12-01T12:00:00Z")
    assert now is not None
    store.apply(
        [
            exc("A", owner="payments"),
            exc("B", owner="tech", severity="critical"),
            exc(
                "B",
                seq=2,
                state="acknowledged",
                status="acknowledged",
                owner="tech",
                severity="critical",
                detected_at="2026-12-01T10:10:00Z",
            ),
            exc(
                "C",
                owner="tech",
                seq=3,
                state="resolved",
                status="resolved",
                detected_at="2026-12-01T11:00:00Z",
            ),
        ]
    )
    data = store.overview(now)
    assert sorted(data["by_owner_severity"]) == [("payments", "high", 1), ("tech", "critical", 1)]
    assert data["by_status"] == {"open": 1, "acknowledged": 1}
    assert data["mtta_all"] == 600
    assert data["per_hour"][-2:] == [2, 1]  # A, B raised 10:00-11:00; C at 11:00
    assert data["mttr"]["tech"][1] == 1


def test_projection_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = Store(path, {})
    first.apply([exc()], offsets={("t", 0): 5})
    first.close()
    again = Store(path, {})
    assert again.offsets() == {("t", 0): 5}
    assert again.exception("E1") is not None


def test_accounts_are_argon2_hashed_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    add_account(path, "alice", "s3cret-pass", "operator", ("payments",))
    text = path.read_text()
    assert "s3cret-pass" not in text and "$argon2id$" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = load_accounts(path)
    assert verify_password(accounts, "alice", "s3cret-pass") == accounts["alice"]
    assert accounts["alice"].teams == ("payments",)
    assert verify_password(accounts, "alice", "wrong") is None
    assert verify_password(accounts, "nobody", "s3cret-pass") is None
    with pytest.raises(ValueError, match="role"):
        add_account(path, "x", "y" * 8, "root")  # type: ignore[arg-type]


def test_session_cookie_is_signed_and_expires() -> None:
    signer = Signer(b"k" * 32)
    user = User("alice", "operator", ("tech",), session_id="S1")
    cookie = signer.session_cookie(user, 60)
    assert signer.read_session(cookie) == user
    payload, mac = cookie.rsplit(".", 1)
    assert signer.read_session(payload + "." + mac[::-1]) is None
    assert Signer(b"x" * 32).read_session(cookie) is None
    assert signer.read_session(signer.session_cookie(user, -1)) is None
    assert signer.check_csrf("S1", signer.csrf_token("S1"))
    assert not signer.check_csrf("S1", signer.csrf_token("S2"))
    assert not signer.check_csrf("S1", None)


def test_permissions() -> None:
    assert not User("v", "viewer").may_act("tech")
    assert User("o", "operator").may_act("tech")
    assert User("o", "operator", ("payments",)).may_act("payments")
    assert not User("o", "operator", ("payments",)).may_act("tech")
    assert User("a", "approver").may_act("risk")


def test_proxy_headers_only_from_trusted_addresses() -> None:
    settings = ConsoleSettings(console_trusted_proxies="10.0.0.0/8, 127.0.0.2")
    proxy = ProxyAuth(
        tuple(settings.proxy_networks()),
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "orderwatch:",
    )
    headers = {
        "X-Forwarded-User": "li",
        "X-Forwarded-Email": "li@example.com",
        "X-Forwarded-Groups": "staff, orderwatch:operator, orderwatch:team:risk",
    }
    user = proxy.user("10.1.2.3", headers)
    assert user is not None
    assert (user.name, user.role, user.teams, user.via) == ("li", "operator", ("risk",), "proxy")
    assert proxy.user("127.0.0.1", headers) is None
    assert proxy.user("127.0.0.2", {"X-Forwarded-User": "li"}).role == "viewer"  # type: ignore[union-attr]
    assert proxy.user("10.1.2.3", {}) is None


def test_settings_are_safe_by_default() -> None:
    s = ConsoleSettings()
    assert s.console_host == "127.0.0.1"
    assert s.console_trusted_proxies == "" and s.proxy_networks() == []
    assert s.console_secure_cookie is False  # documented: set it behind HTTPS


@pytest.mark.parametrize(
    ("cookie", "header", "lang"),
    [
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        (None, "en-US,en;q=0.9,zh;q=0.8", "en"),
        (None, "fr-FR, zh-TW;q=0.5", "zh-CN"),
        (None, None, "en"),
        ("en", "zh-CN", "en"),
        ("zh-CN", "en", "zh-CN"),
        ("xx", "zh", "zh-CN"),
    ],
)
def test_language_negotiation(cookie: str | None, header: str | None, lang: str) -> None:
    assert negotiate(cookie, header) == lang


def test_every_label_has_both_languages() -> None:
    for key, (en, zh) in LABELS.items():
        assert en and zh, key
    assert Translator("zh-CN").t("queue") == "异常队列"
    assert Translator("en").v("customer_service") == "customer service"


def test_every_rule_has_a_chinese_title_and_playbook() -> None:
    rules_dir = default_rules_dir()
    catalog = load_catalog(rules_dir)
    zh = load_rule_translations(rules_dir, "zh-CN")
    assert set(zh) == set(catalog)
    for rule_id, rule in catalog.items():
        assert len(zh[rule_id].actions) == len(rule.actions), rule_id
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh[rule_id].title), rule_id


def test_rule_translations_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_rule_translations(tmp_path, "zh-CN") == {}
    (tmp_path / "i18n").mkdir()
    (tmp_path / "i18n" / "zh-CN.yaml").write_text("a.b: {actions: []}\n")
    with pytest.raises(ValueError, match="title"):
        load_rule_translations(tmp_path, "zh-CN")


_LIFE = [
    ("raised", "open", {}),
    ("acknowledged", "acknowledged", {"acknowledged_by": "alice"}),
    ("assigned", "acknowledged", {"acknowledged_by": "alice", "assignee": "bob"}),
    ("commented", "acknowledged", {"acknowledged_by": "alice", "assignee": "bob", "note": "n"}),
    ("unacknowledged", "open", {"assignee": "bob"}),
    ("escalated", "open", {"assignee": "bob", "escalation_level": 1}),
    ("resolved", "resolved", {"assignee": "bob", "resolved_by": "operator", "resolution": "fixed"}),
    ("reopened", "open", {"assignee": "bob"}),
]


def _life(exception_id: str) -> list[dict[str, Any]]:
    return [
        exc(
            exception_id,
            seq=i + 1,
            state=state,
            status=status,
            detected_at=f"2026-12-01T10:{i * 7:02d}:00Z",
            **fields,
        )
        for i, (state, status, fields) in enumerate(_LIFE)
    ]


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_redelivering_any_events_changes_nothing(data: st.DataObject) -> None:
    """At-least-once: each event in order, with any earlier ones delivered again in between."""
    events = _life("E1") + _life("E2")
    events.sort(key=lambda d: (d["detected_at"], d["exception_id"]))
    once = Store(":memory:", {"payment.duplicate": 3600.0})
    for doc in events:
        once.apply([doc])
    again = Store(":memory:", {"payment.duplicate": 3600.0})
    for i, doc in enumerate(events):
        if i:
            replays = data.draw(st.lists(st.sampled_from(events[:i]), max_size=3))
            again.apply(replays)
        again.apply([doc])
    again.apply(data.draw(st.lists(st.sampled_from(events), max_size=5)))
    for exception_id in ("E1", "E2"):
        assert again.exception(exception_id) == once.exception(exception_id)
        assert [tuple(h) for h in again.history(exception_id)] == [
            tuple(h) for h in once.history(exception_id)
        ]
