"""Remediation actions in the console: their projection, and who may approve or reject them.

The projection is the SQLite store fed with action events as the projector reads them from
``order-actions``. Authorization is checked against the real aiohttp application (served on a
loopback port, signed in through its real login form); only the Kafka send of an approver's
decision is replaced, by a recorder, since what reaches the broker is the browser test's job
(``tests/integration/test_console_browser.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar, web
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch.console.app import CONSOLE_KEY, build_app
from orderwatch.console.auth import User, add_account
from orderwatch.console.settings import ConsoleSettings
from orderwatch.console.store import Store, ts
from tests.unit.test_console import T0, exc

PASSWORD = "correct horse battery"
AID = "a-refund-1"


def action(status: str, at: str = T0, action_id: str = AID, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "action_id": action_id,
        "type": "payment.refund",
        "exception_id": "E1",
        "rule_id": "payment.duplicate",
        "order_id": "SO1",
        "target": "P2",
        "params": {"amount": "199.00", "currency": "CNY"},
        "mode": "approval",
        "status": status,
        "at": at,
        "idempotency_key": action_id,
    }
    doc.update(over)
    return doc


def decision(kind: str, command_id: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": command_id,
        "type": f"command.{kind}",
        "occurred_at": "2026-12-01T10:05:00Z",
        "source": "cli",
        "exception_id": "E1",
        "rule_id": "payment.duplicate",
        "subject": "SO1",
        "actor": "ada",
        "action_id": AID,
    }
    doc.update(over)
    return doc


@pytest.fixture
def store() -> Store:
    return Store(
        ":memory:",
        {"payment.duplicate": 3600.0},
        {("payment.duplicate", "payment.refund"): 7200.0},
    )


def test_latest_status_with_history_and_expiry(store: Store) -> None:
    store.apply([exc()])
    changes = store.apply(actions=[action("awaiting_approval")])
    assert [a["status"] for a in changes.actions] == ["awaiting_approval"]
    row = store.action(AID)
    assert row is not None
    assert row["status"] == "awaiting_approval"
    assert row["awaiting_since"] == ts(T0)
    assert row["expires_at"] == ts(T0) + 7200.0  # the rule's own approval_ttl
    assert row["params"] == {"amount": "199.00", "currency": "CNY"}

    store.apply(actions=[action("requested", "2026-12-01T10:05:00Z")])
    row = store.action(AID)
    assert row is not None
    assert row["status"] == "requested"
    assert [h["status"] for h in row["history"]] == ["awaiting_approval", "requested"]
    assert store.actions_of("E1")[0]["status"] == "requested"


def test_redelivered_or_late_events_never_move_an_action_back(store: Store) -> None:
    store.apply(actions=[action("requested", "2026-12-01T10:05:00Z")])
    # the awaiting_approval event arrives after the requested one (another partition, a replay)
    changes = store.apply(actions=[action("awaiting_approval")])
    assert len(changes.actions) == 1  # it adds history...
    row = store.action(AID)
    assert row is not None
    assert row["status"] == "requested"  # ...but the action stays where its lifecycle is
    assert row["awaiting_since"] == ts(T0)
    before = store.action(AID)
    again = store.apply(
        actions=[action("awaiting_approval"), action("requested", "2026-12-01T10:05:00Z")]
    )
    assert again.actions == []  # a re-delivery changes nothing
    assert store.action(AID) == before


def test_unknown_rule_takes_the_contract_default_ttl(store: Store) -> None:
    store.apply(actions=[action("awaiting_approval", rule_id="payment.after_cancel")])
    row = store.action(AID)
    assert row is not None
    assert row["expires_at"] == ts(T0) + 86400.0


def test_free_text_and_phones_are_masked_identifiers_kept(store: Store) -> None:
    store.apply(
        actions=[
            action(
                "awaiting_approval",
                type="carrier.claim",
                target="PAY0000000789",
                params={
                    "reason": "customer 13812345678 called",
                    "contact_phone": "+86 138 1234 5678",
                    "tracking_no": "SF1234567890",
                    "notes": {"detail": ["ring 13812345678"]},
                },
            )
        ]
    )
    row = store.action(AID)
    assert row is not None
    assert "13812345678" not in str(row) and "1234 5678" not in str(row)
    assert row["params"]["reason"] == "customer *******5678 called"
    assert row["params"]["contact_phone"].endswith("5678")
    assert row["params"]["notes"] == {"detail": ["ring *******5678"]}
    # identifiers are no personal data, and an approver must see which payment is refunded
    assert row["target"] == "PAY0000000789"
    assert row["params"]["tracking_no"] == "SF1234567890"
    # a target shaped like a phone number is masked all the same
    store.apply(actions=[action("planned", action_id="a-2", target="+8613812345678")])
    assert store.action("a-2")["target"] == "*********5678"  # type: ignore[index]
    store.apply(commands=[decision("reject", "c1", note="customer 13812345678 refused")])
    store.apply(replies=[{"command_id": "c1", "exception_id": "E1", "accepted": True}])
    row = store.action(AID)
    assert row is not None
    assert row["decision"] == {
        "type": "command.reject",
        "actor": "ada",
        "note": "customer *******5678 refused",
        "issued_at": ts("2026-12-01T10:05:00Z"),
    }


def test_a_decision_counts_only_once_accepted_in_either_order(store: Store) -> None:
    store.apply(actions=[action("awaiting_approval")])
    # rejected decisions are no decision
    store.apply(
        commands=[decision("approve", "c0")],
        replies=[
            {
                "command_id": "c0",
                "exception_id": "E1",
                "accepted": False,
                "reason": "invalid_transition",
            }
        ],
    )
    row = store.action(AID)
    assert row is not None and row["decision"] is None
    assert store.decision("c0")["reason"] == "invalid_transition"  # type: ignore[index]
    # the reply read in an earlier batch than its command (another console sent it)
    store.apply(replies=[{"command_id": "c1", "exception_id": "E1", "accepted": True}])
    store.apply(commands=[decision("approve", "c1")])
    row = store.action(AID)
    assert row is not None and row["decision"] is not None
    assert row["decision"]["actor"] == "ada"


def test_awaiting_list_is_oldest_first_with_its_exception(store: Store) -> None:
    store.apply([exc("E1"), exc("E2", owner="risk")])
    store.apply(
        actions=[
            action("awaiting_approval", "2026-12-01T10:09:00Z", "a-new", exception_id="E2"),
            action("awaiting_approval", "2026-12-01T10:01:00Z", "a-old"),
            action("planned", "2026-12-01T10:00:00Z", "a-dry", mode="dry_run"),
        ]
    )
    rows, total = store.actions("awaiting_approval")
    assert total == 2
    assert [r["action_id"] for r in rows] == ["a-old", "a-new"]
    assert [r["owner"] for r in rows] == ["payments", "risk"]
    everything, total = store.actions(None)
    assert total == 3
    assert everything[0]["action_id"] == "a-new"  # the latest first


def test_only_approvers_decide() -> None:
    assert User("a", "approver").may_decide("payments")
    assert not User("o", "operator").may_decide("payments")
    assert not User("v", "viewer").may_decide("payments")
    assert not User("a", "approver", ("risk",)).may_decide("payments")
    assert User("a", "approver", ("payments",)).may_decide("payments")


# -- the application: what the server shows and refuses -----------------------------------


class Recorder:
    """Stands in for the Kafka send of an approve/reject; records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool, str, str | None]] = []

    async def __call__(
        self,
        exception: dict[str, Any],
        action: dict[str, Any],
        approve: bool,
        actor: str,
        note: str | None,
        wait: float,
    ) -> tuple[str, dict[str, Any] | None]:
        self.sent.append((action["action_id"], approve, actor, note))
        return "cmd-1", None


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    users = tmp_path / "users.yaml"
    add_account(users, "ada", PASSWORD, "approver")
    add_account(users, "rita", PASSWORD, "approver", ("risk",))
    add_account(users, "alice", PASSWORD, "operator")
    add_account(users, "victor", PASSWORD, "viewer")
    store = Store(tmp_path / "console.sqlite3", {"payment.duplicate": 3600.0})
    store.apply([exc()])
    store.apply(actions=[action("awaiting_approval")])
    settings = ConsoleSettings(data_dir=tmp_path, console_users_file=users, console_port=0)
    app = build_app(settings, store, project=False)
    recorder = Recorder()
    app[CONSOLE_KEY].projector.send_decision = recorder  # type: ignore[method-assign]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        await runner.cleanup()


async def _session(base: str, user: str) -> tuple[ClientSession, str]:
    http = ClientSession(cookie_jar=CookieJar(unsafe=True))
    async with http.get(base + "/login") as r:
        token = (await r.text()).split('name="csrf_token" value="')[1].split('"')[0]
    async with http.post(
        base + "/login", data={"user": user, "password": PASSWORD, "csrf_token": token}
    ) as r:
        assert r.status == 200
    async with http.get(base + "/exceptions/E1") as r:
        page = await r.text()
    return http, page.split('name="csrf_token" value="')[1].split('"')[0]


@pytest.mark.parametrize("user", ["victor", "alice", "rita"])
async def test_others_see_the_state_but_no_buttons_and_are_refused(
    served: tuple[str, Recorder], user: str
) -> None:
    base, recorder = served
    http, token = await _session(base, user)
    async with http:
        for path in ("/exceptions/E1", "/actions"):
            async with http.get(base + path) as r:
                page = await r.text()
            assert 'data-status="awaiting_approval"' in page
            assert "awaiting an approver" in page
            assert "btn-approve" not in page and "btn-reject" not in page
        for decision_ in ("approve", "reject"):
            async with http.post(
                f"{base}/actions/{AID}/{decision_}", data={"csrf_token": token, "note": "no"}
            ) as r:
                assert r.status == 403
    assert recorder.sent == []


async def test_an_approver_decides(served: tuple[str, Recorder]) -> None:
    base, recorder = served
    http, token = await _session(base, "ada")
    async with http:
        async with http.get(base + "/exceptions/E1") as r:
            page = await r.text()
        assert "btn-approve" in page and "btn-reject" in page
        assert 'id="awaiting-count">1<' in page  # the header's badge
        async with http.get(base + "/actions") as r:
            assert "btn-approve" in await r.text()
        # CSRF as every other form
        async with http.post(f"{base}/actions/{AID}/approve", data={"go": "1"}) as r:
            assert r.status == 403
        # a reject needs its reason
        async with http.post(f"{base}/actions/{AID}/reject", data={"csrf_token": token}) as r:
            assert r.status == 400
        async with http.post(
            f"{base}/actions/{AID}/approve", data={"csrf_token": token}, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/exceptions/E1?cmd=cmd-1"
        async with http.post(
            f"{base}/actions/{AID}/reject",
            data={"csrf_token": token, "note": "wrong amount", "next": "/actions?status="},
            allow_redirects=False,
        ) as r:
            assert r.headers["Location"] == "/actions?status=&cmd=cmd-1"
        async with http.post(
            f"{base}/actions/nope/approve", data={"csrf_token": token}, allow_redirects=False
        ) as r:
            assert r.status == 404
    assert recorder.sent == [(AID, True, "ada", None), (AID, False, "ada", "wrong amount")]


async def test_the_actions_view_in_chinese(served: tuple[str, Recorder]) -> None:
    base, _ = served
    http, _ = await _session(base, "ada")
    async with http:
        http.cookie_jar.update_cookies({"ow_lang": "zh-CN"})
        async with http.get(base + "/actions") as r:
            page = await r.text()
        assert "待审批" in page and "退款" in page and "批准" in page and "驳回" in page


_LIVES = {
    "a-ok": [("awaiting_approval", 0), ("requested", 3), ("succeeded", 9)],
    "a-no": [("awaiting_approval", 1), ("rejected", 4)],
    "a-dry": [("planned", 2)],
    "a-late": [("awaiting_approval", 2), ("expired", 8)],
}


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_any_order_and_repetition_of_action_events_gives_the_same_rows(
    data: st.DataObject,
) -> None:
    """Action events of one action are keyed by order_id, so they arrive in order per action but
    batches, replicas rebuilding and re-deliveries mix them: the rows must not depend on it."""
    events = [
        action(status, f"2026-12-01T10:{minute:02d}:00Z", aid)
        for aid, life in _LIVES.items()
        for status, minute in life
    ]
    once = Store(":memory:", {})
    once.apply(actions=sorted(events, key=lambda e: e["at"]))
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6))
    again = Store(":memory:", {})
    for batch in (shuffled[:3], shuffled[3:], repeats):
        again.apply(actions=batch)
    for aid in _LIVES:
        assert again.action(aid) == once.action(aid)
    assert again.actions(None) == once.actions(None)


async def test_the_approvals_list_pages(tmp_path: Path) -> None:
    """More actions await approval than a page holds: the oldest first, page by page."""
    users = tmp_path / "users.yaml"
    add_account(users, "ada", PASSWORD, "approver")
    store = Store(tmp_path / "console.sqlite3", {"payment.duplicate": 3600.0})
    store.apply([exc()])
    ids = [f"a-{i:03d}" for i in range(12)]
    store.apply(
        actions=[
            action("awaiting_approval", f"2026-12-01T10:{i:02d}:00Z", aid)
            for i, aid in enumerate(ids)
        ]
    )
    settings = ConsoleSettings(
        data_dir=tmp_path, console_users_file=users, console_port=0, console_page_size=5
    )
    runner = web.AppRunner(build_app(settings, store, project=False), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        http, _ = await _session(base, "ada")
        async with http:
            seen: list[str] = []
            for number in (1, 2, 3):
                async with http.get(f"{base}/actions?status=awaiting_approval&page={number}") as r:
                    page = await r.text()
                assert f"{number} / 3" in page
                assert ('id="next-page"' in page) == (number < 3)
                seen += [x.split('"')[0] for x in page.split('data-action-id="')[1:]]
                # a decision taken here comes back to this page
                assert (
                    f'name="next" value="/actions?status=awaiting_approval&amp;page={number}"'
                    in page
                )
        assert seen == ids  # every one once, oldest first
    finally:
        await runner.cleanup()
