"""customer.remark_attention: the customer's note contains an attention keyword (any case)."""

from datetime import datetime

from tests.factories import created, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "customer.remark_attention"


def test_urgent_in_any_case_raises_low_for_customer_service() -> None:
    order = created("O1", "10:00", remark="Please deliver URGENT, thanks")
    result = run([order])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "customer_info", "low", "customer_service")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [order["event_id"]]
    assert raised.evidence.values["keywords"] == "urgent"


def test_chinese_keywords_raise_and_all_hits_are_listed() -> None:
    result = run([created("O1", "10:00", remark="麻烦加急，需要开发票")])
    [raised] = result.of(RULE)
    assert set(str(raised.evidence.values["keywords"]).split(", ")) == {"加急", "发票"}


def test_every_default_keyword_raises() -> None:
    keywords = ["改地址", "修改地址", "加急", "发票", "不要", "换货"]
    keywords += ["Change Address", "urgent", "INVOICE", "Do Not ring"]
    orders = [created(f"O{i}", "10:00", remark=k) for i, k in enumerate(keywords)]
    assert len(run(orders).of(RULE)) == len(keywords)


def test_an_ordinary_note_raises_nothing() -> None:
    orders = [
        created("O1", "10:00", remark="Please leave it with the concierge"),
        created("O2", "10:00", remark="要快递柜，谢谢"),
        created("O3", "10:00", remark=""),
        created("O4", "10:00"),
    ]
    assert run(orders).of(RULE) == []


def test_a_near_keyword_is_not_a_keyword() -> None:
    orders = [
        created("O1", "10:00", remark="urgen delivery"),
        created("O2", "10:00", remark="invoic"),
        created("O3", "10:00", remark="地址"),
    ]
    assert run(orders).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    order = created("O1", "10:00", remark="urgent")
    result = run([order, order], until=plus("10:00", days=2))
    assert result.states(RULE) == ["raised"]


def test_the_note_itself_stays_out_of_the_exception() -> None:
    note = "urgent: call 13912345678 at 100 Nanjing East Road"
    [raised] = run([created("O1", "10:00", remark=note)]).of(RULE)
    dumped = raised.model_dump_json()
    assert "13912345678" not in dumped and "Nanjing" not in dumped
