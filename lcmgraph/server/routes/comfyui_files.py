"""ComfyUI's uploads: POST /upload/image and /upload/mask (multipart form).

Fields: ``image`` (the file), ``overwrite``, ``subfolder``, ``type`` (only
``input``: uploads never land among job outputs), and for a mask
``original_ref`` (JSON ``{"filename", "subfolder", "type"}``): the mask's alpha
channel is put into a copy of that image, as ComfyUI's mask editor expects.
The answer is ComfyUI's ``{"name", "subfolder", "type"}``.

Unlike ComfyUI, every image is decoded under the server's pixel limits and
stored re-encoded as PNG (the name keeps its stem, with ``.png``), exactly as
POST /api/upload does; a ``subfolder`` or file name with ``..``, an absolute
path, a backslash or a hidden segment is refused (400), never cleaned up, so
nothing is ever written outside the input folder. Without ``overwrite`` an
existing name gets ComfyUI's `` (1)`` suffix, unless the same image is there
already (then that name is given back).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from ..bodies import body_deadline, server_of, user_of, where
from ..errors import ApiError, bad_request, not_found, too_large
from ..folders import SERVED_SUFFIXES, check_name
from ..images import PixelLimits, reencode_upload, with_mask_alpha
from .files import may_fetch, store_file

FIELDS = ("image", "overwrite", "subfolder", "type", "original_ref")
#: Longest value of a text field (subfolder, original_ref, ...), and most fields in one form.
MAX_FIELD = 4096
MAX_PARTS = 32
UPLOAD_TYPES = ("input",)
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no", "")
#: Choosing a free name and writing it happen together (two uploads of one name get two names).
_NAMING = threading.Lock()


@dataclass
class UploadForm:
    data: bytes
    filename: str
    overwrite: bool
    subfolder: str
    original_ref: str | None


async def _read_form(request: web.Request, limit: int) -> UploadForm:
    here = where(request)
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", f"{here} expects multipart/form-data with an 'image' file field")
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise too_large(f"{here}: the upload is {request.content_length} bytes; the limit is {limit} bytes", limit=limit)
    server = server_of(request)
    fields: dict[str, Any] = {}
    try:
        reader = await request.multipart()
        async with body_deadline(here, server.limits.body_timeout, server.limits.body_idle_timeout) as deadline:
            parts = 0
            while (part := await reader.next()) is not None:
                parts += 1
                if parts > MAX_PARTS:
                    raise bad_request(f"{here}: more than {MAX_PARTS} form fields", code="invalid_field")
                if not isinstance(part, BodyPartReader):  # a nested multipart: no field of ComfyUI's form
                    raise bad_request(f"{here}: nested multipart bodies are not read", code="malformed_multipart")
                name = part.name
                known = name in FIELDS  # others are read (bounded) and ignored, as ComfyUI ignores them
                if known and name in fields:
                    raise bad_request(f"{here}: the form field {name!r} is given twice", code="invalid_field",
                                      field=name)
                size = limit if name == "image" else MAX_FIELD
                buffer = bytearray()
                while chunk := await part.read_chunk(size + 1 - len(buffer)):
                    deadline.progress()
                    buffer += chunk
                    if len(buffer) > size:
                        if name == "image":
                            raise too_large(f"{here}: the image is larger than the limit of {limit} bytes",
                                            limit=limit)
                        raise bad_request(f"{here}: the form field {str(name)[:60]!r} is longer than {MAX_FIELD} "
                                          f"bytes", code="invalid_field", field=str(name)[:60])
                if known:
                    fields[name] = (bytes(buffer), part.filename) if name == "image" else buffer.decode("utf-8")
    except ApiError:
        raise
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise bad_request(f"{here}: malformed multipart body: {exc}", code="malformed_multipart") from None
    data, filename = fields.get("image", (b"", None))
    if not data:
        raise bad_request(f"{here}: missing or empty 'image' file field", code="missing_field", field="image")
    overwrite = fields.get("overwrite", "").strip().lower()
    if overwrite not in TRUE + FALSE:
        raise bad_request(f"{here}: 'overwrite' must be true or false", code="invalid_field", field="overwrite")
    kind = fields.get("type", "input") or "input"
    if kind not in UPLOAD_TYPES:
        raise bad_request(f"{here}: 'type' must be {' or '.join(UPLOAD_TYPES)} (uploads go to the input folder)",
                          code="invalid_field", field="type")
    return UploadForm(data, _file_name(here, filename), overwrite in TRUE,
                      _subfolder(here, fields.get("subfolder", "")), fields.get("original_ref"))


def _file_name(here: str, filename: str | None) -> str:
    """The stored name: the client's name with ``.png`` (the stored format); a
    name that is a path is refused, not cleaned up."""
    filename = unquote(filename or "")  # clients (aiohttp's FormData) percent-encode the name
    if not filename:
        raise bad_request(f"{here}: the 'image' field has no file name", code="invalid_name", field="image")
    if "/" in filename or "\\" in filename:
        raise bad_request(f"{here}: the file name {filename[:80]!r} is a path; give a bare name (its folder in "
                          f"'subfolder')", code="invalid_name", field="image")
    check_name(filename, "input")  # '..', hidden names, control characters
    stem = os.path.splitext(filename)[0].strip()
    if not stem or len(stem) > 200:
        raise bad_request(f"{here}: the file name {filename[:80]!r} must have a stem of 1-200 characters",
                          code="invalid_name", field="image")
    return f"{stem}.png"


def _subfolder(here: str, subfolder: str) -> str:
    subfolder = subfolder.strip()
    if not subfolder:
        return ""
    try:
        check_name(subfolder.rstrip("/"), "input")
    except ApiError as exc:
        raise bad_request(f"{here}: 'subfolder' {subfolder[:80]!r} is refused: {exc.message}",
                          code="invalid_name", field="subfolder") from None
    return subfolder.rstrip("/")


def _store_unique(root: Path, subfolder: str, filename: str, data: bytes, overwrite: bool,
                  not_mine: set[str]) -> tuple[str, bool]:
    """Write ``data`` as subfolder/filename inside ``root`` with ComfyUI's naming (``name (1).png``
    when taken); a taken name that holds these very bytes, and is not another user's
    upload (``not_mine``), is given back instead. (stored name, True if it was written)"""
    folder = root.joinpath(*PurePosixPath(subfolder).parts) if subfolder else root
    with _NAMING:
        root.mkdir(parents=True, exist_ok=True)
        _inside(root, folder, subfolder)  # before creating anything: a planted link is never followed
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, a name too long for the file system
            raise ApiError(409, "cannot_create", f"subfolder {subfolder[:80]!r} cannot be created in the input "
                                                 f"folder ({exc.strerror})") from None
        _inside(root, folder, subfolder)
        stem, suffix = filename[:-4], filename[-4:]
        candidate, counter = filename, 1
        while not overwrite and os.path.lexists(folder / candidate):
            if _join(subfolder, candidate) not in not_mine and _same_bytes(folder / candidate, data):
                return candidate, False
            candidate = f"{stem} ({counter}){suffix}"
            counter += 1
        return store_file(folder, candidate, data, overwrite=True), True


def _inside(root: Path, folder: Path, subfolder: str) -> None:
    real_root, real = root.resolve(), folder.resolve()  # the existing part of the path, links followed
    if real != real_root and real_root not in real.parents:
        raise ApiError(403, "outside_folder", f"subfolder {subfolder!r} resolves outside the input folder; refused")


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _join(subfolder: str, name: str) -> str:
    return f"{subfolder}/{name}" if subfolder else name


async def _save(request: web.Request, form: UploadForm, png: bytes) -> web.Response:
    server, user = server_of(request), user_of(request)
    root = server.folders.upload_root
    wanted = _join(form.subfolder, form.filename)
    owner = server.store.upload_owner(wanted)
    if not user.admin and form.overwrite and os.path.lexists(root / wanted) and owner != user.name:
        raise ApiError(409, "name_taken", f"{where(request)}: {wanted!r} was uploaded by another user; upload "
                                          f"without overwrite to get a new name")
    not_mine = set() if user.admin else server.store.uploads_of_others(user.name)
    stored, written = await asyncio.get_running_loop().run_in_executor(
        None, _store_unique, root, form.subfolder, form.filename, png, form.overwrite, not_mine)
    if written:
        server.store.record_upload(_join(form.subfolder, stored), user.name)
    return web.json_response({"name": stored, "subfolder": form.subfolder, "type": "input"})


def _pixels(request: web.Request) -> PixelLimits:
    limits = server_of(request).limits
    return PixelLimits(limits.max_image_pixels, limits.max_image_side)


async def upload_image(request: web.Request) -> web.Response:
    server = server_of(request)
    form = await _read_form(request, server.limits.max_upload_bytes)
    async with server.image_slots:
        image = await asyncio.get_running_loop().run_in_executor(
            None, reencode_upload, form.data, _pixels(request), f"upload {form.filename!r}")
    return await _save(request, form, image.png)


def _original(request: web.Request, ref_text: str | None) -> Path:
    """The image a mask belongs to: ``original_ref`` names a file this user may fetch."""
    here, server = where(request), server_of(request)
    try:
        ref = json.loads(ref_text) if ref_text is not None else None
    except (ValueError, RecursionError):
        ref = None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str) or not ref["filename"]:
        raise bad_request(f"{here}: 'original_ref' must be JSON {{\"filename\", \"subfolder\", \"type\"}} naming "
                          f"the image the mask belongs to", code="invalid_field", field="original_ref")
    folder = ref.get("type") or "output"
    subfolder = ref.get("subfolder") or ""
    filename = ref["filename"]
    if folder not in ("input", "output", "temp") or not isinstance(subfolder, str):
        raise bad_request(f"{here}: 'original_ref' type must be input, output or temp", code="invalid_field",
                          field="original_ref")
    if "/" in filename or "\\" in filename:
        raise bad_request(f"{here}: 'original_ref' filename {filename[:80]!r} is a path; give its folder in "
                          f"'subfolder'", code="invalid_name", field="original_ref")
    name = _join(subfolder.strip("/"), filename)
    path = server.folders.resolve(folder, name)  # 400/403/404: no way out of the folders
    if not may_fetch(server, request, folder, name, server.store.file_owner(folder, name)):
        raise not_found(f"{here}: no file {name[:100]!r} in the {folder} folder", code="no_such_file")
    return path


async def upload_mask(request: web.Request) -> web.Response:
    server = server_of(request)
    form = await _read_form(request, server.limits.max_upload_bytes)
    original = _original(request, form.original_ref)
    if original.suffix.lower() not in SERVED_SUFFIXES:  # resolve() checked it; kept explicit for the reader
        raise not_found(f"{where(request)}: the original is not an image", code="not_served")
    async with server.image_slots:
        image = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
            with_mask_alpha, original, form.data, _pixels(request), f"mask {form.filename!r}", require_alpha=False))
    return await _save(request, form, image.png)


def add_routes(app: web.Application) -> None:
    for base in ("", "/api"):
        app.router.add_post(f"{base}/upload/image", upload_image)
        app.router.add_post(f"{base}/upload/mask", upload_mask)
