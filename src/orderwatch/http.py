"""The worker's small HTTP side door: ``/metrics``, ``/healthz`` and ``/readyz``.

aiohttp rather than ``prometheus_client.start_http_server``: the worker already runs an asyncio
loop (Faust), and the probes need the worker's own readiness, not just "the thread is up".

Liveness and readiness are separate on purpose: a worker that is recovering its tables or
waiting for a partition assignment is alive (restarting it would only restart the recovery)
but not ready (it is not detecting anything yet).

The default bind address is loopback (``Settings.metrics_host``): the endpoints have no
authentication, so exposing them is a deliberate choice of the operator.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from orderwatch.metrics import Metrics

__all__ = ["start_http"]


def _app(metrics: Metrics, is_ready: Callable[[], bool]) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        # ``generate_latest`` writes the classic (0.0.4) text format; prometheus_client's
        # CONTENT_TYPE_LATEST now announces 1.0.0, which Prometheus 2.x servers do not expect.
        # ``?name[]=...`` (repeatable) renders those families alone, as prometheus_client's own
        # exporter does: a poller of one counter (the pipeline bench, 4 times a second) does not
        # make the worker render, nor itself parse, every series
        names = request.query.getall("name[]", [])
        return web.Response(
            body=metrics.render(names or None), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all is the proof of life: the event loop is turning.
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        try:
            ready = bool(is_ready())
        except Exception:
            # A probe that crashes must read as "not ready", never as a 500 that some
            # load balancers treat differently from 503.
            ready = False
        if ready:
            return web.Response(text="ready")
        return web.Response(status=503, text="not ready")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_http(
    host: str,
    port: int,
    metrics: Metrics,
    is_ready: Callable[[], bool],
) -> web.AppRunner:
    """Serve the endpoints on ``host:port`` only, and return the runner.

    The caller owns the runner: ``await runner.cleanup()`` on shutdown. ``port=0`` binds an
    ephemeral port (read it back from ``runner.addresses``), which is what tests use.
    """
    runner = web.AppRunner(_app(metrics, is_ready), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host=host, port=port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
