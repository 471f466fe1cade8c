"""What batching adds to the walk: which jobs are worth merging, and what a
node's ``execute_batch`` hook receives.

The walk itself (lcmgraph/executor.py) is the same for one job and for many:
jobs of one graph walk its order together; at each node, jobs whose node has
the same cache key share one call, and jobs with different inputs go to the
node's ``execute_batch`` in one call when the class has one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .context import Interrupted, NodeContext, RunControl, RuntimeAccess
from .node import literal_inputs
from .prepare import graph_signature

if TYPE_CHECKING:
    from .prepare import Prepared
    from .registry import NodeRegistry


def batch_signature(prepared: Prepared, registry: NodeRegistry) -> str:
    """The graph signature plus every literal that its node does not list in
    ``batch_inputs``: jobs with equal batch signatures are worth merging."""
    fixed: dict[str, dict[str, Any]] = {}
    for node_id, spec in prepared.workflow.nodes.items():
        cls = registry.get(spec.type)
        if cls.batch_inputs is None:
            continue
        literals = literal_inputs(cls, spec.inputs)
        fixed[node_id] = {k: v for k, v in literals.items() if k not in cls.batch_inputs}
    extra = json.dumps(fixed, sort_keys=True, separators=(",", ":"), default=repr)
    return prepared.signature + extra


class JointControl:
    """The interrupt control of a call shared by several jobs: it stops only
    once every one of them was asked to stop."""

    def __init__(self, controls: Sequence[RunControl]):
        self.controls = list(controls)

    @property
    def interrupted(self) -> bool:
        return all(c.interrupted for c in self.controls)

    def check(self) -> None:
        if self.interrupted:
            raise Interrupted("interrupted")


class BatchContext(RuntimeAccess):
    """What ``Node.execute_batch`` receives as ``ctx``: one NodeContext per entry
    (``items``, for ``add_result`` and the like) and the NodeContext helpers."""

    def __init__(self, items: list[NodeContext], control: JointControl):
        self.items = items
        self.runtime = items[0].runtime
        self.node_id = items[0].node_id
        self.node_type = items[0].node_type
        self._control = control

    def progress(self, step: int, total: int, preview: Any = None, previews: Sequence[Any] | None = None,
                 **info: Any) -> None:
        """Report progress to every job (``previews``: one image per entry, in
        order); the call stops here once every job was interrupted."""
        for index, item in enumerate(self.items):
            item.emit_progress(step, total, previews[index] if previews is not None else preview, **info)
        self._control.check()


__all__ = ["BatchContext", "JointControl", "batch_signature", "graph_signature"]
