"""ComfyUI's model listings, feature flags and POST /free.

GET /models (the model folders), /models/{folder} (its files), /embeddings
(embedding names without extension), /features (the server's feature flags,
also sent on /ws when a client opens with its own), POST /free
(``unload_models`` / ``free_memory``: the engine unloads its models / empties
its output cache, between runs). lcmgraph's own GET /api/models and
/api/models/{folder} keep their shapes, so ComfyUI's two model listings are
served at their bare paths only.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from ..bodies import COMFY_JSON_TYPES, read_body, server_of, user_of, where
from ..comfy_api import server_features
from ..errors import ApiError, json_response

#: Not a model folder in ComfyUI's listing (uploads are listed through LoadImage's choices).
NOT_MODELS = ("input",)


def _folders(request: web.Request) -> list[str]:
    return [f for f in server_of(request).engine.files.folders() if f not in NOT_MODELS]


async def model_folders(request: web.Request) -> web.Response:
    return json_response(_folders(request))


async def folder_files(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in _folders(request):
        # ComfyUI answers a bare 404; this one says which folders there are.
        raise ApiError(404, "unknown_folder", f"{where(request)}: no model folder {folder[:100]!r} "
                                              f"(folders: {', '.join(_folders(request))})")
    files = server_of(request).engine.files
    return json_response(await asyncio.get_running_loop().run_in_executor(None, files.list, folder))


async def embeddings(request: web.Request) -> web.Response:
    files = server_of(request).engine.files
    names = await asyncio.get_running_loop().run_in_executor(None, files.list, "embeddings")
    return json_response([os.path.splitext(name)[0] for name in names])


async def features(request: web.Request) -> web.Response:
    return json_response(server_features(server_of(request)))


async def free(request: web.Request) -> web.Response:
    """{"unload_models": bool, "free_memory": bool}; admins only (it slows everyone's next job)."""
    server = server_of(request)
    body = await read_body(request, server, optional=True, content_types=COMFY_JSON_TYPES)
    if not user_of(request).admin:
        raise ApiError(403, "forbidden", f"{where(request)}: only an admin may unload the server's models")
    unload, clear = body.get("unload_models") is True, body.get("free_memory") is True
    if unload or clear:
        # Engine.free waits for a running job to end: on a thread, never on the loop.
        await asyncio.get_running_loop().run_in_executor(None, server.engine.free, unload, clear)
    return json_response({})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/models", model_folders)
    router.add_get("/models/{folder}", folder_files)
    for base in ("", "/api"):
        router.add_get(f"{base}/embeddings", embeddings)
        router.add_get(f"{base}/features", features)
        router.add_post(f"{base}/free", free)
