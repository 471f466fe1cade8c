"""ComfyUI's official frontend on `lcmgraph serve --frontend comfy`.

The frontend's static files come from PyPI's ``comfyui-frontend-package``
(its ``static/`` folder, where ComfyUI's app/frontend_management.py finds it)
and are served at / instead of lcmgraph's editor (routes/static.py serves
whatever folder ``web_dir`` names). Besides ComfyUI's API (routes/comfyui.py,
comfy_object_info.py), the frontend reads a few routes at start-up and while
it runs; this module answers them in ComfyUI's shapes: the job list its
queue and history panels read (GET /api/jobs), and empty but valid answers
where lcmgraph has nothing of the kind (extensions, translations, node
templates, subgraph blueprints, node replacements). Settings and user files
are in comfy_userdata.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ..bodies import owner_filter, server_of, user_of, where
from ..comfy_api import comfy_outputs
from ..errors import bad_request, json_response, not_found
from ..jobs import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, Job
from . import comfy_userdata

PACKAGE = "comfyui_frontend_package"
INSTALL_HINT = "pip install 'lcmgraph[comfy-frontend]' (PyPI's comfyui-frontend-package)"
#: lcmgraph's job states -> the Jobs API's.
JOB_STATUS = {QUEUED: "pending", RUNNING: "in_progress", DONE: "completed", FAILED: "failed",
              INTERRUPTED: "cancelled", CANCELLED: "cancelled"}
COMFY_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
MAX_JOBS_PAGE = 500


class FrontendMissing(RuntimeError):
    """``--frontend comfy`` without the package installed."""


def frontend_root() -> Path:
    """The installed frontend's static folder (its index.html and assets)."""
    import importlib.resources

    try:
        root = Path(str(importlib.resources.files(PACKAGE) / "static"))
    except ModuleNotFoundError:
        raise FrontendMissing(f"--frontend comfy needs ComfyUI's frontend: {INSTALL_HINT}") from None
    if not (root / "index.html").is_file():
        raise FrontendMissing(f"{PACKAGE} has no static/index.html at {root}; reinstall it: {INSTALL_HINT}")
    return root


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def job_entry(job: Job, priority: int) -> dict:
    """One job in the shape of ComfyUI's GET /api/jobs."""
    outputs = comfy_outputs(job.outputs)
    files = [(node, kind, item) for node, kinds in outputs.items() for kind, items in kinds.items()
             for item in items]
    preview = None
    if files:
        node, kind, item = files[0]
        preview = {**item, "nodeId": node, "mediaType": kind}
    error = None
    if job.status == FAILED and job.error:
        error = {"prompt_id": job.id, "node_id": str(job.error.get("node") or ""),
                 "node_type": str(job.error.get("node_type") or ""), "executed": [],
                 "exception_message": str(job.error.get("message", "")),
                 "exception_type": str(job.error.get("exception") or job.error.get("code") or "Exception"),
                 "traceback": []}
    return {"id": job.id, "status": JOB_STATUS.get(job.status, "failed"), "create_time": _ms(job.created),
            "execution_start_time": _ms(job.started), "execution_end_time": _ms(job.finished),
            "preview_output": preview, "outputs_count": len(files), "previewable_outputs_count": len(files),
            "execution_error": error, "workflow_id": None, "priority": priority}


async def list_jobs(request: web.Request) -> web.Response:
    """?status=pending,in_progress,completed,failed,cancelled&limit=&offset=: the queue first
    (running, then waiting), then finished jobs newest first; only the user's own."""
    server = server_of(request)
    wanted = [s for s in request.query.get("status", ",".join(COMFY_STATUSES)).split(",") if s]
    unknown = [s for s in wanted if s not in COMFY_STATUSES]
    try:
        limit = min(MAX_JOBS_PAGE, max(1, int(request.query.get("limit", 100))))
        offset = max(0, int(request.query.get("offset", 0)))
    except ValueError:
        raise bad_request(f"{where(request)}: limit and offset must be whole numbers",
                          code="invalid_parameter") from None
    if unknown:
        raise bad_request(f"{where(request)}: unknown status {unknown[0][:40]!r} (one of "
                          f"{', '.join(COMFY_STATUSES)})", code="invalid_parameter")
    owner = owner_filter(user_of(request))
    active: list[Job] = []
    if "in_progress" in wanted:
        active += [j for j in server.store.running() if owner is None or j.owner == owner]
    if "pending" in wanted:
        active += server.store.queued(owner=owner)
    finished: list[Job] = []
    finished_total = 0
    if {"completed", "failed", "cancelled"} & set(wanted):
        page, finished_total = server.store.history(limit + offset, 0, None, owner=owner)
        finished = [j for j in page if JOB_STATUS.get(j.status) in wanted]
        if len(finished) < len(page):  # some finished states were not asked for: count what is shown
            finished_total = len(finished)
    every = active + finished
    total = len(active) + finished_total
    shown = every[offset:offset + limit]
    jobs = [job_entry(job, total - offset - i) for i, job in enumerate(shown)]
    return json_response({"jobs": jobs, "pagination": {"offset": offset, "limit": limit, "total": total,
                                                       "has_more": offset + len(shown) < total}})


async def empty_list(request: web.Request) -> web.Response:
    return json_response([])


async def empty_object(request: web.Request) -> web.Response:
    return json_response({})


async def model_folders(request: web.Request) -> web.Response:
    """The model library's folders ({"name", "folders"}; folder names, not host paths)."""
    files = server_of(request).engine.files
    return json_response([{"name": f, "folders": [f]} for f in files.folders() if f != "input"])


async def model_files(request: web.Request) -> web.Response:
    files = server_of(request).engine.files
    folder = request.match_info["folder"]
    if folder not in files.folders() or folder == "input":
        raise not_found(f"{where(request)}: no model folder {folder[:100]!r}", code="unknown_folder")
    names = await asyncio.get_running_loop().run_in_executor(None, files.list, folder)
    return json_response([{"name": name, "pathIndex": 0} for name in names])


async def folder_paths(request: web.Request) -> web.Response:
    """ComfyUI's /internal/folder_paths (the missing-model check reads it): folder names, not host paths."""
    files = server_of(request).engine.files
    return json_response({f: [f] for f in files.folders()})


async def no_templates(request: web.Request) -> web.Response:
    """ComfyUI serves its template gallery (comfyui-workflow-templates) here: lcmgraph has none."""
    return json_response({} if request.match_info["name"].startswith("index_logo") else [])


async def user_css(request: web.Request) -> web.Response:
    """index.html links /user.css (ComfyUI's web root has none either): an empty sheet, not a 404."""
    return web.Response(text="", content_type="text/css", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    comfy_userdata.add_routes(app)
    router = app.router
    router.add_get("/user.css", user_css)
    router.add_get("/api/jobs", list_jobs)  # lcmgraph's own API has POST /api/jobs and /api/jobs/{id} only
    router.add_get("/api/extensions", empty_list)  # no JavaScript extensions: lcmgraph's packs have none
    router.add_get("/api/i18n", empty_object)  # node packs' translations
    router.add_get("/api/workflow_templates", empty_object)  # node packs' example workflows, by pack
    router.add_get("/api/global_subgraphs", empty_object)  # subgraph blueprints
    router.add_get("/api/node_replacements", empty_object)
    router.add_get("/internal/folder_paths", folder_paths)
    router.add_get("/api/experiment/models", model_folders)
    router.add_get("/api/experiment/models/{folder}", model_files)
    router.add_get(r"/templates/{name:index[A-Za-z_.]*\.json}", no_templates)
