"""The console's web application: aiohttp handlers rendering Jinja2 templates (autoescaped).

Pages are rendered on the server; the vendored htmx (static/) swaps fragments for live updates and
boosted forms, and a page works without it. Every request passes three middlewares: security
headers (a strict Content-Security-Policy: no inline script or style, nothing from other
origins), sign-in (a session cookie, or a trusted proxy's user header), and the CSRF check of every
POST. Permissions are checked here, on the server, whatever the page showed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
import structlog
from aiohttp import web

from orderwatch.console import charts
from orderwatch.console.auth import (
    PRE_COOKIE,
    SESSION_COOKIE,
    ProxyAuth,
    Signer,
    User,
    load_accounts,
    load_or_create_secret,
    new_session_id,
    verify_password,
)
from orderwatch.console.i18n import (
    LANG_COOKIE,
    LANGS,
    RuleText,
    Translator,
    load_rule_translations,
    negotiate,
)
from orderwatch.console.projector import Projector
from orderwatch.console.settings import ConsoleSettings
from orderwatch.console.store import Changes, QueueFilter, Store
from orderwatch.rulefiles import Catalog, default_rules_dir, load_catalog

log = structlog.get_logger("orderwatch.console")
HERE = Path(__file__).resolve().parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: the buttons each status offers (CONTRACT 8's table); the engine still has the last word
ACTIONS_BY_STATUS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledge", "assign", "comment", "resolve"),
    "acknowledged": ("unacknowledge", "assign", "snooze", "comment", "resolve"),
    "snoozed": ("unacknowledge", "assign", "snooze", "comment", "resolve"),
    "inhibited": ("assign", "comment", "resolve"),
    "resolved": ("comment", "reopen"),
}
ACTIONS = ("acknowledge", "unacknowledge", "assign", "snooze", "comment", "resolve", "reopen")
#: what an approver decides about a remediation action awaiting approval (CONTRACT 10)
DECISIONS = ("approve", "reject")
ACTION_STATUSES = (
    "awaiting_approval",
    "planned",
    "requested",
    "rejected",
    "expired",
    "cancelled",
    "throttled",
    "paused",
    "succeeded",
    "failed",
)
RESOLUTIONS = ("fixed", "false_positive", "duplicate", "wont_fix")
_DURATION = re.compile(r"^([0-9]+[dhms])+$")
_PUBLIC = ("/login", "/static/", "/healthz", "/lang/")

CONSOLE_KEY: web.AppKey[Console] = web.AppKey("console")
USER_KEY: web.RequestKey[User | None] = web.RequestKey("user")
PRE_KEY: web.RequestKey[str] = web.RequestKey("pre")


@dataclass
class Console:
    """Everything the handlers share."""

    settings: ConsoleSettings
    store: Store
    projector: Projector
    signer: Signer
    proxy: ProxyAuth
    catalog: Catalog
    zh_rules: dict[str, RuleText]
    env: jinja2.Environment
    subscribers: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)

    def broadcast(self, changes: Changes) -> None:
        """Tell every open page what changed (compact: the page re-fetches what it shows).

        An action's new status is told as a change of its exception: its page shows the action.
        """
        if not self.subscribers or not (changes.exceptions or changes.actions):
            return
        messages = [
            {
                "exception_id": doc.get("exception_id"),
                "state": doc.get("state"),
                "status": doc.get("status"),
                "owner": doc.get("owner"),
            }
            for doc in changes.exceptions[-50:]
        ] + [
            {
                "exception_id": doc.get("exception_id"),
                "action_id": doc.get("action_id"),
                "action_status": doc.get("status"),
            }
            for doc in changes.actions[-50:]
        ]
        for message in messages:
            for queue in list(self.subscribers):
                if queue.full():
                    continue  # a slow page: it refreshes the whole table anyway
                queue.put_nowait(message)


def _now() -> float:
    return time.time()


def duration(seconds: float | None) -> str:
    """A short human duration: 45s, 12m, 3h 05m, 2d 04h."""
    if seconds is None:
        return "—"
    s = int(abs(seconds))
    sign = "-" if seconds < 0 else ""
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600:02d}h"


def clock(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value a person or an event supplied is escaped on output
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = duration
    env.filters["clock"] = clock
    return env


class Page:
    """Per-request rendering context: the user, the language, the CSRF token."""

    def __init__(self, console: Console, request: web.Request) -> None:
        self.console = console
        self.request = request
        self.user: User | None = request.get(USER_KEY)
        self.lang = negotiate(
            request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language")
        )
        self.tr = Translator(self.lang)

    def csrf(self) -> str:
        if self.user is not None:
            return self.console.signer.csrf_token(self.user.session_id)
        return self.console.signer.csrf_token("login:" + self.request.get(PRE_KEY, ""))

    def rule_title(self, rule_id: str) -> str:
        if self.lang == "zh-CN" and rule_id in self.console.zh_rules:
            return self.console.zh_rules[rule_id].title
        rule = self.console.catalog.rules.get(rule_id)
        return rule.title if rule is not None else rule_id

    def rule_actions(self, rule_id: str, fallback: list[str]) -> list[str]:
        if self.lang == "zh-CN" and rule_id in self.console.zh_rules:
            return list(self.console.zh_rules[rule_id].actions)
        rule = self.console.catalog.rules.get(rule_id)
        return list(rule.actions) if rule is not None else fallback

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        body = self.console.env.get_template(template).render(
            page=self,
            t=self.tr.t,
            v=self.tr.v,
            user=self.user,
            lang=self.lang,
            langs=LANGS,
            csrf=self.csrf(),
            csrf_header=orjson.dumps({"X-CSRF-Token": self.csrf()}).decode(),
            path_qs=self.request.path_qs,
            now=_now(),
            awaiting=self.console.store.awaiting_count if self.user else None,
            **context,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _signed_in(request: web.Request) -> User:
    """The user of a request that passed ``authenticate`` on a page that needs one."""
    user: User | None = request.get(USER_KEY)
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    return user


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


# -- middlewares ---------------------------------------------------------------------------


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    if not response.prepared:  # the server's own time, for the benchmark and the browser's tools
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
    else:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    console = _console(request)
    user = console.proxy.user(request.remote, request.headers)
    if (
        user is None
        and console.proxy.networks
        and console.settings.console_proxy_user_header in request.headers
    ):
        log.warning("console.untrusted_proxy_header", remote=request.remote)
    if user is None:
        user = console.signer.read_session(request.cookies.get(SESSION_COOKIE))
    request[USER_KEY] = user
    request[PRE_KEY] = request.cookies.get(PRE_COOKIE, "")
    if user is None and not request.path.startswith(_PUBLIC):
        if request.method == "GET" and request.path != "/events":
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        raise web.HTTPUnauthorized(text="sign in first")
    return await handler(request)


@web.middleware
async def csrf_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request carries the token of its session, or is refused here."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        console = _console(request)
        user: User | None = request.get(USER_KEY)
        session = user.session_id if user is not None else "login:" + request.get(PRE_KEY, "")
        token = request.headers.get("X-CSRF-Token")
        if token is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            value = form.get("csrf_token")
            token = value if isinstance(value, str) else None
        if (user is None and not request.get(PRE_KEY)) or not console.signer.check_csrf(
            session, token
        ):
            page = Page(console, request)
            return page.render("error.html", status=403, message=page.tr.t("csrf"))
    return await handler(request)


# -- handlers ------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/queue"
    return value


async def login_form(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    if request.get(USER_KEY) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    pre = request.get(PRE_KEY) or new_session_id()
    request[PRE_KEY] = pre
    page = Page(console, request)
    response = page.render(
        "login.html", next=_safe_next(request.query.get("next")), error=None, name=""
    )
    response.set_cookie(
        PRE_COOKIE,
        pre,
        httponly=True,
        samesite="Strict",
        secure=console.settings.console_secure_cookie,
        path="/",
    )
    return response


async def login(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    form = await request.post()
    name = str(form.get("user", ""))
    password = str(form.get("password", ""))
    accounts = load_accounts(console.settings.users_path)
    account = await asyncio.to_thread(verify_password, accounts, name, password)
    page = Page(console, request)
    if account is None:
        log.info("console.login_failed", user=name[:64])
        return page.render(
            "login.html",
            status=401,
            next=_safe_next(str(form.get("next", ""))),
            error=page.tr.t("bad_login"),
            name=name,
        )
    user = User(account.name, account.role, account.teams, session_id=new_session_id())
    log.info("console.login", user=user.name, role=user.role)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", ""))))
    lifetime = console.settings.console_session_hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        console.signer.session_cookie(user, lifetime),
        max_age=int(lifetime),
        httponly=True,
        samesite="Strict",
        secure=console.settings.console_secure_cookie,
        path="/",
    )
    response.del_cookie(PRE_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def set_language(request: web.Request) -> web.StreamResponse:
    """A display preference (not application state): a plain link can switch it."""
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise web.HTTPNotFound()
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    response.set_cookie(
        LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict", httponly=True, path="/"
    )
    raise response


def _filters(request: web.Request, page_size: int) -> QueueFilter:
    q = request.query

    def opt(name: str) -> str | None:
        value = q.get(name, "").strip()
        return value[:200] or None

    return QueueFilter(
        owner=opt("owner"),
        severity=opt("severity"),
        rule_id=opt("rule"),
        status=opt("status"),
        assignee=opt("assignee"),
        text=opt("q"),
        sort="newest" if q.get("sort") == "newest" else "urgent",
        page=_page_number(request),
        page_size=page_size,
    )


def _page_number(request: web.Request) -> int:
    """``?page=``, from 1 (anything else: the first page; at most 100,000)."""
    try:
        return min(max(int(request.query.get("page", "1")), 1), 100_000)
    except ValueError:
        return 1


async def queue(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    f = _filters(request, console.settings.console_page_size)
    rows, total = console.store.queue(f)
    pages = max((total + f.page_size - 1) // f.page_size, 1)
    params = {
        k: v
        for k, v in (
            ("owner", f.owner),
            ("severity", f.severity),
            ("rule", f.rule_id),
            ("status", f.status),
            ("assignee", f.assignee),
            ("q", f.text),
            ("sort", f.sort),
        )
        if v
    }

    def page_link(n: int) -> str:
        return "/queue?" + urlencode({**params, "page": n})

    page = Page(console, request)
    context: dict[str, Any] = {
        "rows": rows,
        "total": total,
        "f": f,
        "pages": pages,
        "page_link": page_link,
        "partial_url": "/queue?" + urlencode({**params, "page": f.page, "partial": 1}),
    }
    if request.query.get("partial"):
        return page.render("_queue_table.html", **context)
    return page.render(
        "queue.html",
        owners=sorted({rule.owner for rule in console.catalog.values()}),
        rules=sorted(console.catalog.rules),
        assignees=console.store.distinct("assignee"),
        **context,
    )


def _evidence(doc: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    evidence = doc.get("evidence") or {}
    values = evidence.get("values") or {}
    return sorted(values.items()), list(evidence.get("event_ids") or [])


async def detail(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    page = Page(console, request)
    exception = console.store.exception(request.match_info["exception_id"])
    if exception is None:
        return page.render("error.html", status=404, message=page.tr.t("not_found"))
    values, event_ids = _evidence(exception["doc"])
    user = _signed_in(request)
    reply = None
    decision = None
    command_id = request.query.get("cmd")
    if command_id:
        reply = console.store.command(command_id)
        decision = console.store.decision(command_id)
    remediation = console.store.actions_of(exception["exception_id"])
    context: dict[str, Any] = {
        "x": exception,
        "doc": exception["doc"],
        "values": values,
        "event_ids": event_ids,
        "history": console.store.history(exception["exception_id"]),
        "playbook": page.rule_actions(exception["rule_id"], exception["doc"].get("actions") or []),
        "actions": ACTIONS_BY_STATUS.get(exception["status"], ()),
        "may_act": user.may_act(exception["owner"]),
        "resolutions": RESOLUTIONS,
        "reply": reply,
        "command_id": command_id,
        "remediation": remediation,
        "decision": decision,
        "decided": _decided_action(remediation, decision),
        "may_decide": user.may_decide(exception["owner"]),
    }
    if request.query.get("partial"):
        return page.render("_detail.html", **context)
    return page.render("detail.html", **context)


def _command_fields(action: str, form: Any, user: User) -> dict[str, Any] | str:
    """The command's extra fields from the form, or the label key of what is wrong."""

    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    extra: dict[str, Any] = {}
    if action == "assign":
        extra["assignee"] = text("assignee") or user.name
        if len(extra["assignee"]) > 128:
            return "invalid_command"
    elif action == "snooze":
        span = text("for")
        if not _DURATION.match(span):
            return "invalid_command"
        extra["for"] = span
    elif action == "comment":
        note = text("note")
        if not 1 <= len(note) <= 2000:
            return "invalid_command"
        extra["note"] = note
    elif action in ("resolve", "reopen"):
        if action == "resolve":
            resolution = text("resolution")
            if resolution not in RESOLUTIONS:
                return "invalid_command"
            extra["resolution"] = resolution
        note = text("note")
        if len(note) > 2000:
            return "invalid_command"
        if note:
            extra["note"] = note
    return extra


async def command(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    page = Page(console, request)
    user = _signed_in(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    exception = console.store.exception(request.match_info["exception_id"])
    if exception is None:
        return page.render("error.html", status=404, message=page.tr.t("not_found"))
    if not user.may_act(exception["owner"]):
        log.warning("console.forbidden", user=user.name, role=user.role, action=action)
        return page.render("error.html", status=403, message=page.tr.t("forbidden"))
    form = await request.post()
    extra = _command_fields(action, form, user)
    if isinstance(extra, str):
        return page.render(
            "error.html", status=400, message=page.tr.v(extra) + " (" + page.tr.t(action) + ")"
        )
    try:
        command_id, reply = await console.projector.send_command(
            exception,
            f"command.{action}",
            user.name,
            extra,
            console.settings.console_command_timeout,
        )
    except Exception as exc:  # the broker is unreachable: say so, never a bare 500
        log.warning("console.command_not_sent", user=user.name, action=action, error=repr(exc))
        return page.render("error.html", status=503, message=page.tr.t("send_failed"))
    log.info(
        "console.command",
        user=user.name,
        action=action,
        exception_id=exception["exception_id"],
        accepted=None if reply is None else reply.get("accepted"),
        reason=None if reply is None else reply.get("reason"),
    )
    raise web.HTTPSeeOther(
        f"/exceptions/{exception['exception_id']}?" + urlencode({"cmd": command_id})
    )


def _decided_action(
    remediation: list[dict[str, Any]], decision: Any | None
) -> dict[str, Any] | None:
    """The action an approve or reject of this page's ``?cmd=`` was about (for its flash)."""
    if decision is None:
        return None
    return next((a for a in remediation if a["action_id"] == decision["action_id"]), None)


async def actions_view(request: web.Request) -> web.StreamResponse:
    """Remediation actions by status: awaiting approval (the default) oldest first."""
    console = _console(request)
    page = Page(console, request)
    user = _signed_in(request)
    status = request.query.get("status", "awaiting_approval")
    if status not in ACTION_STATUSES:
        status = ""
    size = console.settings.console_page_size
    number = _page_number(request)
    rows, total = console.store.actions(status or None, size, (number - 1) * size)
    pages = max((total + size - 1) // size, 1)
    command_id = request.query.get("cmd")
    decision = console.store.decision(command_id) if command_id else None
    context: dict[str, Any] = {
        "command_id": command_id,
        "reply": console.store.command(command_id) if command_id else None,
        "decision": decision,
        "decided": console.store.action(decision["action_id"]) if decision else None,
        "rows": rows,
        "total": total,
        "selected": status,
        "statuses": ACTION_STATUSES,
        "number": number,
        "pages": pages,
        "page_link": lambda n: "/actions?" + urlencode({"status": status, "page": n}),
        "may_decide": user.may_decide,
        # with ?cmd=, a live refresh keeps the decision's flash (and completes it when the reply
        # or the action's event comes after the wait)
        "partial_url": "/actions?"
        + urlencode(
            {
                "status": status,
                "page": number,
                **({"cmd": command_id} if command_id else {}),
                "partial": 1,
            }
        ),
        "back": "/actions?" + urlencode({"status": status, "page": number}),
    }
    if request.query.get("partial"):
        return page.render("_actions_table.html", **context)
    return page.render("actions.html", **context)


async def decide(request: web.Request) -> web.StreamResponse:
    """Approve or reject an action (approvers only: the server checks, whatever the page showed).

    The reply and then the action's own event are awaited like any command's; the page it
    returns to (the exception's, or the approvals list) shows the action's new status.
    """
    console = _console(request)
    page = Page(console, request)
    user = _signed_in(request)
    decision = request.match_info["decision"]
    if decision not in DECISIONS:
        raise web.HTTPNotFound()
    action = console.store.action(request.match_info["action_id"])
    exception = console.store.exception(action["exception_id"]) if action else None
    if action is None or exception is None:
        return page.render("error.html", status=404, message=page.tr.t("no_action"))
    if not user.may_decide(exception["owner"]):
        log.warning("console.forbidden", user=user.name, role=user.role, action=decision)
        return page.render("error.html", status=403, message=page.tr.t("forbidden"))
    form = await request.post()
    value = form.get("note", "")
    note = value.strip() if isinstance(value, str) else ""
    if len(note) > 2000 or (decision == "reject" and not note):
        return page.render(
            "error.html",
            status=400,
            message=page.tr.v("invalid_command") + " (" + page.tr.t("reject_reason") + ")",
        )
    try:
        command_id, reply = await console.projector.send_decision(
            exception,
            action,
            decision == "approve",
            user.name,
            note or None,
            console.settings.console_command_timeout,
        )
    except Exception as exc:  # the broker is unreachable: say so, never a bare 500
        log.warning("console.command_not_sent", user=user.name, action=decision, error=repr(exc))
        return page.render("error.html", status=503, message=page.tr.t("send_failed"))
    log.info(
        "console.command",
        user=user.name,
        action=decision,
        action_id=action["action_id"],
        exception_id=exception["exception_id"],
        accepted=None if reply is None else reply.get("accepted"),
        reason=None if reply is None else reply.get("reason"),
    )
    back = form.get("next")
    if isinstance(back, str) and back.startswith("/actions?"):
        raise web.HTTPSeeOther(_safe_next(back) + "&" + urlencode({"cmd": command_id}))
    raise web.HTTPSeeOther(
        f"/exceptions/{exception['exception_id']}?" + urlencode({"cmd": command_id})
    )


async def overview(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    page = Page(console, request)
    now = _now()
    data = console.store.overview(now)
    tr = page.tr
    rows: dict[str, dict[str, int]] = {}
    for owner, severity, n in data["by_owner_severity"]:
        rows.setdefault(owner, {})[severity] = n
    owner_names = {o: tr.v(o) for o in rows}
    sev_names = {s: tr.v(s) for s in charts.SEVERITIES}
    top = [(page.rule_title(r), float(n)) for r, n in data["top_rules"]]

    def times(which: str) -> charts.Chart:
        items = sorted(data[which].items())
        return charts.horizontal(
            [(tr.v(o), float(v[0] or 0)) for o, v in items],
            [f"{duration(v[0])} (n={v[1]})" for _, v in items],
            cls="bar-time",
        )

    context: dict[str, Any] = {
        "data": data,
        "by_team": charts.stacked_rows(rows, owner_names, sev_names),
        "per_hour": charts.columns(data["per_hour"], f"-24 {tr.t('hours_ago')}", tr.t("now")),
        "top": charts.horizontal(top, [str(int(n)) for _, n in top]),
        "mtta": times("mtta"),
        "mttr": times("mttr"),
        "open_total": sum(data["by_status"].values()),
        "severities": charts.SEVERITIES,
    }
    if request.query.get("partial"):
        return page.render("_overview.html", **context)
    return page.render("overview.html", **context)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one message per changed exception, a comment every 15 s."""
    console = _console(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=200)
    console.subscribers.add(queue)
    try:
        await response.write(b"retry: 2000\n: hello\n\n")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), 15.0)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(b"event: exception\ndata: " + orjson.dumps(message) + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        console.subscribers.discard(queue)
    return response


async def healthz(request: web.Request) -> web.StreamResponse:
    projector = _console(request).projector
    return web.json_response(
        {
            "caught_up": projector.caught_up.is_set(),
            "records": projector.records,
            "skipped": projector.skipped,
        }
    )


async def root(_: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/queue")


# -- assembly ------------------------------------------------------------------------------


def build_app(
    settings: ConsoleSettings, store: Store | None = None, *, project: bool = True
) -> web.Application:
    """The aiohttp application; the projector starts with it and stops with it.

    ``project=False`` serves an existing database without reading the topics (the benchmark).
    """
    rules_dir = settings.rules_dir or default_rules_dir()
    catalog = load_catalog(rules_dir)
    zh_rules = load_rule_translations(Path(rules_dir), "zh-CN")
    if store is None:
        store = Store(
            settings.db_path,
            {r: rule.escalate_after for r, rule in catalog.items()},
            {
                (r, policy.type): policy.approval_ttl
                for r, rule in catalog.items()
                for policy in rule.remediation
            },
        )
    if settings.console_session_secret is not None:
        key = settings.console_session_secret.get_secret_value().encode()
    else:
        key = load_or_create_secret(settings.console_dir / "session.key")
    projector = Projector(settings, store)
    console = Console(
        settings=settings,
        store=store,
        projector=projector,
        signer=Signer(key),
        proxy=ProxyAuth(
            tuple(settings.proxy_networks()),
            settings.console_proxy_user_header,
            settings.console_proxy_email_header,
            settings.console_proxy_groups_header,
            settings.console_proxy_group_prefix,
        ),
        catalog=catalog,
        zh_rules=zh_rules,
        env=_make_env(),
    )
    projector.listeners.append(console.broadcast)
    app = web.Application(
        middlewares=[security_headers, authenticate, csrf_check], client_max_size=64 * 1024
    )
    app[CONSOLE_KEY] = console
    app.router.add_get("/", root)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/lang/{lang}", set_language)
    app.router.add_get("/queue", queue)
    app.router.add_get("/overview", overview)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/exceptions/{exception_id}", detail)
    app.router.add_post("/exceptions/{exception_id}/{action}", command)
    app.router.add_get("/actions", actions_view)
    app.router.add_post("/actions/{action_id}/{decision}", decide)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False)

    async def on_startup(_: web.Application) -> None:
        if project:
            await projector.start()

    async def on_shutdown(_: web.Application) -> None:
        for queue in list(console.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def on_cleanup(_: web.Application) -> None:
        await projector.stop()
        store.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(settings: ConsoleSettings) -> None:
    """Run until cancelled (SIGINT/SIGTERM in the CLI)."""
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.console_host, settings.console_port)
    await site.start()
    log.info("console.listening", url=f"http://{settings.console_host}:{settings.console_port}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
