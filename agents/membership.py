"""The worker's consumer-group membership across a kill -9: the dead incarnation is ended at start.

Why: a worker killed without closing (kill -9, OOM kill, a crash through ``app.crash``) sends no
LeaveGroup; the group coordinator keeps its member until the session expires (6 s after its
last heartbeat, ``ORDERWATCH_SESSION_TIMEOUT``), and the worker restarted on the same state
directory cannot complete its join before then. On Tansu the restarted worker's JoinGroup and
SyncGroup went round until the dead leader's session expired: ~8 s of the 14 s restart-to-ready
of the 10,000-order quick check (issue 13), where loading the state took well under a second.

What: at every assignment the worker records its member id in its state directory
(``group-member.json``); a worker starting on that directory sends LeaveGroup for the recorded id
before its consumer joins, so the join finds no dead member (a member id is the coordinator's
name for one incarnation, never reused). The directory is the worker's alone: the worker holds an
exclusive ``flock`` on ``worker.lock`` in it for its lifetime (the kernel drops the lock when the
process ends, kill -9 included); a worker that finds the lock taken (a second worker pointed at
a live worker's directory) neither ends nor records a membership, and says so in its log.

Why not static membership (KIP-345, ``group.instance.id``; Faust's
``consumer_group_instance_id``), which Kafka has for exactly this: measured against Tansu 0.6.0
(two aiokafka consumers, docs/operations.md "Group membership"), Tansu answers a known instance
id with the old assignment and no rebalance, but holds every static member's JoinGroup and
SyncGroup 3 s each (its ``PAUSE_MS``): a cold start 3 s slower than a dynamic one; a static member
killed beside another took 6-15 s to rejoin (the survivor's partitions revoked for 6-14 s)
against 3-4 s dynamic; and two live consumers with the same instance id were both given every
partition (no fencing), so a duplicated id would process everything twice
(``bench/probe_membership.py``). Ending the dead member works
on every broker and keeps the dynamic protocol the tests and the standby failover rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import faust

from orderwatch.agents.faust_internals import group_member, leave_group

log = logging.getLogger("orderwatch.worker")

MEMBER_FILE = "group-member.json"
LOCK_FILE = "worker.lock"
#: LeaveGroup's answer for a member the coordinator no longer knows (its session expired)
UNKNOWN_MEMBER_ID = 25


class Membership:
    """The member id of the worker's last incarnation in its group, kept in its state directory.

    ``directory``: the worker's table directory (``app.conf.tabledir``, one per app id);
    ``group``: the consumer group (the app id); ``options``: aiokafka client options (bootstrap
    servers and credentials) for the LeaveGroup.
    """

    def __init__(self, directory: Path, group: str, options: dict[str, Any]) -> None:
        self.directory = directory
        self.group = group
        self.options = options
        self._lock: IO[str] | None = None
        self._recorded: str | None = None

    @property
    def claimed(self) -> bool:
        return self._lock is not None

    def claim(self) -> bool:
        """Take the directory's lock for this process's lifetime; False if another holds it."""
        if self._lock is not None:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / LOCK_FILE, "a")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            log.warning(
                "state directory %s is locked by another live worker: its group membership is "
                "left alone (two workers must not share a state directory)",
                self.directory,
            )
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        return True

    def previous(self) -> str | None:
        """The member id recorded by the last incarnation in this group, if any."""
        try:
            recorded = json.loads((self.directory / MEMBER_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("group") != self.group:
            return None
        member = recorded.get("member_id")
        return member if isinstance(member, str) and member else None

    def record(self, member_id: str) -> None:
        """Keep ``member_id`` for the next incarnation (written whole: rename over the old)."""
        if member_id == self._recorded or not self.claimed:
            return
        path = self.directory / MEMBER_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"group": self.group, "member_id": member_id}))
        os.replace(temporary, path)
        self._recorded = member_id

    def end_previous(self, within: float = 5.0) -> str | None:
        """Claim the directory and end the last incarnation's membership; the id ended, if any.

        Called before the app starts (its own event loop, closed after). A broker that does not
        answer in ``within`` seconds costs that much and no more: the join then waits for the old
        session, as it did without this.
        """
        if not self.claim():
            return None
        member = self.previous()
        if member is None:
            return None
        loop = asyncio.new_event_loop()
        try:
            code = loop.run_until_complete(leave_group(self.options, self.group, member, within))
        except Exception as exc:  # the broker down or slow: join as before
            log.warning("could not end the previous member %s of %s: %r", member, self.group, exc)
            return None
        finally:
            with contextlib.suppress(Exception):
                loop.close()
        if code not in (0, UNKNOWN_MEMBER_ID):
            log.warning("LeaveGroup for the previous member %s answered %d", member, code)
            return None
        log.info(
            "ended the previous incarnation's group membership %s (%s)",
            member,
            "left" if code == 0 else "already expired",
        )
        return member if code == 0 else None

    def attach(self, app: faust.App) -> None:
        """Record the member id at every assignment (Faust's ``on_partitions_assigned``)."""

        async def assigned(sender: Any, assigned: Any, **_: Any) -> None:
            member = group_member(app)
            if member is not None:
                try:
                    self.record(member)
                except OSError as exc:  # a full disk must not stop the rebalance
                    log.warning("could not record the group member id: %r", exc)

        self._assigned = assigned  # Faust's signals hold weak references
        app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
