"""What the worker subscribes to (``agents/app.py`` ``Topology``), without a broker.

The action-results topic once went missing from the router's subscription while staying in the
list of inputs the watermark counts: the worker never saw an executor's result, and only the
live actions test (a minute's timeout) noticed.
"""

from __future__ import annotations

from orderwatch.agents.app import Topology
from orderwatch.agents.faust_internals import TunedApp
from orderwatch.settings import Settings


def test_the_router_reads_every_input_topic_and_only_those() -> None:
    s = Settings(store="memory")
    app = TunedApp("topology-test", broker="kafka://127.0.0.1:1", store="memory://")
    topology = Topology(app, s)
    inputs = {
        s.topic_orders,
        s.topic_payments,
        s.topic_inventory,
        s.topic_logistics,
        s.topic_blacklist,
        s.topic_commands,
        s.topic_action_results,
    }
    assert topology.source_names == inputs
    assert set(topology.sources.topics) == inputs
