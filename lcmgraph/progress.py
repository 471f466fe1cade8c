"""Terminal renderings of engine events: tqdm bars, or one JSON line per event."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from . import events as E


class ProgressBars:
    """Human progress on stderr: one line per node, a bar for nodes that report steps."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self._bar: tqdm | None = None
        self._bar_node: str | None = None

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_node = None

    def __call__(self, event: E.Event) -> None:
        kind = event.kind
        if kind == E.RUN_START:
            cached = len(event.data.get("cached", []))
            note = f", {cached} from cache" if cached else ""
            self._write(f"running {event.data['total']} node(s){note}")
        elif kind == E.NODE_START:
            self._close()
        elif kind == E.NODE_PROGRESS:
            total = event.data.get("total") or None
            if self._bar is None or self._bar_node != event.node:
                self._close()
                label = event.data.get("label") or f"{event.node} ({event.node_type})"
                self._bar = tqdm(total=total, desc=label, file=self.stream, leave=True,
                                 dynamic_ncols=True, unit=event.data.get("unit", "step"))
                self._bar_node = event.node
            elif total and self._bar.total != total:
                self._bar.total = total
            self._bar.n = event.data.get("step", 0)
            self._bar.refresh()
        elif kind == E.NODE_DONE:
            if self._bar is None:
                self._write(f"  {event.node} ({event.node_type}) {event.data.get('seconds', 0):.2f}s")
            self._close()
        elif kind in (E.NODE_ERROR, E.RUN_ERROR, E.INTERRUPTED, E.RUN_DONE):
            self._close()
            if kind == E.RUN_DONE:
                self._write(f"done in {event.data['seconds']:.2f}s")

    def _write(self, text: str) -> None:
        tqdm.write(text, file=self.stream)


class JsonLines:
    """``--json-events``: one JSON object per event on stdout, for scripts."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: E.Event) -> None:
        if event.kind == E.NODE_ERROR and "traceback" in event.data:
            data = dict(event.to_json())
            data.pop("traceback")
            import json

            self.stream.write(json.dumps(data, default=str) + "\n")
        else:
            self.stream.write(event.to_line() + "\n")
        self.stream.flush()
