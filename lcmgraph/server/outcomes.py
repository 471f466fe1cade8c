"""What became of a run, as the job records it: a status and, unless done, an error.

Shared by the in-process worker thread and the cluster's remote workers, which
describe an outcome where it happened and send only this plain data back.
"""

from __future__ import annotations

from typing import Any

from ..problems import WorkflowInvalid
from ..results import NodeFailed, RunInterrupted, RunResult
from .jobs import DONE, FAILED, INTERRUPTED

SHUTDOWN_ERROR = "the server was stopped while this job was running; resubmit it"


def outcome_status(outcome: RunResult | Exception, max_problems: int,
                   closing: bool = False) -> tuple[str, dict[str, Any] | None]:
    """(status, error) of a run's outcome; ``closing``: the server is stopping."""
    if isinstance(outcome, WorkflowInvalid):  # valid at submit time; e.g. a file was removed since
        return FAILED, {"code": "invalid_workflow", "message": str(outcome).splitlines()[0],
                        "problems": [p.to_json() for p in outcome.problems[:max_problems]],
                        "problem_count": len(outcome.problems)}
    if isinstance(outcome, NodeFailed):
        return FAILED, {"code": "node_failed", "message": str(outcome), "node": outcome.node_id,
                        "node_type": outcome.node_type, "exception": type(outcome.cause).__name__}
    if isinstance(outcome, RunInterrupted):
        return INTERRUPTED, interrupted_error(outcome.node_id, str(outcome), closing)
    if isinstance(outcome, Exception):
        return FAILED, {"code": "internal", "message": f"the run failed: {type(outcome).__name__}: {outcome}"}
    return DONE, None


def interrupted_error(node: str | None, message: str, closing: bool) -> dict[str, Any]:
    if closing:
        return {"code": "server_shutdown", "node": node, "message": SHUTDOWN_ERROR}
    return {"code": "interrupted", "message": message, "node": node}
