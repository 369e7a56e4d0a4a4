"""What the embedded broker does with group members that die or share a static instance id.

    .venv/bin/python bench/probe_membership.py dynamic:0:2 static:0:2 static:1:2 dynamic:1:2 dup:0:1

Each case ``mode:others:delay`` on one embedded Tansu: ``1 + others`` plain aiokafka consumers
of one 4-partition topic join a group (``static``: each with its own ``group_instance_id``);
the first is killed with -9 and, ``delay`` seconds later, a new consumer with the first's
instance id (none if dynamic) is started; ``dup``: the first is left running and the new one
shares its instance id. Prints the seconds from the new consumer's start to its assignment,
the generation before and after, and every assignment or revocation any consumer saw in the 15 s
after. Why: docs/benchmarks.md, "Issue 13: restart-to-ready and group membership" (static
membership measured against Tansu, and not adopted; ``agents/membership.py`` instead).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orderwatch.broker import EmbeddedBroker, create_topics

WATCH = 15.0


def out(**fields: Any) -> None:
    fields["t"] = round(time.time(), 3)
    print(json.dumps(fields), flush=True)


async def member(bootstrap: str, group: str, topic: str, instance: str, seconds: float) -> None:
    """One consumer (the subprocess side): JSON lines of its assignments and revocations."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        group_instance_id=instance or None,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            out(ev="revoked", parts=sorted(p.partition for p in revoked))

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            generation = consumer._coordinator.generation
            out(ev="assigned", parts=sorted(p.partition for p in assigned), gen=generation)

    consumer.subscribe([topic], listener=Listener())
    out(ev="start")
    await consumer.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await consumer.getmany(timeout_ms=200)
    await consumer.stop()


def spawn(
    bootstrap: str, group: str, topic: str, instance: str, log: Path
) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--member", bootstrap, group, topic, instance, "120"]
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def wait_event(log: Path, ev: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(log) if e["ev"] == ev]
        if found:
            return found[0]
        time.sleep(0.05)
    raise RuntimeError(f"no {ev} in {log} after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def case(bootstrap: str, workdir: Path, mode: str, others: int, delay: float) -> dict[str, Any]:
    duplicate = mode == "dup"
    static = mode in ("static", "dup")
    group, topic = f"g-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topics(bootstrap, {topic: 4}))

    def instance(i: int) -> str:
        return f"instance-{i}" if static else ""

    logs = [workdir / f"{group}-{i}.log" for i in range(others + 1)]
    procs = []
    for i, log in enumerate(logs):
        procs.append(spawn(bootstrap, group, topic, instance(i), log))
        wait_event(log, "assigned")
    time.sleep(3)  # every member on the last generation
    before = [e for e in events(logs[0]) if e["ev"] == "assigned"][-1]
    if not duplicate:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
    killed = time.time()
    time.sleep(delay)
    new_log = workdir / f"{group}-new.log"
    procs.append(spawn(bootstrap, group, topic, instance(0), new_log))
    started, assigned = wait_event(new_log, "start"), wait_event(new_log, "assigned")
    time.sleep(WATCH)
    for proc in procs:
        proc.kill()
        proc.wait()

    def seen(log: Path) -> list[tuple[str, Any, Any, float]]:
        return [
            (e["ev"], e.get("parts"), e.get("gen"), round(e["t"] - killed, 1))
            for e in events(log)
            if e["t"] > killed and e["ev"] != "start"
        ]

    return {
        "case": f"{mode}:{others}:{delay:g}",
        "start_to_assigned_s": round(assigned["t"] - started["t"], 2),
        "generation": [before["gen"], assigned["gen"]],
        "partitions": [before["parts"], assigned["parts"]],
        "after_the_kill": {"new": seen(new_log)}
        | {str(i): seen(logs[i]) for i in range(others + 1)},
    }


def main() -> None:
    if sys.argv[1:2] == ["--member"]:
        bootstrap, group, topic, instance, seconds = sys.argv[2:7]
        asyncio.run(member(bootstrap, group, topic, instance, float(seconds)))
        return
    workdir = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        for spec in sys.argv[1:] or ["dynamic:0:2", "static:0:2"]:
            mode, others, delay = spec.split(":")
            print(json.dumps(case(broker.bootstrap, workdir, mode, int(others), float(delay))))


if __name__ == "__main__":
    main()
