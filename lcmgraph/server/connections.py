"""Connection-level limits and the access log, with aiohttp's own settings.

- Request head: aiohttp's parser refuses a request line over ``max_line_size``,
  a header over ``max_field_size`` and more than ``max_headers`` headers (400).
- Slow loris: aiohttp's keep-alive timer (``keepalive_timeout``) runs from
  the moment a connection opens and again after each response; when it
  fires while the connection is still waiting for a complete request head,
  the connection is closed. So a client must send a whole request head within
  ``header_timeout`` seconds, however it trickles the bytes, and an idle
  keep-alive connection is closed after the same time. A request being
  handled (a WebSocket, a download) is not affected.
- Bodies: a request body must arrive within ``body_timeout`` and never
  pause longer than ``body_idle_timeout`` (408; see ``bodies.body_deadline``);
  what a refused request still sends is read and dropped for at most
  ``LINGERING_TIME`` before the connection closes.
- Connections: aiohttp has no limit of its own; ``limit_connections`` closes
  a new connection at once while ``max_connections`` are open.
- Access log (``--debug``): one line per request without its query string's
  secrets (``token=`` values are replaced by ``***``) and without any
  header (the Authorization header never reaches the log). ``lcmgraph
  serve`` also puts ``RedactingFilter`` on its log handlers, for anything
  else that might quote a request (aiohttp's errors about malformed ones).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .config import Limits

log = logging.getLogger("lcmgraph.server")
#: Seconds a graceful stop waits for open requests (WebSockets are closed by the hub first).
SHUTDOWN_TIMEOUT = 10.0
#: Seconds aiohttp keeps reading (and dropping) the rest of a body its handler did not read (default 10).
LINGERING_TIME = 2.0
_SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:access_)?token=)[^&;#\s'\"]*")
_SECRET_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?bearer\s+)[^\s'\"]+")


def redact(text: str) -> str:
    """Token values in query strings and bearer tokens replaced by ***."""
    return _SECRET_HEADER.sub(r"\1***", _SECRET_QUERY.sub(r"\1***", text))


class RedactingFilter(logging.Filter):
    """A log handler filter: the message (and any traceback) with tokens redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to the handler
            return True
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = redact(message), None
        return True


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Put RedactingFilter on the handlers of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingAccessLogger(AbstractAccessLogger):
    """``127.0.0.1 "GET /api/ws?token=*** HTTP/1.1" 101 0 0.002s``: no secrets, no headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        self.logger.info('%s "%s %s %s" %s %s %.3fs', request.remote or "-", request.method,
                         redact(request.raw_path)[:2000], version, response.status, response.body_length, time)


def runner_options(limits: Limits, access_log: logging.Logger | None = None) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (and aiohttp's TestServer)."""
    options: dict[str, Any] = {
        "keepalive_timeout": limits.header_timeout,
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "max_headers": limits.max_headers,
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "lingering_time": LINGERING_TIME,
        "access_log": access_log,
    }
    if access_log is not None:
        options["access_log_class"] = RedactingAccessLogger
    return options


def limit_connections(server: web.Server, max_connections: int) -> None:
    """Close new connections at once while ``max_connections`` are open.

    aiohttp's low-level server keeps its open connections in ``connections``
    and tells itself of each new one with ``connection_made``; the check
    wraps that call on this server object only."""
    made = server.connection_made
    refused = 0

    def connection_made(handler: Any, transport: Any) -> None:
        nonlocal refused
        if len(server.connections) >= max_connections:
            refused += 1
            if refused == 1 or refused % 100 == 0:
                log.warning("refused a connection: %d are open (the limit); %d refused so far",
                            max_connections, refused)
            handler.force_close()
            transport.abort()
            return
        made(handler, transport)

    server.connection_made = connection_made  # type: ignore[method-assign]
