"""English and Simplified Chinese for every label of the console, and the rules' Chinese texts.

The language is the ``ow_lang`` cookie when set (the switch in the header), else the best match of
the browser's ``Accept-Language``. Rule titles and playbooks come from the rule files (English) and
from ``rules/i18n/zh-CN.yaml`` (rule_id -> title, actions), kept beside the rules so the people who
tune a rule also keep its translation; a rule missing there falls back to English.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

LANGS = ("en", "zh-CN")
LANG_COOKIE = "ow_lang"

LABELS: dict[str, tuple[str, str]] = {
    # key: (en, zh-CN)
    "app": ("orderwatch console", "orderwatch 异常工作台"),
    "queue": ("Queue", "异常队列"),
    "overview": ("Overview", "概览"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "user": ("User", "用户"),
    "password": ("Password", "密码"),
    "bad_login": ("Wrong user name or password.", "用户名或密码错误。"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "role": ("Role", "角色"),
    "language": ("Language", "语言"),
    "live": ("live", "实时"),
    "offline": ("reconnecting", "重新连接中"),
    "filter": ("Filter", "筛选"),
    "clear": ("Clear", "清除"),
    "any": ("any", "全部"),
    "open_any": ("open (any)", "未关闭(全部)"),
    "unassigned": ("unassigned", "未分配"),
    "text": ("Text", "关键词"),
    "sort": ("Sort", "排序"),
    "most_urgent": ("most urgent", "最紧急"),
    "newest": ("newest", "最新"),
    "owner": ("Team", "负责团队"),
    "severity": ("Severity", "严重程度"),
    "rule": ("Rule", "规则"),
    "status": ("Status", "状态"),
    "state": ("Last change", "最近变化"),
    "assignee": ("Assignee", "处理人"),
    "subject": ("Subject", "对象"),
    "summary": ("Summary", "摘要"),
    "age": ("Age", "已持续"),
    "escalates_in": ("Escalates in", "升级倒计时"),
    "overdue": ("due now", "已到期"),
    "never": ("—", "—"),
    "level": ("Level", "级别"),
    "of": ("of", "共"),
    "rows": ("exceptions", "条异常"),
    "prev": ("Previous", "上一页"),
    "next": ("Next", "下一页"),
    "page": ("Page", "页"),
    "nothing": ("Nothing matches these filters.", "没有符合条件的异常。"),
    "exception": ("Exception", "异常"),
    "evidence": ("Evidence", "证据"),
    "events": ("Input events", "输入事件"),
    "playbook": ("Playbook", "处理步骤"),
    "history": ("History", "处理记录"),
    "when": ("When", "时间"),
    "who": ("Who", "操作人"),
    "note": ("Note", "备注"),
    "actions": ("Actions", "操作"),
    "acknowledge": ("Acknowledge", "认领"),
    "unacknowledge": ("Unacknowledge", "取消认领"),
    "assign": ("Assign", "指派"),
    "snooze": ("Snooze", "暂缓"),
    "snooze_for": ("for (e.g. 30m, 2h, 1d)", "时长(如 30m、2h、1d)"),
    "comment": ("Comment", "评论"),
    "resolve": ("Resolve", "解决"),
    "resolution": ("Resolution", "解决方式"),
    "reopen": ("Reopen", "重新打开"),
    "send": ("Send", "提交"),
    "read_only": (
        "You can view this exception but not act on it.",
        "你可以查看此异常,但无权操作。",
    ),
    "accepted": ("Done", "已完成"),
    "rejected": ("Rejected", "被拒绝"),
    "no_reply": (
        "No reply from the detector yet; the command may still be applied.",
        "检测器尚未回复,命令可能稍后生效。",
    ),
    "forbidden": ("You may not do this.", "你无权执行此操作。"),
    "send_failed": (
        "The command could not be sent (Kafka unreachable); nothing was changed. Try again.",
        "命令未能发送(无法连接 Kafka),未做任何更改,请重试。",
    ),
    "csrf": ("The form expired; reload the page and try again.", "表单已过期,请刷新后重试。"),
    "not_found": ("No such exception.", "没有这个异常。"),
    "category": ("Category", "类别"),
    "detected_at": ("Detected", "检测时间"),
    "event_time": ("Condition since", "条件成立时间"),
    "order": ("Order", "订单"),
    "inhibited_by": ("Explained by", "根因异常"),
    "snoozed_until": ("Snoozed until", "暂缓至"),
    "acknowledged_by": ("Acknowledged by", "认领人"),
    "resolved_by": ("Resolved by", "解决方"),
    "open_by_team": ("Open by team and severity", "各团队未关闭异常(按严重程度)"),
    "per_hour": ("Exceptions per hour, last 24 h", "近 24 小时每小时新增异常"),
    "top_rules": ("Top rules, last 24 h", "近 24 小时最多的规则"),
    "mtta": ("MTTA (mean time to acknowledge)", "平均认领时长 (MTTA)"),
    "mttr": ("MTTR (mean time to resolve)", "平均解决时长 (MTTR)"),
    "open_by_status": ("Open by status", "未关闭异常(按状态)"),
    "last_24h": ("last 24 h", "近 24 小时"),
    "all_teams": ("all teams", "全部团队"),
    "hours_ago": ("hours ago", "小时前"),
    "now": ("now", "现在"),
    "teams": ("Teams", "团队"),
    # remediation actions (CONTRACT 10)
    "approvals": ("Approvals", "待审批"),
    "remediation": ("Remediation actions", "自动化处置"),
    "action_type": ("Action", "处置动作"),
    "mode": ("Mode", "模式"),
    "target": ("Target", "目标"),
    "params": ("Parameters", "参数"),
    "approve": ("Approve", "批准"),
    "reject": ("Reject", "驳回"),
    "reject_reason": ("reason for rejecting", "驳回原因"),
    "waiting": ("Waiting", "已等待"),
    "expires_in": ("Expires in", "过期倒计时"),
    "awaiting_approver": ("awaiting an approver", "等待审批人"),
    "approved_by": ("approved by", "批准人"),
    "rejected_by": ("rejected by", "驳回人"),
    "no_action": ("No such action.", "没有这个处置动作。"),
    "no_actions": ("No actions in this status.", "没有该状态的处置动作。"),
    "actions_total": ("actions", "个处置动作"),
}

VALUES: dict[str, tuple[str, str]] = {
    # severities
    "critical": ("critical", "紧急"),
    "high": ("high", "高"),
    "medium": ("medium", "中"),
    "low": ("low", "低"),
    # statuses and states
    "open": ("open", "待处理"),
    "acknowledged": ("acknowledged", "已认领"),
    "snoozed": ("snoozed", "已暂缓"),
    "inhibited": ("inhibited", "已抑制"),
    "resolved": ("resolved", "已解决"),
    "raised": ("raised", "触发"),
    "escalated": ("escalated", "升级"),
    "unacknowledged": ("unacknowledged", "取消认领"),
    "assigned": ("assigned", "已指派"),
    "commented": ("commented", "评论"),
    "reopened": ("reopened", "重新打开"),
    # owners
    "payments": ("payments", "支付"),
    "warehouse": ("warehouse", "仓储"),
    "logistics": ("logistics", "物流"),
    "customer_service": ("customer service", "客服"),
    "tech": ("tech", "技术"),
    "risk": ("risk", "风控"),
    # categories
    "payment": ("payment", "支付"),
    "inventory": ("inventory", "库存"),
    "customer_info": ("customer info", "客户信息"),
    "system": ("system", "系统"),
    "fraud": ("fraud", "欺诈"),
    # resolutions
    "fixed": ("fixed", "已修复"),
    "false_positive": ("false positive", "误报"),
    "duplicate": ("duplicate", "重复"),
    "wont_fix": ("won't fix", "不处理"),
    # roles and actors
    "viewer": ("viewer", "查看者"),
    "operator": ("operator", "处理人员"),
    "approver": ("approver", "审批人"),
    "rule": ("rule", "规则"),
    "orderwatch": ("orderwatch", "orderwatch"),
    # remediation action types, modes and statuses (CONTRACT 10)
    "order.resync_status": ("resync order status", "同步订单状态"),
    "payment.refund": ("refund payment", "退款"),
    "fulfillment.hold": ("hold fulfilment", "暂停履约"),
    "fulfillment.release": ("release fulfilment", "恢复履约"),
    "customer.notify": ("notify customer", "通知客户"),
    "carrier.claim": ("claim with carrier", "向承运商索赔"),
    "blacklist.suggest": ("suggest blacklisting", "建议加入黑名单"),
    "dry_run": ("dry run", "演练"),
    "auto": ("automatic", "自动"),
    "approval": ("needs approval", "需审批"),
    "awaiting_approval": ("awaiting approval", "待审批"),
    "planned": ("planned", "已计划"),
    "requested": ("requested", "已请求执行"),
    "rejected": ("rejected", "已驳回"),
    "expired": ("expired", "已过期"),
    "cancelled": ("cancelled", "已取消"),
    "throttled": ("throttled", "已限流"),
    "paused": ("paused", "已暂停"),
    "succeeded": ("succeeded", "执行成功"),
    "failed": ("failed", "执行失败"),
    # reply reasons
    "unknown_exception": ("unknown exception", "异常不存在"),
    "stale": ("someone changed it first; look again", "已被他人更改,请查看最新状态"),
    "invalid_transition": ("not possible in this status", "当前状态下不可执行"),
    "invalid_command": ("invalid input", "输入无效"),
}


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if valid, else the best of Accept-Language, else English."""
    if cookie in LANGS:
        return cookie
    best: tuple[float, str] = (0.0, "en")
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and q > best[0]:
            best = (q, lang)
    return best[1]


@dataclass(frozen=True)
class RuleText:
    title: str
    actions: tuple[str, ...]


def load_rule_translations(rules_dir: Path, lang: str) -> dict[str, RuleText]:
    """``rules/i18n/<lang>.yaml``: rule_id -> {title, actions}; no file, no translations."""
    path = rules_dir / "i18n" / f"{lang}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, RuleText] = {}
    for rule_id, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("title"), str):
            raise ValueError(f"{path}: {rule_id}: needs a title")
        actions = spec.get("actions") or []
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise ValueError(f"{path}: {rule_id}: actions must be a list of strings")
        out[str(rule_id)] = RuleText(spec["title"], tuple(actions))
    return out


class Translator:
    """``t(key)`` for labels, ``v(value)`` for enum values, in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else "en"
        self._i = 1 if self.lang == "zh-CN" else 0

    def t(self, key: str) -> str:
        pair = LABELS.get(key)
        return pair[self._i] if pair else key

    def v(self, value: object) -> str:
        if value is None:
            return "—"
        pair = VALUES.get(str(value))
        return pair[self._i] if pair else str(value)
