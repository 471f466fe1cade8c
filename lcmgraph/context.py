"""What a running node can reach: progress reporting, interruption, files,
per-engine services. Nodes receive it as ``ctx``; it knows nothing of HTTP."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import events as E

if TYPE_CHECKING:
    from .runtime import Runtime


class Interrupted(Exception):
    """Raised inside a run when it was asked to stop."""


class RunControl:
    """Handle to stop a run cooperatively from another thread."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def interrupt(self) -> None:
        self._flag.set()

    @property
    def interrupted(self) -> bool:
        return self._flag.is_set()

    def check(self) -> None:
        if self._flag.is_set():
            raise Interrupted("interrupted")


class RuntimeAccess:
    """The runtime helpers a node's ``ctx`` offers (needs ``runtime`` and ``_control``)."""

    runtime: Runtime
    _control: Any

    @property
    def engine(self) -> Runtime:
        """The runtime (registry, files, home, services), under the name packs
        written before ``runtime`` existed use."""
        return self.runtime

    @property
    def device(self) -> str:
        return self.runtime.device

    def service(self, name: str) -> Any:
        return self.runtime.service(name)

    def resolve_file(self, folder: str, name: str) -> Path:
        return self.runtime.files.resolve(folder, name)

    def file_identity(self, folder: str, name: str) -> str:
        """What the cache keys a file input by (changes when the file changes)."""
        return self.runtime.files.identity(folder, name)

    def check_interrupt(self) -> None:
        self._control.check()


class NodeContext(RuntimeAccess):
    def __init__(
        self,
        runtime: Runtime,
        run_id: str,
        node_id: str,
        node_type: str,
        sink: E.EventSink,
        control: RunControl,
        output_dir: Path,
        workflow_json: dict | None,
    ):
        self.runtime = runtime
        self.run_id = run_id
        self.node_id = node_id
        self.node_type = node_type
        self._sink = sink
        self._control = control
        self.output_dir = output_dir
        #: The workflow being run, as a document (for embedding in saved images).
        self.workflow_json = workflow_json
        self.results: dict[str, Any] = {}

    def progress(self, step: int, total: int, preview: Any = None, **info: Any) -> None:
        """Report progress; also the point where an interrupt takes effect."""
        self.emit_progress(step, total, preview, **info)
        self._control.check()

    def emit_progress(self, step: int, total: int, preview: Any = None, **info: Any) -> None:
        """Report progress without checking for an interrupt (batched calls check once for all)."""
        self._sink(
            E.Event(E.NODE_PROGRESS, self.run_id, self.node_id, self.node_type,
                    {"step": step, "total": total, **info}, preview=preview)
        )

    def add_result(self, **results: Any) -> None:
        """Output nodes report what they produced (``images=[...]``) here."""
        for key, value in results.items():
            self.results.setdefault(key, [])
            if isinstance(value, list):
                self.results[key].extend(value)
            else:
                self.results[key].append(value)
