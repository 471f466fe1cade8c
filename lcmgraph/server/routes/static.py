"""The editor's static files at /, from web/dist or web/; a placeholder page
while there is no editor. /api/* never falls through to here."""

from __future__ import annotations

import mimetypes

from aiohttp import web

from ..bodies import server_of
from ..errors import ApiError, not_found
from ..folders import check_name

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lcmgraph</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>lcmgraph server</h1>
<p>The API is running. The browser editor is not installed here
(no <code>web/dist</code> or <code>web/index.html</code>).</p>
<p>API reference: <code>docs/api.md</code>. Try <a href="/api">/api</a> and
<a href="/api/nodes">/api/nodes</a>.</p>
</body></html>
"""
STATIC_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


async def index(request: web.Request) -> web.StreamResponse:
    root = server_of(request).web_dir
    if root is None:
        return web.Response(text=PLACEHOLDER, content_type="text/html", headers=STATIC_HEADERS)
    return web.FileResponse(root / "index.html", headers=STATIC_HEADERS)


async def asset(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if path == "api" or path.startswith("api/"):
        raise not_found(f"no such endpoint: {request.method} {request.path[:200]}", code="no_such_endpoint")
    root = server_of(request).web_dir
    if root is None:
        raise not_found(f"no file {path[:100]!r}: the editor is not installed", code="no_such_file")
    check_name(path, "web")
    real_root = root.resolve()
    try:
        real = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise not_found(f"no file {path[:100]!r} in the editor's files", code="no_such_file") from None
    if real_root not in real.parents:
        raise ApiError(403, "outside_folder", f"{path[:100]!r} resolves outside the editor's folder; refused")
    if not real.is_file():
        raise not_found(f"no file {path[:100]!r} in the editor's files", code="no_such_file")
    content_type = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
    return web.FileResponse(real, headers={**STATIC_HEADERS, "Content-Type": content_type})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/{path:.+}", asset)
