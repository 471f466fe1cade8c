"""ComfyUI interop over HTTP: convert a ComfyUI workflow for the editor, export to ComfyUI's API format."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...comfy import ComfyExportError, ComfyImportError, import_notes, load_any, to_api
from ..bodies import (
    BODY_BYTES,
    check_keys,
    optional_bool,
    read_body,
    server_of,
    where,
    workflow_fields,
)
from ..checking import capped, checker_of, more_text
from ..errors import ApiError, bad_request, json_response

#: Longest conversion error message passed on (it may list every problem).
MAX_MESSAGE = 64 * 1024

if TYPE_CHECKING:
    from ..app import ServerApp


def convert(server: ServerApp, document: Any, here: str, allow_missing: bool = False) -> Any:
    """ComfyUI workflows (API or UI format, or its /prompt body) become lcmgraph ones; others pass."""
    try:
        return load_any(document, server.engine.registry, allow_missing=allow_missing)
    except ComfyImportError as exc:
        raise _refused(server, here, exc, "comfy_import") from None


async def convert_async(request: web.Request, document: Any, here: str, allow_missing: bool = False,
                        body_bytes: int | None = None) -> Any:
    """``convert`` on the loop for a small document, else on a checking thread."""
    size = request.get(BODY_BYTES) if body_bytes is None else body_bytes
    return await checker_of(request).call(here, document, size, convert, server_of(request), document, here,
                                          allow_missing)


async def comfy_import(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow", "allow_missing"), here)
    document, _ = workflow_fields(body, here)
    converted = await convert_async(request, document, here, bool(optional_bool(body, "allow_missing", here)))
    return json_response({"workflow": converted, "notes": import_notes(converted)})


async def comfy_export(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    body = await read_body(request, server)
    check_keys(body, ("workflow",), here)
    document, _ = workflow_fields(body, here)
    prompt = await checker_of(request).call(here, document, request.get(BODY_BYTES), _export, server, document, here)
    return json_response({"prompt": prompt})


def _export(server: ServerApp, document: Any, here: str) -> Any:
    try:
        return to_api(document, server.engine.registry)
    except ComfyExportError as exc:
        raise _refused(server, here, exc, "comfy_export") from None


def _refused(server: ServerApp, here: str, exc: Exception, code: str) -> ApiError:
    """A 400 listing the conversion's problems (the first ``max_problems``, the rest counted)."""
    problems = list(getattr(exc, "problems", None) or [])
    shown, count = capped(problems, server.limits.max_problems)
    message = str(exc)
    if count > len(shown):  # the message lists every problem, one a line: keep the listed ones
        lines = message.splitlines()
        hint = getattr(exc, "hint", "")
        message = "\n".join([*lines[:1 + len(shown)], f"  ({more_text(count, len(shown))})",
                             *([hint] if hint else [])])
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + f"... ({len(message) - MAX_MESSAGE:,} more characters)"
    return bad_request(f"{here}: {message}", code=code, problems=shown, problem_count=count)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/comfy/import", comfy_import)
    app.router.add_post("/api/comfy/export", comfy_export)
