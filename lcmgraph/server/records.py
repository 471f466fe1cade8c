"""Job rows <-> Job objects. Decoding is tolerant: a row whose cells cannot be
read (bad JSON, wrong types, an unknown status) becomes a failed job whose
error says its record is damaged, so one bad row never breaks a listing."""

from __future__ import annotations

import json
import math
from typing import Any

from .jobs import FAILED, STATUSES, Job

DAMAGED = "damaged_record"


def enc(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


class _Damaged(ValueError):
    pass


def _dec(text: Any, column: str, kind: type | tuple[type, ...]) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else text
    except (ValueError, RecursionError):
        raise _Damaged(f"column {column!r} is not valid JSON") from None
    if not isinstance(value, kind):
        raise _Damaged(f"column {column!r} holds {type(value).__name__}, not the expected value")
    return value


def _time(value: Any, column: str, required: bool = False) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Damaged(f"column {column!r} is not a time")
    return float(value)


def job_from_row(row: tuple) -> Job:
    """A row as a Job; a row that cannot be decoded becomes a failed job saying so."""
    (job_id, client, owner, status, seq, requested, title, created, started, finished,
     result, outputs, error) = row
    try:
        if status not in STATUSES:
            raise _Damaged(f"unknown status {str(status)[:40]!r}")
        if not isinstance(client, str) or not isinstance(title, str) or not isinstance(owner, str):
            raise _Damaged("a text column holds another type")
        requested = _dec(requested, "outputs_requested", list)
        if requested is not None and not all(isinstance(o, str) for o in requested):
            raise _Damaged("column 'outputs_requested' is not a list of node ids")
        return Job(id=job_id, client_id=client, owner=owner, status=status,
                   seq=seq if isinstance(seq, int) else 0, workflow_text=None,
                   outputs_requested=requested, title=title, created=_time(created, "created", True),
                   started=_time(started, "started"), finished=_time(finished, "finished"),
                   result=_dec(result, "result", dict), outputs=_dec(outputs, "outputs", dict),
                   error=_dec(error, "error", dict))
    except _Damaged as exc:
        return damaged_job(row, str(exc))


def damaged_job(row: tuple, why: str) -> Job:
    job_id, client, owner, status, seq = row[:5]
    created, started, finished = (v if isinstance(v, int | float) and math.isfinite(v) else None
                                  for v in row[7:10])
    return Job(id=str(job_id), client_id=client if isinstance(client, str) else "",
               owner=owner if isinstance(owner, str) else "", status=FAILED,
               seq=seq if isinstance(seq, int) else 0, workflow_text=None, outputs_requested=None,
               created=created or 0.0, started=started, finished=finished or created or 0.0,
               error={"code": DAMAGED, "message": f"this job's stored record is damaged ({why}); it is "
                      f"shown as failed and can be deleted", "stored_status": str(status)[:40]},
               damaged=True)
