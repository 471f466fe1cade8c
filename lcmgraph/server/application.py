"""The aiohttp application around a ServerApp: middlewares, routes, lifecycle.

Kept apart from app.py so that the routes, which read the ServerApp, and the
ServerApp, which the routes serve, do not import each other.
"""

from __future__ import annotations

from aiohttp import web

from .app import ServerApp
from .bodies import SERVER_KEY
from .routes import add_routes
from .security import errors, host_guard, origin_guard, token_guard


def web_application(server: ServerApp) -> web.Application:
    config, limits = server.config, server.limits
    middlewares = [errors, host_guard(config.host, config.allow_hosts), origin_guard(config.allow_origins)]
    if config.token:
        middlewares.append(token_guard(config.token))
    app = web.Application(middlewares=middlewares,
                          client_max_size=max(limits.max_upload_bytes, limits.max_json_bytes) + 64 * 1024)
    app[SERVER_KEY] = server
    add_routes(app)
    app.on_startup.append(server.start)
    app.on_shutdown.append(server.shutdown)
    app.on_cleanup.append(server.cleanup)
    return app
