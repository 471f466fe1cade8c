"""Engine events -> WebSocket messages, on the worker thread.

Each engine event becomes ``{"type": <event kind>, "job", "client_id", ...}``
and is handed to the loop with ``call_soon_threadsafe``. Progress is
throttled (first and last step always pass) and carries a small JPEG preview
as base64 when the node supplied one; paths in results become API URLs;
tracebacks stay in the server log.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

from .. import events as E
from .folders import ServedFolders
from .images import preview_jpeg
from .jobs import Job
from .outputs import public_results

log = logging.getLogger("lcmgraph.server")

#: post(message, droppable) -> None, safe to call from any thread.
Post = Callable[[dict[str, Any], bool], None]


class JobEventRelay:
    def __init__(self, job: Job, post: Post, folders: ServedFolders, *, interval: float,
                 preview_side: int, preview_quality: int, thumbnail_side: int):
        self.job = job
        self.post = post
        self.folders = folders
        self.interval = interval
        self.preview_side = preview_side
        self.preview_quality = preview_quality
        self.thumbnail_side = thumbnail_side
        self._last_progress = 0.0

    def __call__(self, event: E.Event) -> None:
        message = event.to_json()
        message.pop("run_id", None)
        message["type"] = message.pop("event")
        message["job"] = self.job.id
        message["client_id"] = self.job.client_id
        if event.kind == E.NODE_PROGRESS:
            if not self._progress_due(event):
                return
            if event.preview is not None:
                message["preview"] = self._preview(event.preview)
            self.post(message, True)
            return
        if event.kind == E.NODE_ERROR:
            trace = message.pop("traceback", None)
            if trace:
                log.info("job %s node %s failed:\n%s", self.job.id, event.node, trace)
        elif event.kind == E.NODE_OUTPUT:
            message["results"], _ = public_results({event.node: message.get("results", {})}, self.folders,
                                                   self.thumbnail_side)
            message["results"] = message["results"].get(event.node, {})
        elif event.kind == E.RUN_DONE:
            message["outputs"], _ = public_results(message.get("outputs", {}), self.folders,
                                                   self.thumbnail_side)
        self.post(message, False)

    def _progress_due(self, event: E.Event) -> bool:
        step, total = event.data.get("step"), event.data.get("total")
        now = time.monotonic()
        if step in (0, 1) or step == total or now - self._last_progress >= self.interval:
            self._last_progress = now
            return True
        return False

    def _preview(self, image: Any) -> str | None:
        try:
            data = preview_jpeg(image, self.preview_side, self.preview_quality)
        except Exception as exc:  # noqa: BLE001 - a bad preview must not fail the job
            log.debug("preview for job %s failed: %s", self.job.id, exc)
            return None
        return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
