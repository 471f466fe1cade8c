"""Files: fetch output/input/temp images (full size or thumbnail); upload input images."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web

from ..bodies import body_deadline, query_int, server_of, user_of, where
from ..errors import ApiError, bad_request, json_response, too_large
from ..folders import SERVED_SUFFIXES, file_url
from ..images import PixelLimits, reencode_upload, thumbnail_jpeg, with_mask_alpha

UPLOAD_FIELDS = ("image", "overwrite", "mask_of")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]+")
CACHE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

if TYPE_CHECKING:
    from ..app import ServerApp


def _pixels(server: ServerApp) -> PixelLimits:
    return PixelLimits(server.limits.max_image_pixels, server.limits.max_image_side)


async def get_file(request: web.Request) -> web.StreamResponse:
    return await serve_file(request, request.match_info["folder"], request.match_info["name"])


async def serve_file(request: web.Request, folder: str, name: str) -> web.StreamResponse:
    """A served folder's file (``?thumbnail=`` a JPEG thumbnail), if this user may fetch it."""
    server = server_of(request)
    path = server.folders.resolve(folder, name)
    headers = dict(CACHE_HEADERS)
    owner = server.store.file_owner(folder, name)  # the output index: which job wrote this file
    if not may_fetch(server, request, folder, name, owner):
        raise ApiError(404, "no_such_file", f"{where(request)}: no file {name[:100]!r} in the {folder} folder")
    if owner:
        headers["X-Lcmgraph-Job"] = owner
    if "thumbnail" not in request.query:
        return web.FileResponse(path, headers={**headers, "Content-Type": SERVED_SUFFIXES[path.suffix.lower()]})
    side = query_int(request, "thumbnail", server.limits.thumbnail_side, 16, server.limits.max_thumbnail_side)
    async with server.image_slots:
        data = await asyncio.get_running_loop().run_in_executor(
            None, thumbnail_jpeg, path, side, _pixels(server), f"{folder}/{name}")
    return web.Response(body=data, content_type="image/jpeg", headers=headers)


def may_fetch(server: ServerApp, request: web.Request, folder: str, name: str, job_id: str | None) -> bool:
    """An admin fetches any file; a user, the files of its own jobs and its own
    uploads (and input files nobody uploaded: the server's own)."""
    user = user_of(request)
    if user.admin:
        return True
    if folder == "input":
        uploader = server.store.upload_owner(name)
        return uploader is None or uploader == user.name
    return job_id is not None and server.store.job_owner(job_id) == user.name


def upload_name(filename: str | None) -> str:
    """A safe .png name from what the client called its file."""
    base = unquote(filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = _UNSAFE.sub("_", os.path.splitext(base)[0]).strip(" ._")[:100]
    return f"{stem or 'upload'}.png"


def store_file(root: Path, name: str, data: bytes, overwrite: bool) -> str:
    """Write atomically inside root; never follows a symlink planted at the name."""
    root.mkdir(parents=True, exist_ok=True)
    stem, suffix = name[:-4], name[-4:]
    candidate, counter = name, 1
    while not overwrite and os.path.lexists(root / candidate):
        candidate = f"{stem}_{counter}{suffix}"
        counter += 1
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, root / candidate)  # replaces a symlink itself, never its target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return candidate


async def _read_parts(reader, here: str, limit: int, deadline: body_deadline) -> tuple[bytes | None, str | None, bool,
                                                                                     str | None]:
    """The upload form's fields: the image's bytes and file name, 'overwrite', and 'mask_of'."""
    data, filename, overwrite, mask_of = None, None, False, None
    while (part := await reader.next()) is not None:
        field = getattr(part, "name", None)
        if field not in UPLOAD_FIELDS:
            raise bad_request(f"{here}: unknown form field {str(field)[:60]!r}; known: "
                              f"{', '.join(UPLOAD_FIELDS)}", code="unknown_field", field=str(field)[:60])
        chunk = await part.read_chunk(limit + 1 if field == "image" else 4096)
        if field == "image":
            if data is not None:
                raise bad_request(f"{here}: send one 'image' per upload", code="invalid_field", field="image")
            buffer = bytearray(chunk)
            while chunk and len(buffer) <= limit:
                deadline.progress()
                chunk = await part.read_chunk(limit + 1 - len(buffer))
                buffer += chunk
            if len(buffer) > limit:
                raise too_large(f"{here}: the image is larger than the limit of {limit} bytes", limit=limit)
            data, filename = bytes(buffer), part.filename
        elif field == "mask_of":
            if len(chunk) > 4096:
                raise bad_request(f"{here}: 'mask_of' is longer than 4096 bytes", code="invalid_field",
                                  field="mask_of")
            mask_of = chunk.decode("utf-8").strip()
        else:
            value = chunk.strip().lower()
            if value not in (b"1", b"true", b"yes", b"0", b"false", b"no"):
                raise bad_request(f"{here}: 'overwrite' must be true or false", code="invalid_field",
                                  field="overwrite")
            overwrite = value in (b"1", b"true", b"yes")
    return data, filename, overwrite, mask_of


async def upload(request: web.Request) -> web.Response:
    server, here = server_of(request), where(request)
    limit = server.limits.max_upload_bytes
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       f"{here} expects multipart/form-data with an 'image' file field")
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise too_large(f"{here}: the upload is {request.content_length} bytes; the limit is {limit} bytes", limit=limit)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise bad_request(f"{here}: malformed multipart body: {exc}", code="malformed_multipart") from None
    try:
        async with body_deadline(here, server.limits.body_timeout, server.limits.body_idle_timeout) as deadline:
            data, filename, overwrite, mask_of = await _read_parts(reader, here, limit, deadline)
    except ApiError:
        raise
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise bad_request(f"{here}: malformed multipart body: {exc}", code="malformed_multipart") from None
    if not data:
        raise bad_request(f"{here}: missing or empty 'image' file field", code="missing_field", field="image")
    name = upload_name(filename)
    loop = asyncio.get_running_loop()
    user = user_of(request)
    if mask_of is not None:  # the mask painter: this image's alpha becomes mask_of's alpha
        original = server.folders.resolve("input", mask_of)
        if not may_fetch(server, request, "input", mask_of, None):
            raise ApiError(404, "no_such_file", f"{here}: no file {mask_of[:100]!r} in the input folder")
        async with server.image_slots:
            image = await loop.run_in_executor(None, functools.partial(
                with_mask_alpha, original, data, _pixels(server), f"mask {name!r}", require_alpha=True))
    else:
        async with server.image_slots:
            image = await loop.run_in_executor(None, reencode_upload, data, _pixels(server), f"upload {name!r}")
    root = server.folders.upload_root
    if not user.admin and overwrite and os.path.lexists(root / name) and server.store.upload_owner(name) != user.name:
        raise ApiError(409, "name_taken", f"{here}: {name!r} was uploaded by another user; upload without "
                       f"overwrite to get a new name")
    stored = await loop.run_in_executor(None, store_file, root, name, image.png, overwrite)
    server.store.record_upload(stored, user.name)
    return json_response({"name": stored, "folder": "input", "width": image.width, "height": image.height,
                          "source_format": image.source_format, "url": file_url("input", stored)},
                         status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/files/{folder}/{name:.+}", get_file)
    app.router.add_post("/api/upload", upload)
