"""The aiohttp application around a ServerApp: middlewares, routes, lifecycle.

Kept apart from app.py so that the routes, which read the ServerApp, and the
ServerApp, which the routes serve, do not import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from .app import ServerApp
from .bodies import SERVER_KEY
from .checking import CHECKER_KEY, Checker
from .routes import add_routes
from .security import auth_guard, errors, host_guard, origin_guard
from .users import UserTable

log = logging.getLogger("lcmgraph.server")

#: How often finished jobs past the age limit are looked for (at most).
PRUNE_INTERVAL = 3600.0
PRUNE_TASK: web.AppKey[asyncio.Task] = web.AppKey("lcmgraph_prune", asyncio.Task)


def web_application(server: ServerApp) -> web.Application:
    config, limits = server.config, server.limits
    middlewares = [errors, host_guard(config.host, config.allow_hosts), origin_guard(config.allow_origins)]
    users = UserTable.build(config.token, config.users)
    if users is not None:
        middlewares.append(auth_guard(users))
    app = web.Application(middlewares=middlewares,
                          client_max_size=max(limits.max_upload_bytes, limits.max_json_bytes) + 64 * 1024)
    app[SERVER_KEY] = server
    app[CHECKER_KEY] = Checker(limits)
    server.hub.configure(limits.ws_buffer, limits.ws_buffer_bytes, limits.ws_total_buffer_bytes)
    add_routes(app)
    app.on_startup.append(server.start)
    app.on_startup.append(_start_retention)
    app.on_shutdown.append(server.shutdown)
    app.on_cleanup.append(_stop_retention)
    app.on_cleanup.append(server.cleanup)
    return app


async def _start_retention(app: web.Application) -> None:
    """The history's limits apply from the start, then periodically (age)."""
    server = app[SERVER_KEY]
    server.queue.retention = server.config.retention
    server.queue.prune()
    interval = PRUNE_INTERVAL
    if server.config.retention.max_age > 0:
        interval = min(PRUNE_INTERVAL, max(1.0, server.config.retention.max_age / 10))
    app[PRUNE_TASK] = asyncio.ensure_future(_prune_every(server, interval))


async def _prune_every(server: ServerApp, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            server.queue.prune()
        except Exception:  # noqa: BLE001 - retention must not stop the server
            log.exception("pruning the history failed")


async def _stop_retention(app: web.Application) -> None:
    task = app.get(PRUNE_TASK)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[CHECKER_KEY].close()
