"""ComfyUI interop over HTTP: convert a ComfyUI workflow for the editor, export to ComfyUI's API format."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...comfy import ComfyExportError, ComfyImportError, import_notes, load_any, to_api
from ..bodies import check_keys, optional_bool, read_body, server_of, where, workflow_fields
from ..errors import bad_request, json_response

if TYPE_CHECKING:
    from ..app import ServerApp


def convert(server: ServerApp, document: Any, here: str, allow_missing: bool = False) -> Any:
    """ComfyUI workflows (API or UI format, or its /prompt body) become lcmgraph ones; others pass."""
    try:
        return load_any(document, server.engine.registry, allow_missing=allow_missing)
    except ComfyImportError as exc:
        raise bad_request(f"{here}: {exc}", code="comfy_import", problems=exc.problems) from None


async def comfy_import(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow", "allow_missing"), here)
    document, _ = workflow_fields(body, here)
    converted = convert(server, document, here, bool(optional_bool(body, "allow_missing", here)))
    return json_response({"workflow": converted, "notes": import_notes(converted)})


async def comfy_export(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow",), here)
    document, _ = workflow_fields(body, here)
    try:
        prompt = to_api(document, server.engine.registry)
    except ComfyExportError as exc:
        raise bad_request(f"{here}: {exc}", code="comfy_export", problems=exc.problems) from None
    return json_response({"prompt": prompt})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/comfy/import", comfy_import)
    app.router.add_post("/api/comfy/export", comfy_export)
