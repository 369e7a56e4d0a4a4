"""order.creation_failed: each order.creation_failed, subject its order_id else its event_id."""

from tests.factories import created, creation_failed, run
from tests.unit.rules.rulebook import assert_card, at

RULE = "order.creation_failed"


def test_a_failure_with_an_order_id_is_about_that_order() -> None:
    failure = creation_failed("10:00", order_id="O1", error_code="DB_TIMEOUT")
    [raised] = run([failure]).of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "system", "low", "tech")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:00")
    assert raised.evidence.event_ids == [failure["event_id"]]
    assert raised.evidence.values["error_code"] == "DB_TIMEOUT"


def test_a_failure_without_an_order_id_is_about_its_event() -> None:
    failure = creation_failed("10:00", event_id="cf-42")
    [raised] = run([failure]).of(RULE)
    assert (raised.subject, raised.order_id) == ("cf-42", None)


def test_each_failure_is_its_own_exception_unless_one_of_its_subject_is_open() -> None:
    # v2 (CONTRACT section 8): a notification is open until a person resolves it, and while it
    # is open further triggers for its (rule_id, subject) raise nothing new
    events = [
        creation_failed("10:00", order_id="O1"),
        creation_failed("10:01", order_id="O1"),
        creation_failed("10:02"),
        creation_failed("10:03"),
    ]
    result = run(events).of(RULE)
    assert [e.subject for e in result] == ["O1", events[2]["event_id"], events[3]["event_id"]]
    assert len({e.exception_id for e in result}) == 3
    assert {e.status for e in result} == {"open"}


def test_a_redelivered_failure_is_one_exception() -> None:
    failure, anonymous = creation_failed("10:00", order_id="O1"), creation_failed("10:01")
    once = run([failure, anonymous]).of(RULE)
    again = run([failure, anonymous, failure, anonymous]).of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]


def test_a_created_order_raises_nothing() -> None:
    assert run([created("O1", "10:00")]).of(RULE) == []


def test_a_notification_never_escalates_or_resolves() -> None:
    events = [creation_failed("10:00", order_id="O1"), created("O1", "10:01")]
    assert run(events, until="2026-11-22T10:00:00Z").states(RULE) == ["raised"]
