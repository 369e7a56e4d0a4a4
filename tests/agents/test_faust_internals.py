"""What the worker leans on inside Faust, checked against the installed version.

An upgrade that removes or renames one of these fails here, not silently in production (where
the worker would fall back, or worse, keep running without the guarantee).
"""

from __future__ import annotations

import inspect

import faust

from orderwatch.agents.app import TunedApp


def test_faust_hands_every_agent_the_apps_error_handler() -> None:
    """The crash path (``app.crash``) hangs on ``App._on_agent_error``: Faust passes it as each
    agent's ``on_error`` and awaits it before its supervisor restarts the agent."""
    assert "on_error=self._on_agent_error" in inspect.getsource(faust.App.agent)
    app = TunedApp("internals-test", broker="kafka://127.0.0.1:1", store="memory://")
    seen: list[BaseException] = []

    async def handler(agent: object, exc: BaseException) -> None:
        seen.append(exc)

    app.on_agent_error = handler

    @app.agent(app.topic("t"))
    async def agent(stream: object) -> None:  # pragma: no cover (never run)
        pass

    assert agent._on_error == app._on_agent_error  # type: ignore[attr-defined]
    source = inspect.getsource(faust.agents.Agent._execute_actor)
    crashed = source[source.index("except Exception") :]
    assert "await self._on_error(self, exc)" in crashed
    assert crashed.index("self._on_error") < crashed.index("aref.crash"), "before the restart"


def test_take_events_acks_the_whole_batch_when_it_is_left() -> None:
    """Why an exception may never leave an agent: the batch is acked in a ``finally``."""
    source = inspect.getsource(faust.Stream.take_events)
    assert "finally:" in source and "await self.ack(event)" in source
