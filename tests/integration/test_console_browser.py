"""The console in a real headless Chromium, against the real broker and the real worker.

Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download). The worker raises the
exceptions from input events produced to the broker; the console shows them live; a person signs
in, acknowledges, assigns, comments and resolves, and sees each new state. The security checks are
made on the server: a viewer's POST and a POST without its CSRF token are refused and produce no
command on the topic.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from tests import factories as f
from tests.integration.console_harness import (
    PASSWORD,
    ConsoleProcess,
)
from tests.integration.harness import Collector, Topics, WorkerProcess, produce, wait_until

pytestmark = [
    pytest.mark.integration,
    # one worker, console and browser for the module: its tests stay in one xdist process
    pytest.mark.xdist_group("console_browser"),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LIVE = 20_000  # ms: an exception must show up within this on the shared 2-core machine


def now(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def topics(broker: EmbeddedBroker) -> Topics:
    t = Topics()
    asyncio.run(t.create(broker.bootstrap))
    return t


@pytest.fixture(scope="module")
def worker(
    broker: EmbeddedBroker, topics: Topics, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    w = WorkerProcess(broker.bootstrap, topics, tmp_path_factory.mktemp("worker"))
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def console(
    broker: EmbeddedBroker,
    topics: Topics,
    worker: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsoleProcess]:
    # 127.0.0.2 plays the authenticating proxy: requests from 127.0.0.1 are not trusted
    c = ConsoleProcess(
        broker.bootstrap,
        topics,
        tmp_path_factory.mktemp("console"),
        console_trusted_proxies="127.0.0.2",
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def sign_in(browser: Any, console: ConsoleProcess, user: str, **context: Any) -> Any:
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    await page.goto(console.url + "/queue")
    await page.fill("#login-user", user)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#queue-table")
    return page


async def order_with_remark(bootstrap: str, topics: Topics, remark: str, **fields: Any) -> str:
    order_id = f"SO-{uuid.uuid4().hex[:10]}"
    await produce(bootstrap, topics, [f.created(order_id, at=now(), remark=remark, **fields)])
    return order_id


async def test_operator_sees_it_live_and_works_it_to_resolved(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    page = await sign_in(browser, console, "alice")
    assert await page.text_content("#user-name") == "alice"
    await page.wait_for_selector("#live.on", timeout=LIVE)
    # a new exception raised by the real worker appears in the open page, without a reload
    order_id = await order_with_remark(broker.bootstrap, topics, "please deliver, urgent")
    row = page.locator("tr.row", has_text=order_id)
    await row.wait_for(timeout=LIVE)
    await row.locator("a").click()
    await page.wait_for_selector("#detail")
    assert await page.text_content("#status") == "open"
    assert "Customer note needs attention" in await page.text_content("h1")

    await page.click("#btn-acknowledge")
    await page.wait_for_selector("#reply.good", timeout=LIVE)
    assert await page.text_content("#status") == "acknowledged"
    history = page.locator("#history tr[data-state=acknowledged]")
    assert "alice" in await history.text_content()

    await page.fill("form[data-action=assign] input[name=assignee]", "bob")
    await page.click("#btn-assign")
    await page.wait_for_selector("#history tr[data-state=assigned]", timeout=LIVE)
    assert await page.text_content("#assignee") == "bob"

    note = "called the customer <b>twice</b>"
    await page.fill("form[data-action=comment] input[name=note]", note)
    await page.click("#btn-comment")
    comment = page.locator("#history tr[data-state=commented]")
    await comment.wait_for(timeout=LIVE)
    assert note in await comment.text_content()  # the note is shown as text, tags and all
    assert await page.locator("#history b").count() == 0
    assert "alice" in await comment.text_content()

    await page.select_option("form[data-action=resolve] select", "false_positive")
    await page.click("#btn-resolve")
    await page.wait_for_selector("#status.st-resolved", timeout=LIVE)
    assert "false positive" in await page.text_content("#history tr[data-state=resolved]")
    # a resolved exception offers comment and reopen only
    actions = await page.eval_on_selector_all(
        "#actions form", "fs => fs.map(f => f.dataset.action)"
    )
    assert actions == ["comment", "reopen"]
    await page.context.close()


async def test_remark_and_carrier_with_html_render_as_text(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    page = await sign_in(browser, console, "alice")
    remark = "<script>window.__pwned = 1</script> urgent <img src=x onerror=window.__pwned=2>"
    order_id = await order_with_remark(broker.bootstrap, topics, remark)
    carrier = "<img src=x onerror=window.__pwned=3>sf"
    lost = f.logistics("exception", order_id, now(), carrier=carrier)
    lost["kind"] = "lost"  # the factory's own ``kind`` names the event type
    await produce(broker.bootstrap, topics, [lost])
    row = page.locator("tr.row", has_text="Parcel lost or damaged").filter(has_text=order_id)
    await row.wait_for(timeout=LIVE)
    assert carrier in await row.text_content()  # in the summary, as text
    await row.locator("a").click()
    await page.wait_for_selector("#evidence")
    assert carrier in await page.text_content("#evidence")
    assert carrier in await page.text_content("#summary")
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await page.context.close()


def commands_for(commands: Collector, url: str) -> list[Any]:
    """Commands on the topic for the exception of this page's URL."""
    exception_id = url.split("/exceptions/")[1].split("/")[0].split("?")[0]
    return [r for r in commands.records if r.key == exception_id.encode()]


async def _form_token(page: Any) -> str:
    token: str = await page.get_attribute("input[name=csrf_token]", "value")
    return token


async def test_a_viewer_is_refused_by_the_server(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    order_id = await order_with_remark(broker.bootstrap, topics, "urgent please")
    page = await sign_in(browser, console, "victor")
    assert await page.text_content("#user-role") == "viewer"
    row = page.locator("tr.row", has_text=order_id)
    await row.wait_for(timeout=LIVE)
    await row.locator("a").click()
    await page.wait_for_selector("#read-only")
    assert await page.locator("#actions form").count() == 0
    exception_url = page.url
    async with Collector(broker.bootstrap, topics.name("order-exception-commands")) as commands:
        # the button is hidden, but the server is the one that says no: forge the POST
        response = await page.request.post(
            exception_url + "/acknowledge", form={"csrf_token": await _form_token(page)}
        )
        assert response.status == 403
        # an operator limited to the payments team may not act on customer_service's exception
        olga = await sign_in(browser, console, "olga")
        await olga.goto(exception_url)
        assert await olga.locator("#actions form").count() == 0
        response = await olga.request.post(
            exception_url + "/acknowledge", form={"csrf_token": await _form_token(olga)}
        )
        assert response.status == 403
        await asyncio.sleep(1.0)  # give a wrongly sent command time to show up on the topic
        assert commands_for(commands, exception_url) == []
    await page.context.close()
    await olga.context.close()


async def test_a_post_without_its_csrf_token_is_refused(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    order_id = await order_with_remark(broker.bootstrap, topics, "invoice needed")
    page = await sign_in(browser, console, "alice")
    row = page.locator("tr.row", has_text=order_id)
    await row.wait_for(timeout=LIVE)
    await row.locator("a").click()
    await page.wait_for_selector("#btn-acknowledge")
    url = page.url + "/acknowledge"
    async with Collector(broker.bootstrap, topics.name("order-exception-commands")) as commands:
        missing = await page.request.post(url, form={"go": "1"})
        assert missing.status == 403
        wrong = await page.request.post(url, form={"csrf_token": "x" * 43})
        assert wrong.status == 403
        other = await page.request.post(url, headers={"X-CSRF-Token": "forged"})
        assert other.status == 403
        await asyncio.sleep(1.0)
        assert commands_for(commands, url) == []
    # the same request with the page's token passes the check (and is answered)
    ok = await page.request.post(url, form={"csrf_token": await _form_token(page)})
    assert ok.status == 200
    await page.context.close()


async def test_switching_to_chinese(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    order_id = await order_with_remark(broker.bootstrap, topics, "加急 发货")
    page = await sign_in(browser, console, "alice")
    assert await page.text_content("nav a[href='/queue']") == "Queue"
    await page.click("a[data-lang=zh-CN]")
    await page.wait_for_selector("text=异常队列")
    row = page.locator("tr.row", has_text=order_id)
    await row.wait_for(timeout=LIVE)
    text = await row.text_content()
    assert "客户备注需关注" in text  # rule title from rules/i18n/zh-CN.yaml
    assert "客服" in text  # the owner team
    await row.locator("a").click()
    await page.wait_for_selector("#playbook")
    assert "在 OMS 中查看备注" in await page.text_content("#playbook")
    assert await page.text_content("#btn-acknowledge") == "认领"
    await page.context.close()
    # a browser that asks for Chinese gets it without the switch
    zh = await sign_in(browser, console, "victor", locale="zh-CN")
    assert await zh.text_content("nav a[href='/queue']") == "异常队列"
    await zh.context.close()


async def test_proxy_header_is_trusted_only_from_the_proxy(console: ConsoleProcess) -> None:
    headers = {"X-Forwarded-User": "mallory", "X-Forwarded-Groups": "orderwatch:approver"}
    async with (
        aiohttp.ClientSession() as direct,
        direct.get(console.url + "/queue", headers=headers, allow_redirects=False) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"].startswith("/login")
    proxy = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=proxy) as via_proxy,
        via_proxy.get(console.url + "/queue", headers=headers) as response,
    ):
        assert response.status == 200
        body = await response.text()
        assert re.search(r'id="user-name">mallory<', body)
        assert re.search(r'id="user-role">approver<', body)


async def duplicate_payment(bootstrap: str, topics: Topics) -> str:
    """An order paid twice: the worker raises payment.duplicate and asks to refund the second
    payment, in approval mode (the contract's default, ``engine/policy.py``)."""
    order_id = f"SO-{uuid.uuid4().hex[:10]}"
    await produce(
        bootstrap,
        topics,
        [
            f.created(order_id, at=now(seconds=-30)),
            f.paid(order_id, now(seconds=-20), payment_id=f"{order_id}-P1"),
            f.paid(order_id, now(seconds=-10), payment_id=f"{order_id}-P2"),
            f.status(order_id, "paid", now(seconds=-5)),
        ],
    )
    return order_id


async def test_an_approver_approves_a_refund_and_a_viewer_only_sees_it(
    broker: EmbeddedBroker, topics: Topics, console: ConsoleProcess, browser: Any
) -> None:
    order_id = await duplicate_payment(broker.bootstrap, topics)
    refund = f"tr.arow[data-type='payment.refund']:has-text('{order_id}')"
    # a viewer sees the action awaiting approval, on the approvals list, but no button
    victor = await sign_in(browser, console, "victor")
    await victor.click("#nav-approvals")
    row = victor.locator(refund)
    await row.wait_for(timeout=LIVE)
    assert await row.get_attribute("data-status") == "awaiting_approval"
    assert "awaiting an approver" in await row.text_content()
    assert await victor.locator(".btn-approve, .btn-reject").count() == 0
    action_id = await row.get_attribute("data-action-id")
    async with Collector(broker.bootstrap, topics.commands) as commands:
        # the server says no as well, whatever the page showed
        response = await victor.request.post(
            f"{console.url}/actions/{action_id}/approve",
            form={"csrf_token": await _form_token(victor)},
        )
        assert response.status == 403
        await asyncio.sleep(1.0)  # give a wrongly sent command time to show up on the topic
        assert [r for r in commands.records if b"command.approve" in (r.value or b"")] == []
    # the viewer keeps the exception's page open: it shows the approval live when it happens
    await row.locator("a").click()
    await victor.wait_for_selector(f"#remediation tr[data-action-id='{action_id}']")
    assert await victor.locator("#remediation .awaiting-approver").count() == 1

    # the approver opens the exception, sees its refund awaiting approval, and approves it
    ada = await sign_in(browser, console, "ada")
    await ada.click("#nav-approvals")
    await ada.locator(refund).locator("a").click()
    await ada.wait_for_selector("#remediation")
    mine = ada.locator(f"#remediation tr[data-action-id='{action_id}']")
    assert await mine.get_attribute("data-status") == "awaiting_approval"
    assert f"{order_id}-P2" in await mine.text_content()  # the target: the second payment
    async with Collector(broker.bootstrap, topics.commands) as commands:
        await mine.locator(".btn-approve").click()
        await ada.wait_for_selector(
            f"#remediation tr[data-action-id='{action_id}'][data-status=requested]", timeout=LIVE
        )
        await ada.wait_for_selector("#reply.good", timeout=LIVE)
        await ada.wait_for_selector("#reply-action-status:text-is('requested')", timeout=LIVE)
        # the worker replied to it, but this reader may not have fetched it yet (it failed once)
        await commands.wait_for(
            lambda records: any(b"command.approve" in (r.value or b"") for r in records),
            LIVE / 1000,
            "the approve command",
        )
        sent = [orjson.loads(r.value) for r in commands.records if r.value]
    approve = [c for c in sent if c.get("type") == "command.approve"]
    assert len(approve) == 1
    assert approve[0]["action_id"] == action_id
    assert approve[0]["actor"] == "ada" and approve[0]["source"] == "console"
    assert "approved by ada" in await ada.text_content(
        f"#remediation tr[data-action-id='{action_id}']"
    )
    assert await ada.locator(".btn-approve").count() == 0  # nothing awaits any more
    await victor.wait_for_selector(
        f"#remediation tr[data-action-id='{action_id}'][data-status=requested]", timeout=LIVE
    )
    await victor.context.close()

    # from the approvals list: reject another refund, with a reason (a phone number in it)
    other = await duplicate_payment(broker.bootstrap, topics)
    await ada.click("#nav-approvals")
    row = ada.locator(f"tr.arow[data-type='payment.refund']:has-text('{other}')")
    await row.wait_for(timeout=LIVE)
    other_id = await row.get_attribute("data-action-id")
    await row.locator("input[name=note]").fill("customer 13812345678 keeps both")
    await row.locator(".btn-reject").click()
    await ada.wait_for_selector("#reply.good", timeout=LIVE)
    assert ada.url.startswith(console.url + "/actions?")
    await ada.wait_for_selector("#reply-action-status:text-is('rejected')", timeout=LIVE)
    # it left the list of actions awaiting approval; its exception's page says who and why
    await ada.locator(f"tr.arow[data-action-id='{other_id}']").wait_for(
        state="detached", timeout=LIVE
    )
    await ada.goto(console.url + "/actions?status=rejected")
    rejected = ada.locator(f"tr.arow[data-action-id='{other_id}']")
    await rejected.wait_for(timeout=LIVE)
    text = await rejected.text_content()
    assert "rejected by ada" in text and "customer *******5678 keeps both" in text
    assert "13812345678" not in await ada.content()
    await ada.context.close()


def _projection(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT exception_id, seq, status, assignee FROM exceptions ORDER BY 1"
        ).fetchall()


def test_a_new_replica_rebuilds_the_same_view_from_the_topics(
    broker: EmbeddedBroker,
    topics: Topics,
    console: ConsoleProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A second console with an empty data dir reads the topics into the same rows."""
    first = console.workdir / "data" / "console" / "console.sqlite3"
    assert _projection(first), "the earlier tests left exceptions on the topics"
    replica = ConsoleProcess(broker.bootstrap, topics, tmp_path_factory.mktemp("replica"))
    replica.start()
    try:
        second = replica.workdir / "data" / "console" / "console.sqlite3"
        wait_until(lambda: _projection(first) == _projection(second), 30, "the replica to catch up")
    finally:
        replica.stop()
