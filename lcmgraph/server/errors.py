"""Errors as JSON: every failure answers {"error": code, "status", "message", ...}
with a message that names what went wrong and where."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

from aiohttp import web

_dumps = partial(json.dumps, default=str, separators=(",", ":"), allow_nan=False)


def dumps(data: Any) -> str:
    try:
        return _dumps(data)
    except ValueError:  # a NaN/inf produced by a node: JSON has no such numbers
        return json.dumps(_finite(data), default=str, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


class ApiError(Exception):
    """Raised by handlers; the error middleware renders it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "status": self.status, "message": self.message, **self.extra}

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


def bad_request(message: str, code: str = "bad_request", **extra: Any) -> ApiError:
    return ApiError(400, code, message, **extra)


def not_found(message: str, code: str = "not_found", **extra: Any) -> ApiError:
    return ApiError(404, code, message, **extra)


def conflict(message: str, code: str = "conflict", **extra: Any) -> ApiError:
    return ApiError(409, code, message, **extra)


def too_large(message: str, code: str = "too_large", **extra: Any) -> ApiError:
    return ApiError(413, code, message, **extra)
