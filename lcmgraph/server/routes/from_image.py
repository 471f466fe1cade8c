"""The workflow an image carries: the editor sends a dropped PNG here and the
server reads it with the engine's own readers (lcmgraph's PNG text chunk, or
ComfyUI's pair, converted through lcmgraph.comfy). One PNG reader, in Python."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...comfy import detect, import_notes
from ...comfy.png import NoEmbeddedWorkflow, document_from_text
from ...workflow import WorkflowFileError
from ..bodies import read_limited, server_of, too_deep, where
from ..errors import ApiError, bad_request, json_response
from ..images import PixelLimits, open_checked
from .comfy import convert_async

if TYPE_CHECKING:
    from ..app import ServerApp

#: Content types the raw image body may be sent with.
BODY_TYPES = ("image/", "application/octet-stream")
MAX_NAME = 100
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _query_bool(request: web.Request, key: str) -> bool:
    raw = request.query.get(key, "false").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise bad_request(f"{where(request)}: query parameter {key!r} must be true or false, got {raw[:40]!r}",
                          code="invalid_parameter", field=key)
    return raw in _TRUE


async def _image_body(request: web.Request, limit: int, here: str, timeout: float | None = None,
                      idle: float | None = None) -> bytes:
    if not request.content_type.startswith(BODY_TYPES):
        raise ApiError(415, "unsupported_media_type",
                       f"{here} expects the image file itself as the body, with Content-Type image/png "
                       f"(or another image/* type, or application/octet-stream); got "
                       f"{request.content_type or 'none'!r}")
    body = await read_limited(request, limit, here, "the image", timeout, idle)
    if not body:
        raise bad_request(f"{here}: the body is empty; send the image file", code="not_an_image")
    return body


def read_embedded(data: bytes, limits: PixelLimits, what: str) -> Any:
    """The workflow document in an image's text chunks. Opened as uploads are
    (only the upload formats; the header's size checked against the pixel
    limits before anything is decoded), then decoded: text chunks after the
    image data are only read on load."""
    image = open_checked(data, limits, what)
    try:
        if image.format != "PNG":
            raise NoEmbeddedWorkflow(f"{what}: a {image.format} image carries no workflow; lcmgraph and "
                                     "ComfyUI embed theirs in PNGs")
        try:
            image.load()
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data, in any decoder
            raise bad_request(f"{what} is damaged and could not be decoded: {exc}", code="not_an_image") from None
        chunks = {k: v for k, v in (getattr(image, "text", None) or {}).items() if isinstance(v, str)}
    finally:
        image.close()
    return document_from_text(chunks, what)


async def workflow_from_image(request: web.Request) -> web.Response:
    server: ServerApp = server_of(request)
    here, limits = where(request), server.limits
    allow_missing = _query_bool(request, "allow_missing")
    name = request.query.get("name", "")[:MAX_NAME]
    what = f"image {name!r}" if name else "the image"
    data = await _image_body(request, limits.max_upload_bytes, here, limits.body_timeout, limits.body_idle_timeout)
    pixels = PixelLimits(limits.max_image_pixels, limits.max_image_side)
    try:
        async with server.image_slots:
            document = await asyncio.get_running_loop().run_in_executor(None, read_embedded, data, pixels, what)
    except NoEmbeddedWorkflow as exc:
        raise bad_request(f"{here}: {exc}", code="no_workflow") from None
    except WorkflowFileError as exc:
        raise bad_request(f"{here}: {exc}", code="malformed_workflow") from None
    except RecursionError:
        raise bad_request(f"{here}: {what}: the embedded workflow is nested too deeply", code="too_deep") from None
    path = too_deep(document, limits.max_json_depth)
    if path is not None:
        raise bad_request(f"{here}: {what}: the embedded workflow is nested deeper than {limits.max_json_depth} "
                          f"levels at {path}", code="too_deep", limit=limits.max_json_depth)
    kind = detect(document)
    if kind is None:
        raise bad_request(f"{here}: {what}: the embedded text is not a workflow in lcmgraph's or ComfyUI's "
                          "format", code="not_a_workflow")
    converted = await convert_async(request, document, f"{here}: {what}", allow_missing, body_bytes=0)
    return json_response({"workflow": converted, "from": kind, "notes": import_notes(converted)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/workflow/from-image", workflow_from_image)
