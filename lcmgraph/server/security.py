"""Request guards, as aiohttp middlewares (outermost first):

- ``errors``: every failure becomes a JSON error naming the request; nothing
  unexpected leaks a traceback or a 5xx page without a message.
- ``host_guard``: the Host header must name this server (DNS rebinding).
- ``origin_guard``: state-changing requests and WebSocket upgrades from a
  browser page of another origin are refused (CSRF, cross-site WebSocket).
- ``auth_guard``: with tokens (``--token``, ``--users``), every /api request
  (and every ComfyUI-compatible route, e.g. /prompt, /ws) carries one; the request then knows its user (``bodies.user_of``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from .config import LOOPBACK_NAMES, WILDCARD_HOSTS
from .errors import ApiError, json_response
from .users import NOBODY, User, UserTable

USER_KEY: web.RequestKey[User] = web.RequestKey("lcmgraph_user", User)

log = logging.getLogger("lcmgraph.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _here(request: web.Request) -> str:
    return f"{request.method} {request.path[:200]}"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if not exc.message.startswith(f"{request.method} /"):
            exc.message = f"{_here(request)}: {exc.message}"
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: f"no such endpoint or file: {_here(request)}",
                  405: f"method {request.method} is not allowed on {request.path[:200]}",
                  413: f"{_here(request)}: the request body is too large ({exc.text or ''})".strip()}
        message = reason.get(exc.status, f"{_here(request)}: {exc.reason}")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        body = {"error": exc.reason.lower().replace(" ", "_"), "status": exc.status, "message": message}
        return json_response(body, status=exc.status, headers=headers)
    except Exception:
        log.exception("internal error handling %s", _here(request))
        body = {"error": "internal", "status": 500,
                "message": f"internal error while handling {_here(request)}; see the server log"}
        return json_response(body, status=500)


def split_host(value: str) -> tuple[str, str]:
    """('127.0.0.1', '8188') from '127.0.0.1:8188'; '[::1]:80' -> ('::1', '80')."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, ""
        rest = value[end + 1:]
        return value[1:end], rest[1:] if rest.startswith(":") else ""
    if value.count(":") == 1:
        name, port = value.split(":")
        return name.rstrip("."), port
    return value.rstrip("."), ""


def host_guard(bound_host: str, extra: Iterable[str]) -> Callable:
    extra = {e.lower() for e in extra}
    allow_any = "*" in extra or bound_host in WILDCARD_HOSTS
    allowed = set(LOOPBACK_NAMES) | {bound_host.lower().strip("[]")} | extra

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allow_any:
            name, _ = split_host(request.headers.get("Host", ""))
            if name not in allowed:
                raise ApiError(421, "unknown_host",
                               f"{_here(request)}: Host {name[:100]!r} is not a name of this server "
                               f"(accepted: {', '.join(sorted(allowed))}; add one with --allow-host)")
        return await handler(request)

    return guard


def origin_guard(extra_origins: Iterable[str]) -> Callable:
    extra = {o.lower().rstrip("/") for o in extra_origins}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if request.method in SAFE_METHODS and not upgrade:
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.headers.get("Host", ""), extra):
            raise ApiError(403, "cross_origin",
                           f"{_here(request)}: refused a cross-origin request from Origin {origin[:100]!r} "
                           f"(this server is {request.headers.get('Host', '')[:100]!r}; allow an editor "
                           f"elsewhere with --allow-origin)")
        if origin is None and request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise ApiError(403, "cross_origin", f"{_here(request)}: refused a cross-site request")
        return await handler(request)

    return guard


def _same_origin(origin: str, host: str, extra: set[str]) -> bool:
    origin = origin.strip().lower()
    if origin in extra:
        return True
    if origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    host_name, host_port = split_host(host)
    try:
        host_port_num = int(host_port) if host_port else default
    except ValueError:
        return False
    return parts.hostname.rstrip(".") == host_name and (port or default) == host_port_num


def token_guard(token: str) -> Callable:
    """One admin token (``--token``)."""
    table = UserTable.build(token)
    assert table is not None
    return auth_guard(table)


def auth_guard(table: UserTable) -> Callable:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == "/api" or path.startswith("/api/") or is_comfy_path(path):
            given = _bearer(request.headers.get("Authorization", ""))
            if given is None and request.method == "GET" and (
                path in TOKEN_IN_QUERY or path.startswith("/api/files/")
            ):
                given = request.query.get("token")
            user = table.authenticate(given) if given is not None else None
            if user is None:
                what = "a wrong token" if given is not None else "no token"
                raise ApiError(401, "unauthorized",
                               f"{_here(request)}: {what}; send 'Authorization: Bearer <token>' "
                               f"(or ?token= on WebSocket and file URLs)",
                               headers={"WWW-Authenticate": 'Bearer realm="lcmgraph"'})
            request[USER_KEY] = user
        else:
            request[USER_KEY] = NOBODY
        return await handler(request)

    return guard


#: ComfyUI's routes served at their bare paths (routes/comfyui.py): they need a token too.
COMFY_PATHS = frozenset({"/prompt", "/queue", "/interrupt", "/history", "/view", "/system_stats",
                         "/object_info", "/ws", "/upload/image", "/upload/mask", "/models", "/embeddings",
                         "/features", "/free"})
#: GET paths that may carry the token as ?token= (a browser cannot set headers there).
TOKEN_IN_QUERY = frozenset({"/api/ws", "/ws", "/view", "/api/view"})


def is_comfy_path(path: str) -> bool:
    return path in COMFY_PATHS or path.startswith(("/history/", "/object_info/", "/internal/", "/models/"))


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
