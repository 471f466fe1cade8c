"""The HTTP/WebSocket server: ``lcmgraph serve``.

One aiohttp process: the JSON API under /api, event streaming on /api/ws,
the editor's static files at /. A single worker thread runs queued jobs in
order (``--batch N``: up to N jobs of one graph as one batch; ``--ray``: Ray
worker actors instead, lcmgraph/cluster) while the event loop stays responsive; queue, history and the output
index live in SQLite under the data directory. See docs/api.md.

Names are imported on first use, so ``lcmgraph.server.cli`` (the argument
parser the main CLI builds on every start) does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServerApp": "app", "web_application": "application", "ServerConfig": "config", "Limits": "config", "BatchPolicy": "queue",
    "OneAtATime": "queue", "SameGraphBatches": "batching", "add_serve_arguments": "cli", "add_serve_parser": "cli", "serve_main": "cli",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lcmgraph.server' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
