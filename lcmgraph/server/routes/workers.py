"""``GET /api/workers``: who runs jobs (the worker thread, or each Ray worker):
models held, jobs running, device and health."""

from __future__ import annotations

from aiohttp import web

from ..bodies import server_of, user_of
from ..errors import json_response


async def list_workers(request: web.Request) -> web.Response:
    server = server_of(request)
    workers = await server.worker.describe() if server.worker is not None else []
    if not user_of(request).admin:  # other users' job ids and the hosts' process ids are not theirs to see
        workers = [{**{k: v for k, v in w.items() if k not in ("pid", "host")}, "running": len(w["running"])}
                   for w in workers]
    queue = server.queue.counts() if server.queue is not None else None
    return json_response({"workers": workers, "queued": queue["queued"] if queue else 0,
                          "cluster": server.config.ray is not None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/workers", list_workers)
