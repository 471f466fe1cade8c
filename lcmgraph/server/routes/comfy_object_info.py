"""ComfyUI's ``GET /object_info`` and ``/object_info/{class}`` (also under /api/):
the node classes a ComfyUI client may put in a graph for ``/prompt``, described
in ComfyUI's shape by lcmgraph.comfy.object_info from the packs' mapping tables.
File choices list what lcmgraph's folders hold now (an input folder without
other users' uploads), so the answer is built per request, on a thread."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ...comfy.object_info import class_info, object_info
from ..bodies import server_of, user_of
from ..errors import json_response


def _file_lister(request: web.Request):
    """``list_files(folder)`` as this user may see it (built on the event loop: it reads the store)."""
    files = server_of(request).engine.files
    user = user_of(request)
    hidden = frozenset() if user.admin else frozenset(server_of(request).store.uploads_of_others(user.name))

    def list_files(folder: str) -> list[str]:
        names = files.list(folder) if folder in files.folders() else []
        return [n for n in names if n not in hidden] if folder == "input" else names

    return list_files


async def all_classes(request: web.Request) -> web.Response:
    registry = server_of(request).engine.registry
    list_files = _file_lister(request)
    info = await asyncio.get_running_loop().run_in_executor(None, object_info, registry, list_files)
    return json_response(info)


async def one_class(request: web.Request) -> web.Response:
    """``{class: info}``, or ``{}`` for a class lcmgraph does not offer (as ComfyUI answers)."""
    registry = server_of(request).engine.registry
    name = request.match_info["node_class"]
    mapping = registry.comfy_mappings().get(name)
    if mapping is None:
        return json_response({})
    list_files = _file_lister(request)
    info = await asyncio.get_running_loop().run_in_executor(None, class_info, name, mapping, registry, list_files)
    return json_response({name: info} if info is not None else {})


def add_routes(app: web.Application) -> None:
    for base in ("", "/api"):
        app.router.add_get(f"{base}/object_info", all_classes)
        app.router.add_get(f"{base}/object_info/{{node_class}}", one_class)
