"""Jobs: validate, submit, inspect, reorder, cancel, interrupt; the queue and history."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...prepare import Prepared
from ..bodies import (
    check_keys,
    client_id,
    optional_bool,
    optional_int,
    optional_str,
    query_int,
    read_body,
    server_of,
    where,
    workflow_fields,
)
from ..errors import ApiError, bad_request, dumps, json_response, not_found
from ..queue import QueueFull
from . import comfy

log = logging.getLogger("lcmgraph.server")

SUBMIT_FIELDS = ("workflow", "client_id", "outputs", "front", "title")
#: Workflows with more nodes are validated on a thread, keeping the loop free.
INLINE_VALIDATION_NODES = 200

if TYPE_CHECKING:
    from ..app import ServerApp


async def _check(server: ServerApp, document: Any, outputs: list[str] | None,
                 here: str) -> tuple[Prepared | None, list[dict]]:
    """Parse and validate once: the prepared run the worker will use, or the problems."""
    engine = server.engine
    nodes = document.get("nodes") if isinstance(document, dict) else None
    try:
        if isinstance(nodes, dict) and len(nodes) > INLINE_VALIDATION_NODES:
            loop = asyncio.get_running_loop()
            prepared, problems = await loop.run_in_executor(None, engine.check, document, outputs)
        else:
            prepared, problems = engine.check(document, outputs)
    except Exception as exc:  # noqa: BLE001 - a validator bug must not become a 5xx for the client
        log.exception("validation raised for %s", here)
        return None, [{"node": None, "input": None, "code": "unvalidatable",
                       "message": f"the workflow could not be validated: {type(exc).__name__}: {exc}"}]
    return prepared, [p.to_json() for p in problems]


def _invalid(here: str, problems: list[dict]) -> ApiError:
    count = len(problems)
    first = problems[0]
    where_ = " ".join(f"{k} {first[k]!r}" for k in ("node", "input") if first.get(k))
    summary = f"{where_}: {first['message']}" if where_ else first["message"]
    more = f" (and {count - 1} more)" if count > 1 else ""
    return bad_request(f"{here}: the workflow has {count} problem{'s' if count != 1 else ''}: {summary}{more}",
                       code="invalid_workflow", problems=problems)


async def validate(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow", "outputs"), here)
    document, outputs = workflow_fields(body, here)
    document = comfy.convert(server, document, here)
    _, problems = await _check(server, document, outputs, here)
    return json_response({"ok": not problems, "problems": problems})


async def submit(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    queue = server.queue
    if queue.queued_count >= queue.max_queue:  # cheap refusal before reading anything
        raise QueueFull(queue.max_queue)
    body = await read_body(request, server)
    check_keys(body, SUBMIT_FIELDS, here)
    document, outputs = workflow_fields(body, here)
    document = comfy.convert(server, document, here)
    owner = client_id(body.get("client_id"), here)
    front = optional_bool(body, "front", here)
    title = optional_str(body, "title", here, 200)
    prepared, problems = await _check(server, document, outputs, here)
    if problems:
        raise _invalid(here, problems)
    if title is None:
        meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
        title = meta.get("title")[:200] if isinstance(meta.get("title"), str) else ""
    job, position = queue.submit(dumps(document), owner, outputs, title, front, prepared=prepared)
    return json_response({"job": job.summary(position=position), "position": position}, status=201,
                         headers={"Location": f"/api/jobs/{job.id}"})


def _job_or_404(server: ServerApp, request: web.Request):
    job_id = request.match_info["job_id"]
    job = server.store.get(job_id)
    if job is None:
        raise not_found(f"{where(request)}: no job {job_id[:64]!r}", code="no_such_job")
    return job


async def get_job(request: web.Request) -> web.Response:
    server = server_of(request)
    job = _job_or_404(server, request)
    out = job.summary(position=server.queue.position(job.id) if job.status == "queued" else None)
    if request.query.get("workflow") in ("1", "true"):
        out["workflow"] = json.loads(job.workflow_text)
    return json_response({"job": out})


async def queue_state(request: web.Request) -> web.Response:
    server = server_of(request)
    snap = server.queue.snapshot()
    owner = request.query.get("client_id")
    if owner is not None:
        snap = {k: [j for j in v if j["client_id"] == owner] for k, v in snap.items()}
    return json_response(snap)


async def move(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("position",), here)
    if "position" not in body:
        raise bad_request(f"{here}: missing field 'position' (0 = next to run)", code="missing_field",
                          field="position")
    wanted = optional_int(body, "position", here, 0, 10**9)
    position = server.queue.move(request.match_info["job_id"], wanted)
    return json_response({"job": request.match_info["job_id"], "position": position})


async def cancel(request: web.Request) -> web.Response:
    server = server_of(request)
    job = _job_or_404(server, request)
    job = server.queue.cancel(job.id)
    return json_response({"job": job.summary(), "interrupting": job.status == "running"})


async def interrupt(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server, optional=True)
    check_keys(body, ("job",), here)
    job_id = body.get("job")
    if job_id is not None and not isinstance(job_id, str):
        raise bad_request(f"{here}: 'job' must be a job id string", code="invalid_field", field="job")
    return json_response({"interrupted": server.queue.interrupt(job_id)})


async def clear(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server, optional=True)
    check_keys(body, ("client_id",), here)
    owner = client_id(body.get("client_id"), here) if "client_id" in body else None
    return json_response({"cancelled": server.queue.clear(owner)})


async def history(request: web.Request) -> web.Response:
    server = server_of(request)
    limit = query_int(request, "limit", 50, 1, server.limits.max_history_page)
    offset = query_int(request, "offset", 0, 0, 10**9)
    owner = request.query.get("client_id")
    if owner is not None:
        owner = client_id(owner, where(request))
    jobs, total = server.store.history(limit, offset, owner)
    return json_response({"jobs": [j.summary() for j in jobs], "total": total, "limit": limit, "offset": offset})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/validate", validate)
    app.router.add_post("/api/jobs", submit)
    app.router.add_get("/api/jobs/{job_id}", get_job)
    app.router.add_post("/api/jobs/{job_id}/move", move)
    app.router.add_post("/api/jobs/{job_id}/cancel", cancel)
    app.router.add_get("/api/queue", queue_state)
    app.router.add_post("/api/queue/clear", clear)
    app.router.add_post("/api/interrupt", interrupt)
    app.router.add_get("/api/history", history)
