"""What ComfyUI's frontend keeps on the server (``--frontend comfy``): its
settings, and the files of ``/userdata`` (saved workflows, templates, user.css),
in the shapes of ComfyUI's app/user_manager.py and app/app_settings.py.

Each lcmgraph user (the token's; "default" without tokens) has its own folder,
DATA_DIR/comfy-user/NAME; every path a request names must stay inside it:
'..', absolute paths, backslashes, hidden and empty segments are refused, and
the resolved path (symlinks followed) must lie inside the folder. Files are
served as downloads (never rendered inline, except user.css as CSS), so a
stored page cannot run script in the frontend's origin.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from ..bodies import server_of, user_of, where
from ..errors import ApiError, bad_request, conflict, json_response, not_found, too_large
from ..folders import check_name

SETTINGS_FILE = "comfy.settings.json"
#: A new user's settings: lcmgraph ships no workflow templates, so the frontend's first start
#: opens its default graph rather than an empty template browser; and it asks comfy.org for no
#: ComfyUI release notes (lcmgraph is not ComfyUI: they would not apply).
DEFAULT_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Notification.ShowVersionUpdates": False}
USER_CSS = "user.css"
#: One stored file or settings object at most (workflows are JSON of a few hundred kB).
MAX_FILE_BYTES = 16 * 1024 * 1024
_SAFE_USER = re.compile(r"[^A-Za-z0-9_-]+")


def user_root(request: web.Request) -> Path:
    server = server_of(request)
    name = _SAFE_USER.sub("-", user_of(request).name or "default").strip("-") or "default"
    root = Path(server.config.data_dir) / "comfy-user" / name
    root.mkdir(parents=True, exist_ok=True)
    return root


def user_path(request: web.Request, name: str) -> Path:
    """``name`` (URL-decoded once more, as ComfyUI does) inside the user's folder, or a 4xx."""
    name = unquote(name) if "%" in name else name
    check_name(name, "user data")
    root = user_root(request).resolve()
    path = root.joinpath(*name.split("/"))
    real = path.resolve()
    if real != root and root not in real.parents:
        raise ApiError(403, "outside_folder", f"{where(request)}: {name[:100]!r} resolves outside the user "
                                              f"data folder; refused")
    return real


def _file_info(path: Path, root: Path) -> dict:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size,
            "modified": int(stat.st_mtime * 1000), "created": int(stat.st_ctime * 1000)}


def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in parts)


async def list_userdata(request: web.Request) -> web.Response:
    """?dir=&recurse=&full_info=&split=: the files under ``dir`` (ComfyUI's GET /userdata)."""
    directory = request.query.get("dir", "")
    if not directory:
        raise bad_request(f"{where(request)}: give the folder in 'dir'", code="invalid_parameter")
    base = user_path(request, directory.strip("/"))
    if not base.exists():
        return json_response([])  # ComfyUI answers 404; the frontend reads that as empty, and so is this
    if not base.is_dir():
        raise bad_request(f"{where(request)}: {directory[:100]!r} is not a folder", code="not_a_folder")
    recurse = request.query.get("recurse", "").lower() == "true"
    full = request.query.get("full_info", "").lower() == "true"
    split = request.query.get("split", "").lower() == "true"
    files = sorted(p for p in (base.rglob("*") if recurse else base.glob("*")) if _visible(p, base))
    if full:
        return json_response([_file_info(p, base) for p in files])
    names = [p.relative_to(base).as_posix() for p in files]
    return json_response([[n, *n.split("/")] for n in names] if split else names)


async def list_userdata_v2(request: web.Request) -> web.Response:
    """?path=: folders and files under it, folders first (ComfyUI's GET /v2/userdata)."""
    root = user_root(request).resolve()
    wanted = request.query.get("path", "").strip("/")
    base = user_path(request, wanted) if wanted else root
    if not base.exists():
        raise not_found(f"{where(request)}: no folder {wanted[:100]!r} in the user data", code="no_such_folder")
    if not base.is_dir():
        raise bad_request(f"{where(request)}: {wanted[:100]!r} is not a folder", code="not_a_folder")
    entries = []
    for path in sorted(base.rglob("*")):
        if any(p.startswith(".") for p in path.relative_to(root).parts) or path.is_symlink():
            continue
        entry = {"name": path.name, "path": path.relative_to(root).as_posix(),
                 "type": "directory" if path.is_dir() else "file"}
        if path.is_file():
            stat = path.stat()
            entry.update(size=stat.st_size, modified=stat.st_mtime)
        entries.append(entry)
    entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
    return json_response(entries)


async def get_userdata(request: web.Request) -> web.StreamResponse:
    path = user_path(request, request.match_info["file"])
    if not path.is_file():
        if path.name == USER_CSS and path.parent == user_root(request).resolve():
            return web.Response(text="", content_type="text/css")  # index.html links it; none yet
        raise not_found(f"{where(request)}: no file {request.match_info['file'][:100]!r} in the user data",
                        code="no_such_file")
    is_css = path.name == USER_CSS and path.parent == user_root(request).resolve()
    return web.FileResponse(path, headers={
        "Content-Type": "text/css" if is_css else "application/octet-stream",
        "Content-Disposition": "inline" if is_css else "attachment",
        "X-Content-Type-Options": "nosniff"})


async def _read_capped(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_FILE_BYTES:
        raise too_large(f"{where(request)}: a user data file holds at most {MAX_FILE_BYTES:,} bytes")
    data = await request.content.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise too_large(f"{where(request)}: a user data file holds at most {MAX_FILE_BYTES:,} bytes")
    return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _answer(request: web.Request, path: Path) -> web.Response:
    root = user_root(request).resolve()
    if request.query.get("full_info", "false").lower() == "true":
        return json_response(_file_info(path, root))
    return json_response(path.relative_to(root).as_posix())


async def post_userdata(request: web.Request) -> web.Response:
    """The body is the file (?overwrite=false: 409 if it exists)."""
    path = user_path(request, request.match_info["file"])
    if path.is_dir():
        raise conflict(f"{where(request)}: {request.match_info['file'][:100]!r} is a folder", code="is_a_folder")
    if request.query.get("overwrite", "true") == "false" and path.exists():
        raise conflict(f"{where(request)}: {request.match_info['file'][:100]!r} exists (overwrite=false)",
                       code="exists")
    _write(path, await _read_capped(request))
    return _answer(request, path)


async def delete_userdata(request: web.Request) -> web.Response:
    path = user_path(request, request.match_info["file"])
    if not path.is_file():
        raise not_found(f"{where(request)}: no file {request.match_info['file'][:100]!r} in the user data",
                        code="no_such_file")
    path.unlink()
    return web.Response(status=204)


async def move_userdata(request: web.Request) -> web.Response:
    source = user_path(request, request.match_info["file"])
    target = user_path(request, request.match_info["dest"])
    if not source.is_file():
        raise not_found(f"{where(request)}: no file {request.match_info['file'][:100]!r} in the user data",
                        code="no_such_file")
    if request.query.get("overwrite", "true") == "false" and target.exists():
        raise conflict(f"{where(request)}: {request.match_info['dest'][:100]!r} exists (overwrite=false)",
                       code="exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return _answer(request, target)


def _settings(request: web.Request) -> dict:
    path = user_root(request) / SETTINGS_FILE
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return dict(DEFAULT_SETTINGS)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def _json_body(request: web.Request):
    try:
        return json.loads(await _read_capped(request) or b"null")
    except ValueError:
        raise bad_request(f"{where(request)}: the body is not JSON", code="invalid_json") from None


async def get_settings(request: web.Request) -> web.Response:
    return json_response(_settings(request))


async def get_setting(request: web.Request) -> web.Response:
    return json_response(_settings(request).get(request.match_info["id"]))


async def post_settings(request: web.Request) -> web.Response:
    values = await _json_body(request)
    if not isinstance(values, dict):
        raise bad_request(f"{where(request)}: send the settings as a JSON object", code="invalid_settings")
    _write(user_root(request) / SETTINGS_FILE, json.dumps({**_settings(request), **values}, indent=1).encode())
    return json_response({})


async def post_setting(request: web.Request) -> web.Response:
    settings = {**_settings(request), request.match_info["id"]: await _json_body(request)}
    _write(user_root(request) / SETTINGS_FILE, json.dumps(settings, indent=1).encode())
    return json_response({})


async def get_users(request: web.Request) -> web.Response:
    """One profile per lcmgraph user (its token), chosen by the token, not by the frontend's user screen."""
    return json_response({"storage": "server", "migrated": True})


def add_routes(app: web.Application) -> None:
    """Under /api/ only, where the frontend calls them (and where the token rule covers them)."""
    router = app.router
    router.add_get("/api/users", get_users)
    router.add_get("/api/settings", get_settings)
    router.add_post("/api/settings", post_settings)
    router.add_get("/api/settings/{id}", get_setting)
    router.add_post("/api/settings/{id}", post_setting)
    router.add_get("/api/userdata", list_userdata)
    router.add_get("/api/v2/userdata", list_userdata_v2)
    router.add_post("/api/userdata/{file}/move/{dest}", move_userdata)
    router.add_get("/api/userdata/{file}", get_userdata)
    router.add_post("/api/userdata/{file}", post_userdata)
    router.add_delete("/api/userdata/{file}", delete_userdata)
