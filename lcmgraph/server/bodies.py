"""Reading request bodies and parameters within limits, with errors that name
the field and the request they came from."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .checking import CHECKER_KEY
from .errors import ApiError, bad_request, too_large
from .security import USER_KEY
from .users import ANONYMOUS, User

if TYPE_CHECKING:
    from .app import ServerApp
    from .jobs import Job

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
CHUNK = 64 * 1024
#: What ComfyUI's routes read as JSON: its clients often send JSON without saying so
#: (urllib's default form type, none at all, text/plain). The Origin guard, not the
#: content type, is what keeps other sites' pages out.
COMFY_JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain",
                    "application/octet-stream")
#: Bodies up to this size are parsed on the event loop (well under a millisecond); larger on a thread.
PARSE_INLINE_BYTES = 128 * 1024


#: Where the aiohttp application keeps its ServerApp (routes read it with ``server_of``).
SERVER_KEY: web.AppKey[ServerApp] = web.AppKey("lcmgraph")
#: Most output node ids a request may name.
MAX_OUTPUTS = 1000


#: The size of the JSON body a request had (read_body), to judge how costly its document is.
BODY_BYTES: web.RequestKey[int] = web.RequestKey("lcmgraph_body_bytes", int)


def server_of(request: web.Request) -> ServerApp:
    return request.app[SERVER_KEY]


def user_of(request: web.Request) -> User:
    """Who is asking (the one admin on a server without tokens)."""
    return request.get(USER_KEY, ANONYMOUS)


def owner_filter(user: User) -> str | None:
    """The owner whose jobs ``user`` may see: None (all) for an admin."""
    return None if user.admin else user.name


def may_see(user: User, job: Job) -> bool:
    return user.admin or job.owner == user.name


def where(request: web.Request) -> str:
    return f"{request.method} {request.path}"


async def read_body(request: web.Request, server: ServerApp, optional: bool = False,
                    content_types: tuple[str, ...] = ("application/json",)) -> dict:
    """The request's JSON object body within the server's limits ({} when optional and absent)."""
    if optional and not request.can_read_body:
        return {}
    value = await read_json(request, server.limits.max_json_bytes, server.limits.max_json_depth,
                            server.limits.body_timeout, server.limits.body_idle_timeout, content_types)
    return expect_object(value, where(request))


def workflow_fields(body: dict, here: str) -> tuple[Any, list[str] | None]:
    """A body's ``workflow`` document and optional ``outputs`` list, checked."""
    if "workflow" not in body:
        hint = " (wrap the workflow document: {\"workflow\": {...}})" if "nodes" in body else ""
        raise bad_request(f"{here}: missing field 'workflow'{hint}", code="missing_field", field="workflow")
    outputs = body.get("outputs")
    if outputs is not None and (not isinstance(outputs, list) or len(outputs) > MAX_OUTPUTS
                                or not all(isinstance(o, str) for o in outputs)):
        raise bad_request(f"{here}: 'outputs' must be a list of at most {MAX_OUTPUTS} node ids",
                          code="invalid_field", field="outputs")
    return body["workflow"], outputs


async def read_limited(request: web.Request, max_bytes: int, here: str, what: str, timeout: float | None = None,
                       idle: float | None = None) -> bytes:
    """The raw body, refused (413, naming ``what``) past ``max_bytes``, and (408)
    when it does not arrive within ``timeout`` or pauses over ``idle`` seconds."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(f"{here}: {what} is {request.content_length} bytes; the limit is {max_bytes} bytes",
                        limit=max_bytes)
    body = bytearray()
    async with body_deadline(here, timeout, idle) as deadline:
        async for chunk in request.content.iter_chunked(CHUNK):
            deadline.progress()
            body += chunk
            if len(body) > max_bytes:
                raise too_large(f"{here}: {what} is larger than the limit of {max_bytes} bytes", limit=max_bytes)
    return bytes(body)


async def read_json(request: web.Request, max_bytes: int, max_depth: int, timeout: float | None = None,
                    idle: float | None = None, content_types: tuple[str, ...] = ("application/json",)) -> Any:
    """The body as JSON: application/json, at most max_bytes, arriving within
    ``timeout`` seconds without pausing over ``idle``, finite numbers, nesting
    at most max_depth."""
    here = where(request)
    if request.content_type not in content_types:
        raise ApiError(415, "unsupported_media_type",
                       f"{here} expects a JSON body with Content-Type: application/json "
                       f"(got {request.content_type or 'none'!r})")
    body = await read_limited(request, max_bytes, here, "the body", timeout, idle)
    request[BODY_BYTES] = len(body)
    if len(body) > PARSE_INLINE_BYTES:  # tens of milliseconds: on a checking thread, not the event loop
        checker = request.app.get(CHECKER_KEY)
        if checker is not None:
            return await checker.run(here, parse_json, bytes(body), here, max_depth)
        return await asyncio.get_running_loop().run_in_executor(None, parse_json, bytes(body), here, max_depth)
    return parse_json(bytes(body), here, max_depth)


class body_deadline:  # noqa: N801 - used like asyncio.timeout
    """``async with body_deadline(here, total, idle) as deadline``: reading a body
    must end within ``total`` seconds and never pause longer than ``idle``
    (call ``deadline.progress()`` whenever bytes arrive); 408 otherwise.
    None: no limit."""

    def __init__(self, here: str, total: float | None, idle: float | None = None):
        self.here = here
        self.total = total
        self.idle = idle
        self._timeout = asyncio.timeout(None)
        self._end = self._start = 0.0

    def _due(self) -> float | None:
        now = asyncio.get_running_loop().time()
        ends = [t for t in (self._end if self.total is not None else None,
                            now + self.idle if self.idle is not None else None) if t is not None]
        return min(ends) if ends else None

    def progress(self) -> None:
        self._timeout.reschedule(self._due())

    async def __aenter__(self) -> body_deadline:
        self._start = asyncio.get_running_loop().time()
        self._end = self._start + (self.total or 0.0)
        await self._timeout.__aenter__()
        self._timeout.reschedule(self._due())
        return self

    async def __aexit__(self, kind, exc, tb) -> bool:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            late = self.total is not None and asyncio.get_running_loop().time() >= self._end
            why = (f"the request body did not arrive within {self.total:g} s" if late else
                   f"the request body stopped arriving for more than {self.idle:g} s")
            raise ApiError(408, "request_timeout", f"{self.here}: {why}", headers={"Connection": "close"},
                           limit=self.total if late else self.idle) from None
        return False


def parse_json(raw: bytes, here: str, max_depth: int) -> Any:
    if not raw.strip():
        raise bad_request(f"{here}: the body is empty; expected a JSON object", code="malformed_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"{here}: the body is not UTF-8 (byte {exc.start})", code="malformed_json") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise bad_request(f"{here}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                          code="malformed_json") from None
    except _NonFinite as exc:
        raise bad_request(f"{here}: {exc}", code="malformed_json") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise bad_request(f"{here}: unreadable JSON number: {exc}", code="malformed_json") from None
    except RecursionError:
        raise bad_request(f"{here}: the JSON is nested too deeply", code="too_deep") from None
    path = too_deep(value, max_depth)
    if path is not None:
        raise bad_request(f"{here}: the JSON is nested deeper than {max_depth} levels at {path}",
                          code="too_deep", limit=max_depth)
    return value


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a JSON number; use a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"the number {text[:40]} is out of range")
    return value


def too_deep(value: Any, max_depth: int) -> str | None:
    """The JSON path of the first value nested deeper than max_depth, else None."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return path
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(child, dict | list):
                    label = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                    stack.append((child, depth + 1, label[:200]))
    return None


# -- fields ------------------------------------------------------------------

def expect_object(value: Any, here: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"{here}: expected a JSON object, got {_kind(value)}")
    return value


def check_keys(obj: dict, allowed: Iterable[str], here: str) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise bad_request(f"{here}: unknown field(s) {', '.join(map(repr, unknown))}; "
                          f"known fields: {', '.join(allowed)}", code="unknown_field", field=unknown[0])


def client_id(value: Any, here: str, field: str = "client_id") -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not CLIENT_ID.match(value):
        raise bad_request(f"{here}: {field!r} must be 1-64 characters of letters, digits, _ . : -",
                          code="invalid_field", field=field)
    return value


def optional_bool(obj: dict, key: str, here: str, default: bool = False) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"{here}: {key!r} must be true or false, got {_kind(value)}",
                          code="invalid_field", field=key)
    return value


def optional_int(obj: dict, key: str, here: str, low: int, high: int, default: int | None = None) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{here}: {key!r} must be an integer from {low} to {high}, got {_short(value)}",
                          code="invalid_field", field=key)
    return value


def optional_str(obj: dict, key: str, here: str, max_len: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise bad_request(f"{here}: {key!r} must be a string of at most {max_len} characters",
                          code="invalid_field", field=key)
    return value


def query_int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw, 10) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise bad_request(f"{where(request)}: query parameter {key!r} must be an integer from {low} to {high}, "
                          f"got {raw[:40]!r}", code="invalid_parameter", field=key)
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
