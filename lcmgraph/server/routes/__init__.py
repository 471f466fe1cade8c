"""HTTP routes, one module per concern; each adds its own routes."""

from __future__ import annotations

from aiohttp import web

from ..bodies import SERVER_KEY
from . import (
    comfy,
    comfy_frontend,
    comfy_object_info,
    comfyui,
    files,
    from_image,
    history,
    info,
    jobs,
    static,
    workers,
    ws,
)


def add_routes(app: web.Application) -> None:
    info.add_routes(app)
    jobs.add_routes(app)
    history.add_routes(app)
    comfy.add_routes(app)
    from_image.add_routes(app)
    files.add_routes(app)
    ws.add_routes(app)
    workers.add_routes(app)
    comfyui.add_routes(app)  # ComfyUI's API; after lcmgraph's /api routes, which win a clash
    comfy_object_info.add_routes(app)
    if app[SERVER_KEY].config.frontend == "comfy":
        comfy_frontend.add_routes(app)  # what ComfyUI's frontend reads besides its API
    static.add_routes(app)  # last: its catch-all must not shadow /api
