"""``Membership``: the member id kept in the state directory and the directory's lock.

The LeaveGroup itself is tested against the broker (``tests/integration/test_group_membership``).
"""

from __future__ import annotations

import json
from pathlib import Path

from orderwatch.agents.membership import LOCK_FILE, MEMBER_FILE, Membership


def test_a_recorded_member_id_is_read_back_by_the_next_incarnation(tmp_path: Path) -> None:
    first = Membership(tmp_path / "tables", "ow", {})
    assert first.claim()
    assert first.previous() is None
    first.record("member-1")
    again = Membership(tmp_path / "tables", "ow", {})
    assert again.previous() == "member-1"
    assert not (tmp_path / "tables" / "group-member.tmp").exists(), "written whole, then renamed"


def test_another_group_s_member_id_is_not_taken_for_ours(tmp_path: Path) -> None:
    (tmp_path / MEMBER_FILE).write_text(json.dumps({"group": "other", "member_id": "m"}))
    assert Membership(tmp_path, "ow", {}).previous() is None
    (tmp_path / MEMBER_FILE).write_text("{not json")
    assert Membership(tmp_path, "ow", {}).previous() is None


def test_a_directory_locked_by_a_live_worker_is_neither_ended_nor_recorded(tmp_path: Path) -> None:
    live = Membership(tmp_path, "ow", {})
    assert live.claim()
    live.record("live-member")
    second = Membership(tmp_path, "ow", {})
    assert not second.claim()
    # no LeaveGroup is even attempted (the options would not reach a broker)
    assert second.end_previous(within=0.5) is None
    second.record("intruder")
    assert Membership(tmp_path, "ow", {}).previous() == "live-member"
    assert (tmp_path / LOCK_FILE).exists()


def test_without_a_broker_the_start_goes_on_after_the_timeout(tmp_path: Path) -> None:
    """A broker that does not answer costs ``within`` seconds, then the join proceeds."""
    (tmp_path / MEMBER_FILE).write_text(json.dumps({"group": "ow", "member_id": "m"}))
    options = {"bootstrap_servers": ["127.0.0.1:1"]}
    assert Membership(tmp_path, "ow", options).end_previous(within=0.5) is None


def test_nothing_is_recorded_before_the_directory_is_claimed(tmp_path: Path) -> None:
    membership = Membership(tmp_path, "ow", {})
    membership.record("m")
    assert not (tmp_path / MEMBER_FILE).exists()
