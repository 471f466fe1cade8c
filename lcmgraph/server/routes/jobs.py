"""Jobs: validate, submit, inspect, reorder, cancel, interrupt; the queue and history."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...prepare import Prepared
from ..bodies import (
    BODY_BYTES,
    check_keys,
    client_id,
    may_see,
    optional_bool,
    optional_int,
    optional_str,
    owner_filter,
    read_body,
    server_of,
    user_of,
    where,
    workflow_fields,
)
from ..checking import capped, checker_of, more_text
from ..errors import ApiError, bad_request, dumps, json_response, not_found
from ..jobs import Job
from ..queue import QueueFull
from . import comfy

log = logging.getLogger("lcmgraph.server")

SUBMIT_FIELDS = ("workflow", "client_id", "outputs", "front", "title")

if TYPE_CHECKING:
    from ..app import ServerApp


def _convert_and_check(server: ServerApp, document: Any, outputs: list[str] | None,
                       here: str) -> tuple[Any, Prepared | None, list[dict], int]:
    """Convert (a ComfyUI document) and validate, on the loop or a checking thread:
    the document, the prepared run, the first ``max_problems`` problems as JSON
    and how many there are (a long problem list is dropped where it was made)."""
    document = comfy.convert(server, document, here)
    try:
        prepared, problems = server.engine.check(document, outputs)
    except Exception as exc:  # noqa: BLE001 - a validator bug must not become a 5xx for the client
        log.exception("validation raised for %s", here)
        return document, None, [{"node": None, "input": None, "code": "unvalidatable",
                                 "message": f"the workflow could not be validated: {type(exc).__name__}: {exc}"}], 1
    shown, count = capped(problems, server.limits.max_problems)
    return document, prepared, shown, count


async def _check(request: web.Request, document: Any, outputs: list[str] | None,
                 here: str) -> tuple[Any, Prepared | None, list[dict], int]:
    """Parse and validate once: the (converted) document, the prepared run the worker
    will use, or the problems (the first ``max_problems``) and how many there are."""
    return await checker_of(request).call(here, document, request.get(BODY_BYTES), _convert_and_check,
                                          server_of(request), document, outputs, here)


def _invalid(here: str, problems: list[dict], count: int) -> ApiError:
    first = problems[0]
    where_ = " ".join(f"{k} {first[k]!r}" for k in ("node", "input") if first.get(k))
    summary = f"{where_}: {first['message']}" if where_ else first["message"]
    more = f" ({more_text(count, 1)})" if count > 1 else ""
    listed = "" if count <= len(problems) else f"; the first {len(problems)} are listed"
    return bad_request(f"{here}: the workflow has {count:,} problem{'s' if count != 1 else ''}: "
                       f"{summary}{more}{listed}", code="invalid_workflow", problems=problems,
                       problem_count=count)


async def validate(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow", "outputs"), here)
    document, outputs = workflow_fields(body, here)
    _, _, problems, count = await _check(request, document, outputs, here)
    return json_response({"ok": not problems, "problems": problems, "problem_count": count})


async def submit(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    user = user_of(request)
    queue = server.queue
    if queue.queued_count >= queue.max_queue:  # cheap refusal before reading anything
        raise QueueFull(queue.max_queue)
    body = await read_body(request, server)
    check_keys(body, SUBMIT_FIELDS, here)
    document, outputs = workflow_fields(body, here)
    owner = client_id(body.get("client_id"), here)
    front = optional_bool(body, "front", here)
    title = optional_str(body, "title", here, 200)
    document, prepared, problems, count = await _check(request, document, outputs, here)
    if problems:
        raise _invalid(here, problems, count)
    if title is None:
        meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
        title = meta.get("title")[:200] if isinstance(meta.get("title"), str) else ""
    job, position = queue.submit(dumps(document), owner, outputs, title, front, prepared=prepared,
                                 owner=user.name, admin=user.admin)
    return json_response({"job": job.summary(position=position), "position": position}, status=201,
                         headers={"Location": f"/api/jobs/{job.id}"})


def _job_or_404(server: ServerApp, request: web.Request) -> Job:
    """The job named in the path, if this user may see it (others' jobs are not found)."""
    job_id = request.match_info["job_id"]
    job = server.store.get(job_id)
    if job is None or not may_see(user_of(request), job):
        raise not_found(f"{where(request)}: no job {job_id[:64]!r}", code="no_such_job")
    return job


async def get_job(request: web.Request) -> web.Response:
    server = server_of(request)
    job = _job_or_404(server, request)
    out = job.summary(position=server.queue.position(job.id) if job.status == "queued" else None)
    if request.query.get("workflow") in ("1", "true"):
        text = server.store.workflow(job.id)
        try:
            out["workflow"] = json.loads(text) if text is not None else None
        except ValueError:
            out["workflow"] = None
            out["workflow_error"] = "the stored workflow document is damaged (not valid JSON)"
    return json_response({"job": out})


async def queue_state(request: web.Request) -> web.Response:
    server = server_of(request)
    snap = server.queue.snapshot(owner_filter(user_of(request)))
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
    position = server.queue.move(request.match_info["job_id"], wanted, owner=owner_filter(user_of(request)))
    return json_response({"job": request.match_info["job_id"], "position": position})


async def cancel(request: web.Request) -> web.Response:
    server = server_of(request)
    job = _job_or_404(server, request)
    job = server.queue.cancel(job.id, owner=owner_filter(user_of(request)))
    return json_response({"job": job.summary(), "interrupting": job.status == "running"})


async def interrupt(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server, optional=True)
    check_keys(body, ("job",), here)
    job_id = body.get("job")
    if job_id is not None and not isinstance(job_id, str):
        raise bad_request(f"{here}: 'job' must be a job id string", code="invalid_field", field="job")
    return json_response({"interrupted": server.queue.interrupt(job_id, owner=owner_filter(user_of(request)))})


async def clear(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server, optional=True)
    check_keys(body, ("client_id",), here)
    label = client_id(body.get("client_id"), here) if "client_id" in body else None
    return json_response({"cancelled": server.queue.clear(label, owner=owner_filter(user_of(request)))})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/validate", validate)
    app.router.add_post("/api/jobs", submit)
    app.router.add_get("/api/jobs/{job_id}", get_job)
    app.router.add_post("/api/jobs/{job_id}/move", move)
    app.router.add_post("/api/jobs/{job_id}/cancel", cancel)
    app.router.add_get("/api/queue", queue_state)
    app.router.add_post("/api/queue/clear", clear)
    app.router.add_post("/api/interrupt", interrupt)
