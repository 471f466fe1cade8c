"""A job: one submitted workflow and what became of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..context import RunControl
from ..prepare import Prepared

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"
CANCELLED = "cancelled"
FINISHED = (DONE, FAILED, INTERRUPTED, CANCELLED)
STATUSES = (QUEUED, RUNNING, *FINISHED)


@dataclass
class Job:
    id: str
    client_id: str
    status: str
    seq: int
    #: The submitted document as JSON text; None when not loaded (lists never load it).
    workflow_text: str | None
    outputs_requested: list[str] | None
    created: float
    title: str = ""
    #: The user who submitted it ("" without users: the only, admin, user).
    owner: str = ""
    started: float | None = None
    finished: float | None = None
    #: {"executed": [...], "cached": [...], "seconds": float} once done.
    result: dict[str, Any] | None = None
    #: Public results by node ({"save": {"images": [{"filename", "url", ...}]}}).
    outputs: dict[str, Any] | None = None
    #: {"code", "message", "node"?, ...} when failed / interrupted / cancelled.
    error: dict[str, Any] | None = None
    #: Its stored record could not be decoded (shown as failed; see ``error``).
    damaged: bool = field(default=False, repr=False, compare=False)
    #: Set while running: how to stop it (not persisted).
    control: RunControl | None = field(default=None, repr=False, compare=False)
    #: The run as prepared at submit time, while queued in this process (not persisted).
    prepared: Prepared | None = field(default=None, repr=False, compare=False)

    def summary(self, position: int | None = None) -> dict[str, Any]:
        """The public JSON form (without the workflow document)."""
        out: dict[str, Any] = {
            "id": self.id,
            "client_id": self.client_id,
            "status": self.status,
            "title": self.title,
            "created": round(self.created, 6),
            "started": _round(self.started),
            "finished": _round(self.finished),
        }
        if self.owner:
            out["owner"] = self.owner
        if position is not None:
            out["position"] = position
        if self.outputs_requested is not None:
            out["outputs_requested"] = self.outputs_requested
        if self.result is not None:
            out.update(self.result)
        out["outputs"] = self.outputs or {}
        out["error"] = self.error
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
