"""Read-only descriptions: server info, node schema, model files, example workflows."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp import web

from ... import __version__
from ..bodies import server_of, user_of, where
from ..config import API_VERSION
from ..errors import json_response, not_found

WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
MAX_EXAMPLE_BYTES = 4 * 1024 * 1024


async def api_info(request: web.Request) -> web.Response:
    server = server_of(request)
    limits = server.limits
    return json_response({
        "api_version": API_VERSION,
        "lcmgraph": __version__,
        "auth": bool(server.config.token or server.config.users),
        "user": {"name": user_of(request).name or None, "admin": user_of(request).admin},
        "queue": server.queue.counts() if server.queue else None,
        "websocket_clients": len(server.hub),
        "limits": {
            "max_json_bytes": limits.max_json_bytes, "max_upload_bytes": limits.max_upload_bytes,
            "max_image_pixels": limits.max_image_pixels, "max_image_side": limits.max_image_side,
            "max_queue": limits.max_queue, "max_json_depth": limits.max_json_depth,
        },
    })


async def node_schema(request: web.Request) -> web.Response:
    return web.Response(text=server_of(request).schema_text(), content_type="application/json")


async def all_models(request: web.Request) -> web.Response:
    files = server_of(request).engine.files
    listing = await asyncio.get_running_loop().run_in_executor(
        None, lambda: {f: files.list(f) for f in files.folders()})
    if "input" in listing:
        listing["input"] = _visible_inputs(request, listing["input"])
    return json_response({"folders": listing})


def _visible_inputs(request: web.Request, names: list) -> list:
    """Input files without other users' uploads (an admin sees all)."""
    user = user_of(request)
    if user.admin:
        return names
    hidden = server_of(request).store.uploads_of_others(user.name)
    return [n for n in names if n not in hidden]


async def folder_models(request: web.Request) -> web.Response:
    files = server_of(request).engine.files
    folder = request.match_info["folder"]
    if folder not in files.folders():
        raise not_found(f"{where(request)}: no model folder {folder!r} (folders: {', '.join(files.folders())})",
                        code="unknown_folder")
    names = await asyncio.get_running_loop().run_in_executor(None, files.list, folder)
    if folder == "input":
        names = _visible_inputs(request, names)
    return json_response({"folder": folder, "files": names})


def _examples(directory) -> list[dict]:
    out = []
    if directory is None or not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if not path.is_file() or path.is_symlink() or not WORKFLOW_NAME.match(path.name):
            continue
        entry = {"name": path.stem, "file": path.name}
        try:
            meta = json.loads(path.read_text("utf-8")).get("meta") or {}
        except (OSError, ValueError, AttributeError) as exc:
            entry["error"] = f"unreadable: {exc}"
        except RecursionError:
            entry["error"] = "unreadable: JSON nested too deeply"
        else:
            if isinstance(meta, dict):
                entry.update({k: meta[k] for k in ("title", "description") if isinstance(meta.get(k), str)})
        out.append(entry)
    return out


async def list_workflows(request: web.Request) -> web.Response:
    directory = server_of(request).workflows_dir
    items = await asyncio.get_running_loop().run_in_executor(None, _examples, directory)
    return json_response({"workflows": items})


async def get_workflow(request: web.Request) -> web.Response:
    directory = server_of(request).workflows_dir
    name = request.match_info["name"]
    stem = name[:-5] if name.endswith(".json") else name
    path = directory / f"{stem}.json"
    if not WORKFLOW_NAME.match(stem) or not path.is_file() or path.is_symlink():
        raise not_found(f"{where(request)}: no example workflow {name[:100]!r} (see GET /api/workflows)",
                        code="no_such_workflow")
    if path.stat().st_size > MAX_EXAMPLE_BYTES:
        raise not_found(f"{where(request)}: example {name!r} is too large to serve", code="no_such_workflow")
    text = await asyncio.get_running_loop().run_in_executor(None, path.read_text, "utf-8")
    return web.Response(text=text, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api", api_info)
    app.router.add_get("/api/nodes", node_schema)
    app.router.add_get("/api/models", all_models)
    app.router.add_get("/api/models/{folder}", folder_models)
    app.router.add_get("/api/workflows", list_workflows)
    app.router.add_get("/api/workflows/{name}", get_workflow)
