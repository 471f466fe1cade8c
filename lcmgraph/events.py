"""Structured execution events, consumed by the CLI progress bars, the JSON
event stream and the server's WebSocket through one callback interface."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUN_START = "run_start"
NODE_START = "node_start"
NODE_CACHED = "node_cached"
NODE_PROGRESS = "node_progress"
NODE_OUTPUT = "node_output"
NODE_DONE = "node_done"
NODE_ERROR = "node_error"
RUN_DONE = "run_done"
RUN_ERROR = "run_error"
INTERRUPTED = "interrupted"

KINDS = (RUN_START, NODE_START, NODE_CACHED, NODE_PROGRESS, NODE_OUTPUT, NODE_DONE, NODE_ERROR, RUN_DONE, RUN_ERROR, INTERRUPTED)


@dataclass
class Event:
    kind: str
    run_id: str
    node: str | None = None
    node_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: A preview image (PIL) for NODE_PROGRESS; not part of the JSON form.
    preview: Any = None
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        out = {"event": self.kind, "run_id": self.run_id, "time": round(self.time, 6)}
        if self.node is not None:
            out["node"] = self.node
            out["node_type"] = self.node_type
        out.update(self.data)
        return out

    def to_line(self) -> str:
        return json.dumps(self.to_json(), default=str)


EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    return None


def fan_out(*sinks: EventSink | None) -> EventSink:
    live = [s for s in sinks if s is not None]

    def sink(event: Event) -> None:
        for s in live:
            s(event)

    return sink
