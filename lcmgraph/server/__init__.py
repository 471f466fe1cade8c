"""The HTTP/WebSocket server: ``lcmgraph serve``.

One aiohttp process: the JSON API under /api, event streaming on /api/ws,
the editor's static files at /. A single worker thread runs queued jobs in
order while the event loop stays responsive; queue, history and the output
index live in SQLite under the data directory. See docs/api.md.
"""

from .app import ServerApp
from .cli import add_serve_arguments, add_serve_parser, serve_main
from .config import Limits, ServerConfig
from .queue import BatchPolicy, OneAtATime

__all__ = ["BatchPolicy", "Limits", "OneAtATime", "ServerApp", "ServerConfig", "add_serve_arguments",
           "add_serve_parser", "serve_main"]
