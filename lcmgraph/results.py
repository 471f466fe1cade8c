"""What a run ends with: its result, or why it did not finish."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class NodeFailed(Exception):
    """A node raised during execution; names the node, its type and the cause."""

    def __init__(self, node_id: str, node_type: str, cause: BaseException, tb: str, detail: str | None = None):
        self.node_id = node_id
        self.node_type = node_type
        self.cause = cause
        self.traceback = tb
        detail = detail or str(cause) or type(cause).__name__
        super().__init__(f"node {node_id!r} ({node_type}) failed: {detail}")
        self.__cause__ = cause


class RunInterrupted(Exception):
    def __init__(self, node_id: str | None):
        self.node_id = node_id
        super().__init__("the run was interrupted" + (f" during node {node_id!r}" if node_id else ""))


@dataclass
class RunResult:
    run_id: str
    #: Results reported by output nodes (``{"save": {"images": [...]}}``).
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    #: Cache key of every node the run needed, by node id.
    keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: Output values of every node executed or fetched in this run, by node id.
    values: dict[str, Mapping[str, Any]] = field(default_factory=dict)


#: Per run: its RunResult, or the exception a single ``Engine.run`` raises for
#: it (WorkflowInvalid, NodeFailed, RunInterrupted).
Outcome = RunResult | Exception
