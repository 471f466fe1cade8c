"""The history: list finished jobs; delete them with their output files."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..bodies import (
    check_keys,
    client_id,
    optional_bool,
    owner_filter,
    query_int,
    read_body,
    server_of,
    user_of,
    where,
)
from ..errors import bad_request, conflict, json_response, not_found
from ..jobs import FINISHED
from ..outputs import remove_job_files

if TYPE_CHECKING:
    from ..app import ServerApp

#: Most ids one bulk delete may name.
MAX_DELETE_IDS = 1000


async def history(request: web.Request) -> web.Response:
    server = server_of(request)
    limit = query_int(request, "limit", 50, 1, server.limits.max_history_page)
    offset = query_int(request, "offset", 0, 0, 10**9)
    label = request.query.get("client_id")
    if label is not None:
        label = client_id(label, where(request))
    jobs, total = server.store.history(limit, offset, label, owner=owner_filter(user_of(request)))
    return json_response({"jobs": [j.summary() for j in jobs], "total": total, "limit": limit, "offset": offset})


async def delete_one(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    job_id = request.match_info["job_id"]
    owner = owner_filter(user_of(request))
    job = server.store.get(job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise not_found(f"{here}: no job {job_id[:64]!r}", code="no_such_job")
    if job.status not in FINISHED:
        raise _not_finished(here, [job_id], job.status)
    return json_response(await _delete(server, [job_id]))


async def delete_many(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("ids", "all"), here)
    owner = owner_filter(user_of(request))
    everything = optional_bool(body, "all", here)
    ids = body.get("ids")
    if everything == (ids is not None):
        raise bad_request(f"{here}: give either 'ids' (a list of job ids) or \"all\": true", code="missing_field",
                          field="ids")
    if everything:
        return json_response(await _delete(server, server.store.finished_ids(owner)))
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_DELETE_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)):
        raise bad_request(f"{here}: 'ids' must be a list of 1 to {MAX_DELETE_IDS} job ids", code="invalid_field",
                          field="ids")
    ids = list(dict.fromkeys(ids))
    jobs = {job_id: server.store.get(job_id) for job_id in ids}
    missing = [i for i, j in jobs.items() if j is None or (owner is not None and j.owner != owner)]
    if missing:
        raise not_found(f"{here}: no job {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                              else ""),
                        code="no_such_job", ids=missing[:100])
    busy = [i for i, j in jobs.items() if j is not None and j.status not in FINISHED]
    if busy:
        raise _not_finished(here, busy, jobs[busy[0]].status)
    return json_response(await _delete(server, ids))


def _not_finished(here: str, ids: list[str], status: str) -> Exception:
    more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
    return conflict(f"{here}: job {ids[0]!r} is {status}{more}; only finished jobs can be deleted from the "
                    f"history (cancel or interrupt it first, then delete it)", code="job_not_finished",
                    job_status=status, ids=ids[:100])


async def _delete(server: ServerApp, ids: list[str]) -> dict[str, Any]:
    """Remove the jobs' records, index entries and files; nothing is deleted twice."""
    files = server.store.delete(ids)
    server.queue.forget(len(ids))
    removed = await asyncio.get_running_loop().run_in_executor(
        None, remove_job_files, server.folders, server.output_root, ids, files)
    return {"deleted": ids, "files_removed": removed}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/history", history)
    app.router.add_delete("/api/history/{job_id}", delete_one)
    app.router.add_post("/api/history/delete", delete_many)
