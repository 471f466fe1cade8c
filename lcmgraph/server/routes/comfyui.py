"""ComfyUI's own HTTP API and WebSocket, over lcmgraph's queue and store.

ComfyUI clients (its script examples, its frontend's calls) talk to
``lcmgraph serve`` as to ComfyUI: POST /prompt queues an API-format graph
(converted and validated as /api/jobs does, into the same queue), /ws sends
ComfyUI's message types, /history and /view give back the images. A job's
id is its ``prompt_id``. The routes are served at their bare paths, and
under /api/ where lcmgraph's own API has no route of that name (see
docs/api.md, "ComfyUI compatibility").
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from ... import __version__
from ..bodies import CLIENT_ID, COMFY_JSON_TYPES, owner_filter, server_of, user_of, where
from ..bodies import read_body as read_json_body
from ..comfy_api import (
    META_KEY,
    history_item,
    queue_item,
    server_features,
    status_message,
    stored_request,
    translate,
)
from ..errors import ApiError, dumps, json_response
from ..jobs import CANCELLED, FINISHED, QUEUED
from ..queue import QueueFull
from . import comfyui_files, comfyui_models
from . import history as lcm_history
from . import jobs as lcm_jobs
from .files import serve_file

#: prompt_ids a client may choose: a lower-case UUID (what ComfyUI's clients make) or 16 hex digits.
PROMPT_ID = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: Past any history's end (SQLite's integers stop at 2**63).
MAX_OFFSET = 2**62
#: View types (ComfyUI's folder names, which are lcmgraph's).
VIEW_TYPES = ("output", "input", "temp")


async def read_body(request: web.Request, server, optional: bool = False) -> dict:
    """A JSON body, whatever Content-Type the ComfyUI client gave it."""
    return await read_json_body(request, server, optional, content_types=COMFY_JSON_TYPES)


def comfy_error(kind: str, message: str, details: str = "", status: int = 400,
                node_errors: dict | None = None) -> web.Response:
    """ComfyUI's error answer: {"error": {type, message, details, extra_info}, "node_errors"}."""
    return json_response({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                          "node_errors": node_errors or {}}, status=status)


def _node_errors(problems: list[dict], prompt: dict) -> tuple[dict[str, Any], list[str]]:
    """lcmgraph problems grouped by node in ComfyUI's node_errors shape (the importer
    keeps ComfyUI's node ids), and the messages of problems that name no node."""
    node_errors: dict[str, Any] = {}
    general: list[str] = []
    for problem in problems:
        node = problem.get("node")
        text = str(problem.get("message", ""))
        if node is None:
            general.append(text)
            continue
        node = str(node)
        name = problem.get("input")
        raw = prompt.get(node) if isinstance(prompt, dict) else None
        class_type = raw.get("class_type") if isinstance(raw, dict) else None
        entry = node_errors.setdefault(node, {"errors": [], "dependent_outputs": [], "class_type": class_type})
        entry["errors"].append({"type": str(problem.get("code") or "invalid_input"), "message": text,
                                "details": f"{name}: {text}" if name else text,
                                "extra_info": {"input_name": name} if name else {}})
    return node_errors, general


async def post_prompt(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    user, queue = user_of(request), server.queue
    if queue.queued_count >= queue.max_queue:
        raise QueueFull(queue.max_queue)
    body = await read_body(request, server)
    prompt = body.get("prompt")
    if not isinstance(prompt, dict) or not prompt:
        return comfy_error("no_prompt", "No prompt provided", "No prompt provided")
    extra = body.get("extra_data") if isinstance(body.get("extra_data"), dict) else {}
    client = body.get("client_id", extra.get("client_id"))
    client = client if isinstance(client, str) and CLIENT_ID.match(client) else "comfyui"
    extra = {**extra, "client_id": client}
    job_id = body.get("prompt_id")
    if job_id is not None:
        if not isinstance(job_id, str) or not PROMPT_ID.match(job_id):
            return comfy_error("invalid_prompt", "prompt_id must be a lower-case UUID or 16 hex digits",
                               str(job_id)[:80])
        if server.store.get(job_id) is not None:
            return comfy_error("invalid_prompt", f"prompt_id {job_id!r} is already in use", job_id)
    try:
        document, prepared, problems, count = await lcm_jobs._check(
            request, {"prompt": prompt, "extra_data": extra}, None, here)
    except ApiError as exc:
        if exc.status != 400:
            raise
        return comfy_error("invalid_prompt", "Cannot convert the prompt", exc.message)
    if problems:
        node_errors, general = _node_errors(problems, prompt)
        details = "; ".join(general) or "; ".join(f"{n}: {e['errors'][0]['message']}" for n, e in node_errors.items())
        if count > len(problems):
            details += f" ({count - len(problems):,} more problems not listed)"
        kind, message = (("prompt_outputs_failed_validation", "Prompt outputs failed validation") if node_errors
                         else ("invalid_prompt", "Invalid prompt"))
        return comfy_error(kind, message, details, node_errors=node_errors)
    if not isinstance(document, dict) or document.get("format") != "lcmgraph.workflow":
        return comfy_error("invalid_prompt", "Cannot execute this prompt", "it is not a ComfyUI API-format graph")
    outputs = list(prepared.outputs) if prepared is not None else []
    number = body.get("number")
    front = bool(body.get("front"))
    meta = dict(document.get("meta") or {})
    meta[META_KEY] = {"prompt": prompt, "extra_data": extra, "outputs": outputs,
                      **({"number": number} if isinstance(number, int | float) and not isinstance(number, bool)
                         else {})}
    document = {**document, "meta": meta}
    job, _ = queue.submit(dumps(document), client, None, "", front, prepared=prepared, owner=user.name,
                          admin=user.admin, job_id=job_id or str(uuid.uuid4()))
    return json_response({"prompt_id": job.id, "number": meta[META_KEY].get("number", job.seq),
                          "node_errors": {}})


def _remaining(server) -> int:
    return server.queue.queued_count + len(server.queue.running_ids())


async def get_prompt(request: web.Request) -> web.Response:
    return json_response({"exec_info": {"queue_remaining": _remaining(server_of(request))}})


async def get_queue(request: web.Request) -> web.Response:
    server = server_of(request)
    owner = owner_filter(user_of(request))
    running = [j for j in server.store.running() if owner is None or j.owner == owner]
    queued = [j for j in server.store.queued(owner=owner)]
    item = lambda j: queue_item(j, stored_request(server.store.workflow(j.id)))  # noqa: E731
    return json_response({"queue_running": [item(j) for j in running], "queue_pending": [item(j) for j in queued]})


def _id_list(body: dict, key: str) -> list[str]:
    ids = body.get(key)
    if not isinstance(ids, list):
        return []
    return [i for i in ids[:lcm_history.MAX_DELETE_IDS] if isinstance(i, str) and 0 < len(i) <= 64]


async def post_queue(request: web.Request) -> web.Response:
    server = server_of(request)
    body = await read_body(request, server, optional=True)
    owner = owner_filter(user_of(request))
    if body.get("clear") is True:
        server.queue.clear(owner=owner)
    for job_id in _id_list(body, "delete"):
        job = server.store.get(job_id)
        if job is not None and job.status == QUEUED and (owner is None or job.owner == owner):
            server.queue.cancel(job_id, owner=owner)
    return json_response({})


async def interrupt(request: web.Request) -> web.Response:
    server = server_of(request)
    body = await read_body(request, server, optional=True)
    job_id = body.get("prompt_id")
    server.queue.interrupt(job_id if isinstance(job_id, str) else None, owner=owner_filter(user_of(request)))
    return json_response({})


def _visible_history(server, request: web.Request, limit: int, offset: int = 0) -> list:
    jobs, _ = server.store.history(limit, offset, None, owner=owner_filter(user_of(request)))
    return [j for j in jobs if j.status != CANCELLED]


async def get_history(request: web.Request) -> web.Response:
    server = server_of(request)
    cap = server.limits.max_history_page
    try:
        limit = min(cap, max(1, int(request.query.get("max_items", cap))))
        offset = min(MAX_OFFSET, max(0, int(request.query.get("offset", 0))))
    except ValueError:
        return comfy_error("invalid_parameter", "max_items and offset must be integers", status=400)
    jobs = _visible_history(server, request, limit, offset)
    return json_response({j.id: history_item(j, stored_request(server.store.workflow(j.id))) for j in jobs})


async def get_history_item(request: web.Request) -> web.Response:
    server = server_of(request)
    job_id = request.match_info["prompt_id"]
    job = server.store.get(job_id)
    owner = owner_filter(user_of(request))
    if job is None or job.status not in FINISHED or job.status == CANCELLED or (owner and job.owner != owner):
        return json_response({})
    return json_response({job.id: history_item(job, stored_request(server.store.workflow(job.id)))})


async def post_history(request: web.Request) -> web.Response:
    server = server_of(request)
    body = await read_body(request, server, optional=True)
    owner = owner_filter(user_of(request))
    ids: list[str] = []
    if body.get("clear") is True:
        ids = server.store.finished_ids(owner)
    for job_id in _id_list(body, "delete"):
        job = server.store.get(job_id)
        if job is not None and job.status in FINISHED and (owner is None or job.owner == owner):
            ids.append(job_id)
    if ids:
        await lcm_history._delete(server, list(dict.fromkeys(ids)))
    return json_response({})


async def view(request: web.Request) -> web.StreamResponse:
    """?filename=&subfolder=&type= (output by default); a job's outputs are in the
    subfolder named by its prompt_id, as /history and the executed messages say."""
    folder = request.query.get("type") or "output"
    if folder not in VIEW_TYPES:
        raise ApiError(400, "invalid_parameter", f"{where(request)}: type must be one of {', '.join(VIEW_TYPES)}")
    filename = request.query.get("filename", "")
    subfolder = request.query.get("subfolder", "")
    if not filename or "/" in filename:
        raise ApiError(400, "invalid_name", f"{where(request)}: give a file name without '/' in 'filename' "
                                            f"(its folder in 'subfolder')")
    name = f"{subfolder.strip('/')}/{filename}" if subfolder.strip("/") else filename
    return await serve_file(request, folder, name)


async def system_stats(request: web.Request) -> web.Response:
    server = server_of(request)
    total = free = 0
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total, free = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        pass
    torch = sys.modules.get("torch")
    device = str(getattr(server.engine.config, "device", None) or "cpu")
    return json_response({
        "system": {"os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": f"lcmgraph {__version__}",
                   "python_version": sys.version, "pytorch_version": getattr(torch, "__version__", ""),
                   "embedded_python": False, "argv": ["lcmgraph", "serve"], "platform": platform.system()},
        "devices": [{"name": device, "type": device.split(":")[0], "index": 0, "vram_total": 0, "vram_free": 0,
                     "torch_vram_total": 0, "torch_vram_free": 0}],
    })


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """/ws?clientId=: ComfyUI's messages for the jobs submitted with that client_id."""
    server = server_of(request)
    sid = request.query.get("clientId") or uuid.uuid4().hex
    if not CLIENT_ID.match(sid):
        raise ApiError(400, "invalid_parameter", f"{where(request)}: clientId must be 1-64 characters of "
                                                 f"letters, digits, _ . : -")
    if len(server.hub) >= server.limits.max_ws_clients:
        raise ApiError(429, "too_many_clients",
                       f"{where(request)}: {server.limits.max_ws_clients} WebSocket clients are connected "
                       f"(the limit)", headers={"Retry-After": "5"})
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=server.limits.max_ws_message)
    await ws.prepare(request)
    user = user_of(request)
    transport = request.transport
    client = server.hub.attach(ws, sid, "own", user=user.name, admin=user.admin,
                               abort=transport.abort if transport is not None else None)
    client.translate = translate
    server.hub.send(client, status_message(_remaining(server), sid))
    first = True
    try:
        async for message in ws:  # only a first 'feature_flags' matters; read on to see the close
            if message.type == WSMsgType.ERROR:
                break
            if first and message.type == WSMsgType.TEXT and _is_feature_flags(message.data):
                server.hub.send(client, {"type": "feature_flags", "data": server_features(server)})
            first = False
    finally:
        await server.hub.detach(client)
    return ws


def _is_feature_flags(text: str) -> bool:
    """ComfyUI's frontend opens with {"type": "feature_flags", "data": {...}} and gets the server's."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") == "feature_flags"


def add_routes(app: web.Application) -> None:
    router = app.router
    for base in ("", "/api"):  # /api/<name> only where lcmgraph's API has no route of that name
        router.add_post(f"{base}/prompt", post_prompt)
        router.add_get(f"{base}/prompt", get_prompt)
        router.add_post(f"{base}/queue", post_queue)
        router.add_get(f"{base}/history/{{prompt_id}}", get_history_item)
        router.add_post(f"{base}/history", post_history)
        router.add_get(f"{base}/view", view)
        router.add_get(f"{base}/system_stats", system_stats)
    router.add_get("/queue", get_queue)
    router.add_post("/interrupt", interrupt)
    router.add_get("/history", get_history)
    router.add_get("/ws", websocket)
    comfyui_files.add_routes(app)
    comfyui_models.add_routes(app)
