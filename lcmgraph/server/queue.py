"""The job queue: submit, order, cancel, hand jobs to the worker, record results.

Lives on the event loop thread (no locks): the worker thread asks for work
through ``claim`` (via ``run_coroutine_threadsafe``) and reports back through
``finish`` (via ``call_soon_threadsafe``). Every change is committed to the
store first, then announced on the hub.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Protocol

from ..context import RunControl
from ..prepare import Prepared
from .errors import ApiError, conflict, not_found
from .hub import Hub
from .jobs import CANCELLED, FINISHED, QUEUED, RUNNING, Job
from .store import JobStore

QUEUE_NOTICE_DELAY = 0.05


class BatchPolicy(Protocol):
    """Which queued jobs the worker takes next (the seam for GPU batching).

    ``select`` gets up to ``lookahead`` queued jobs in queue order and returns
    the jobs to run together; the first must be the head of the queue, so the
    order users see is kept. A batching policy would add later jobs whose
    workflows differ only in batchable inputs (seed, prompt) and a runner that
    executes them as one batch.
    """

    lookahead: int

    def select(self, queued: list[Job]) -> list[Job]: ...


class OneAtATime:
    lookahead = 1

    def select(self, queued: list[Job]) -> list[Job]:
        return queued[:1]


class QueueFull(ApiError):
    def __init__(self, limit: int):
        super().__init__(429, "queue_full",
                         f"the queue already holds {limit} waiting jobs (the limit); retry after some finish",
                         headers={"Retry-After": "2"}, limit=limit)


class JobQueue:
    def __init__(self, store: JobStore, hub: Hub, max_queue: int, policy: BatchPolicy | None = None):
        self.store = store
        self.hub = hub
        self.max_queue = max_queue
        self.policy: BatchPolicy = policy or OneAtATime()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._controls: dict[str, RunControl] = {}
        #: Queued jobs' runs as validated at submit, so the worker does not
        #: parse and validate them again (jobs from before a restart have none).
        self._prepared: dict[str, Prepared] = {}
        self._queued = store.count(QUEUED)
        self._notice: asyncio.TimerHandle | None = None
        low, high = store.seq_bounds()
        self._front, self._back = low, high
        if self._queued:
            self._wakeup.set()

    # -- requests from the API ------------------------------------------------
    def submit(self, workflow_text: str, client_id: str, outputs: list[str] | None,
               title: str = "", front: bool = False, prepared: Prepared | None = None) -> tuple[Job, int]:
        if self._queued >= self.max_queue:
            raise QueueFull(self.max_queue)
        if front:
            self._front -= 1
            seq = self._front
        else:
            self._back += 1
            seq = self._back
        job = Job(id=uuid.uuid4().hex[:16], client_id=client_id, status=QUEUED, seq=seq,
                  workflow_text=workflow_text, outputs_requested=outputs, created=time.time(), title=title)
        self.store.add(job)
        if prepared is not None:
            self._prepared[job.id] = prepared
        self._queued += 1
        self._wakeup.set()
        position = 0 if front else self._queued - 1
        self.hub.publish({"type": "job_queued", "job": job.id, "client_id": client_id,
                          "position": position, "title": title})
        self._queue_changed()
        return job, position

    def move(self, job_id: str, position: int) -> int:
        ids = self.store.queued_ids()
        if job_id not in ids:
            raise self._not_queued(job_id, "moved")
        ids.remove(job_id)
        position = min(position, len(ids))
        ids.insert(position, job_id)
        seqs = list(range(self._front, self._front + len(ids)))
        self.store.reorder(ids, seqs)
        self._back = max(self._back, seqs[-1])
        job = self.store.get(job_id)
        self.hub.publish({"type": "job_moved", "job": job_id, "client_id": job.client_id if job else "",
                          "position": position})
        self._queue_changed()
        return position

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled; a running one is interrupted (it ends 'interrupted')."""
        job = self.store.get(job_id)
        if job is None:
            raise not_found(f"no job {job_id!r}", code="no_such_job")
        if job.status == RUNNING:
            self.interrupt(job_id)
            return job
        if job.status != QUEUED:
            raise conflict(f"job {job_id!r} already finished ({job.status}); nothing to cancel",
                           code="job_finished", job_status=job.status)
        job.status = CANCELLED
        job.finished = time.time()
        job.error = {"code": "cancelled", "message": "cancelled before it started"}
        self.store.finish(job)
        self._prepared.pop(job.id, None)
        self._queued -= 1
        self.hub.publish({"type": "job_cancelled", "job": job.id, "client_id": job.client_id})
        self._queue_changed()
        return job

    def clear(self, client_id: str | None = None) -> list[str]:
        cancelled = []
        for job in self.store.queued():
            if client_id is None or job.client_id == client_id:
                self.cancel(job.id)
                cancelled.append(job.id)
        return cancelled

    def interrupt(self, job_id: str | None = None) -> list[str]:
        """Interrupt the running job(s) (only ``job_id`` if given); returns who was asked to stop."""
        targets = [j for j in self._controls if job_id is None or j == job_id]
        for target in targets:
            self._controls[target].interrupt()
        return targets

    def running_ids(self) -> list[str]:
        return list(self._controls)

    def snapshot(self) -> dict[str, Any]:
        return {"running": [j.summary() for j in self.store.running()],
                "queued": [j.summary(position=i) for i, j in enumerate(self.store.queued())]}

    def counts(self) -> dict[str, Any]:
        return {"type": "queue", "running": self.running_ids(), "queued": self._queued}

    @property
    def queued_count(self) -> int:
        return self._queued

    def position(self, job_id: str) -> int | None:
        ids = self.store.queued_ids()
        return ids.index(job_id) if job_id in ids else None

    # -- the worker's side ----------------------------------------------------
    async def claim(self) -> list[Job] | None:
        """Wait for work; returns the jobs to run (now 'running'), or None when closing."""
        while not self._closed:
            queued = self.store.queued(limit=max(1, self.policy.lookahead))
            if queued:
                for job in queued:
                    job.prepared = self._prepared.get(job.id)
                chosen = self.policy.select(queued) or queued[:1]
                now = time.time()
                self.store.mark_running([j.id for j in chosen], now)
                for job in chosen:
                    job.status, job.started = RUNNING, now
                    job.control = self._controls[job.id] = RunControl()
                    self._prepared.pop(job.id, None)
                    self._queued -= 1
                    self.hub.publish({"type": "job_started", "job": job.id, "client_id": job.client_id})
                self._queue_changed()
                return chosen
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    def finish(self, job: Job, status: str, files: list[tuple[str, str, str]] | None = None) -> None:
        """Record a job's end (called on the loop by the worker)."""
        assert status in FINISHED
        job.status = status
        job.finished = time.time()
        self.store.finish(job, files or [])
        self._controls.pop(job.id, None)
        message = {"type": f"job_{status}", "job": job.id, "client_id": job.client_id,
                   "outputs": job.outputs or {}, "error": job.error}
        if job.result:
            message.update(job.result)
        self.hub.publish(message)
        self._queue_changed()

    @property
    def closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self.interrupt()

    # -- helpers --------------------------------------------------------------
    def _not_queued(self, job_id: str, verb: str) -> ApiError:
        job = self.store.get(job_id)
        if job is None:
            return not_found(f"no job {job_id!r}", code="no_such_job")
        return conflict(f"job {job_id!r} is {job.status}, not queued; only queued jobs can be {verb}",
                        code="not_queued", job_status=job.status)

    def _queue_changed(self) -> None:
        """Announce the queue's counts to everyone, at most every QUEUE_NOTICE_DELAY seconds."""
        if self._notice is None:
            loop = asyncio.get_running_loop()
            self._notice = loop.call_later(QUEUE_NOTICE_DELAY, self._send_notice)

    def _send_notice(self) -> None:
        self._notice = None
        self.hub.publish(self.counts())

    def cancel_notice(self) -> None:
        if self._notice is not None:
            self._notice.cancel()
            self._notice = None

