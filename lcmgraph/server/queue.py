"""The job queue: submit, order, cancel, hand jobs to the worker, record results.

Lives on the event loop thread (no locks): the worker thread asks for work
through ``claim`` (via ``run_coroutine_threadsafe``) and reports back through
``finish`` (via ``call_soon_threadsafe``). Every change is committed to the
store first, then announced on the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

from ..context import RunControl
from ..prepare import Prepared
from .config import Retention
from .errors import ApiError, conflict, not_found
from .hub import Hub
from .jobs import CANCELLED, DONE, FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING, Job
from .store import JobStore

log = logging.getLogger("lcmgraph.server")

QUEUE_NOTICE_DELAY = 0.05
HISTORY_STATUSES = (DONE, FAILED, INTERRUPTED)


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
    def __init__(self, store: JobStore, hub: Hub, max_queue: int, policy: BatchPolicy | None = None,
                 retention: Retention | None = None):
        self.store = store
        self.hub = hub
        self.max_queue = max_queue
        self.policy: BatchPolicy = policy or OneAtATime()
        self.retention = retention or Retention()
        #: Finished jobs in the store (history, cancelled): pruning starts past the limits.
        self._kept = {"history": store.count(*HISTORY_STATUSES), "cancelled": store.count(CANCELLED)}
        #: Bytes of finished jobs' stored documents, and the sizes of those not finished yet.
        self._workflow_bytes = store.finished_workflow_bytes()
        self._sizes: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        #: Running jobs: how to stop each, and whose it is.
        self._controls: dict[str, tuple[RunControl, str]] = {}
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
               title: str = "", front: bool = False, prepared: Prepared | None = None,
               owner: str = "", admin: bool = True, job_id: str | None = None) -> tuple[Job, int]:
        """Queue a job. ``front`` puts it first: for an admin, first in the queue;
        for another user, before that user's own queued jobs (nobody else's).
        ``job_id``: the id to give it (a ComfyUI client's own prompt_id; the
        caller checks its form and that it is free), else a new one."""
        if self._queued >= self.max_queue:
            raise QueueFull(self.max_queue)
        if front and admin:
            self._front -= 1
            seq = self._front
        else:
            self._back += 1
            seq = self._back
        job = Job(id=job_id or uuid.uuid4().hex[:16], client_id=client_id, status=QUEUED, seq=seq,
                  workflow_text=workflow_text, outputs_requested=outputs, created=time.time(), title=title,
                  owner=owner)
        self.store.add(job)
        self._sizes[job.id] = len(workflow_text)
        job.workflow_text = None  # stored; the worker reads it back only if needed
        if prepared is not None:
            self._prepared[job.id] = prepared
        self._queued += 1
        self._wakeup.set()
        position = 0 if front and admin else self._queued - 1
        self.hub.publish({"type": "job_queued", "job": job.id, "client_id": client_id,
                          "position": position, "title": title}, owner=owner)
        if front and not admin:
            self.move(job.id, 0, owner=owner)
            position = self.position(job.id) or 0
        self._queue_changed()
        return job, position

    def move(self, job_id: str, position: int, owner: str | None = None) -> int:
        """Move a queued job to ``position`` (0: next). With ``owner`` (a user who
        is not an admin), ``position`` counts that user's queued jobs, which swap
        places among themselves: other users' jobs keep theirs. Returns the new
        position in the whole queue."""
        jobs = self.store.queued(owner=owner)
        ids = [j.id for j in jobs]
        if job_id not in ids:
            raise self._not_queued(job_id, "moved", owner)
        ids.remove(job_id)
        position = min(position, len(ids))
        ids.insert(position, job_id)
        if owner is None:
            seqs = list(range(self._front, self._front + len(ids)))
        else:  # the places this user's jobs hold in the queue, handed round among them
            seqs = sorted(j.seq for j in jobs)
        self.store.reorder(ids, seqs)
        self._back = max(self._back, seqs[-1])
        job = next(j for j in jobs if j.id == job_id)
        where = self.position(job_id)
        self.hub.publish({"type": "job_moved", "job": job_id, "client_id": job.client_id,
                          "position": where}, owner=job.owner)
        self._queue_changed()
        return where if where is not None else position

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """A queued job is cancelled; a running one is interrupted (it ends 'interrupted').
        With ``owner``, only that user's jobs are found."""
        job = self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
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
        self._sizes.pop(job.id, None)
        self._queued -= 1
        self.hub.publish({"type": "job_cancelled", "job": job.id, "client_id": job.client_id}, owner=job.owner)
        self._queue_changed()
        self._kept["cancelled"] += 1
        self._maybe_prune()
        return job

    def clear(self, client_id: str | None = None, owner: str | None = None) -> list[str]:
        cancelled = []
        for job in self.store.queued(owner=owner):
            if client_id is None or job.client_id == client_id:
                self.cancel(job.id)
                cancelled.append(job.id)
        return cancelled

    def interrupt(self, job_id: str | None = None, owner: str | None = None) -> list[str]:
        """Interrupt the running job(s) (only ``job_id`` if given, only ``owner``'s
        if given); returns who was asked to stop."""
        targets = [j for j, (_, who) in self._controls.items()
                   if (job_id is None or j == job_id) and (owner is None or who == owner)]
        for target in targets:
            self._controls[target][0].interrupt()
        return targets

    def running_ids(self) -> list[str]:
        return list(self._controls)

    def snapshot(self, owner: str | None = None) -> dict[str, Any]:
        """Running and queued jobs (only ``owner``'s if given; positions in the whole queue)."""
        running = [j.summary() for j in self.store.running() if owner is None or j.owner == owner]
        queued = [j.summary(position=i) for i, j in enumerate(self.store.queued())
                  if owner is None or j.owner == owner]
        return {"running": running, "queued": queued}

    def counts(self) -> dict[str, Any]:
        return {"type": "queue", "running": self.running_ids(), "queued": self._queued}

    @property
    def queued_count(self) -> int:
        return self._queued

    def position(self, job_id: str) -> int | None:
        ids = self.store.queued_ids()
        return ids.index(job_id) if job_id in ids else None

    # -- the worker's side ----------------------------------------------------
    async def claim(self, policy: BatchPolicy | None = None) -> list[Job] | None:
        """Wait for work; returns the jobs to run (now 'running'), or None when closing.
        ``policy``: this claimer's own choice (a cluster worker's, which may pass over
        the head of the queue or take nothing yet: it then waits for the next change)."""
        own = policy is not None
        policy = policy or self.policy
        while not self._closed:
            queued = self.store.queued(limit=max(1, policy.lookahead))
            damaged = [j for j in queued if j.damaged]
            if damaged:  # cannot be run as stored: recorded as failed, saying why
                self._fail_damaged(damaged)
                continue
            chosen: list[Job] = []
            if queued:
                for job in queued:
                    job.prepared = self._prepared.get(job.id)
                    if job.prepared is None:  # queued before a restart: run from the stored document
                        job.workflow_text = self.store.workflow(job.id)
                chosen = policy.select(queued) if own else (policy.select(queued) or queued[:1])
            if chosen:
                now = time.time()
                self.store.mark_running([j.id for j in chosen], now)
                for job in chosen:
                    job.status, job.started = RUNNING, now
                    job.control = RunControl()
                    self._controls[job.id] = (job.control, job.owner)
                    self.hub.track(job.id, job.owner)
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
        self.hub.untrack(job.id)
        self._queue_changed()
        self._kept["history"] += 1
        self._maybe_prune()
        self._workflow_bytes += self._sizes.pop(job.id, 0)
        if self._workflow_bytes > self.retention.max_workflow_bytes:
            self.store.trim_workflows(self.retention.max_workflow_bytes)
            self._workflow_bytes = self.store.finished_workflow_bytes()

    def requeue(self, job: Job, reason: str) -> None:
        """Put a running job back in its place in the queue (its cluster worker was
        lost before it finished); it runs again from its stored document."""
        self.store.requeue(job.id)
        self._controls.pop(job.id, None)
        job.status, job.started, job.control = QUEUED, None, None
        self._queued += 1
        self._wakeup.set()
        self.hub.publish({"type": "job_requeued", "job": job.id, "client_id": job.client_id,
                          "reason": reason})
        self._queue_changed()

    def nudge(self) -> None:
        """Claimers that passed over queued jobs look again (a cluster worker came or went)."""
        self._wakeup.set()

    # -- retention ------------------------------------------------------------
    def prune(self) -> list[str]:
        """Remove finished jobs past the retention limits now; returns their ids."""
        removed = self.store.prune(self.retention)
        self._kept = {"history": self.store.count(*HISTORY_STATUSES), "cancelled": self.store.count(CANCELLED)}
        self._workflow_bytes = self.store.finished_workflow_bytes()
        if removed:
            log.info("history retention removed %d finished job(s)", len(removed))
        return removed

    def _maybe_prune(self) -> None:
        """Prune once a limit is passed by a tenth (so not on every job)."""
        limits = {"history": self.retention.keep_history, "cancelled": self.retention.keep_cancelled}
        if any(self._kept[k] > limit + max(1, limit // 10) for k, limit in limits.items()):
            self.prune()

    def forget(self, removed: int) -> None:
        """Jobs were deleted from the history by request: recount."""
        if removed:
            self._kept = {"history": self.store.count(*HISTORY_STATUSES),
                          "cancelled": self.store.count(CANCELLED)}
            self._workflow_bytes = self.store.finished_workflow_bytes()

    def _fail_damaged(self, jobs: list[Job]) -> None:
        for job in jobs:
            log.warning("queued job %s has a damaged record; marking it failed", job.id)
            job.finished = time.time()
            self.store.finish(job)
            self._prepared.pop(job.id, None)
            self._queued -= 1
            self.hub.publish({"type": "job_failed", "job": job.id, "client_id": job.client_id,
                              "outputs": {}, "error": job.error}, owner=job.owner)
            self._kept["history"] += 1
        self._queue_changed()

    @property
    def closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self.interrupt()

    # -- helpers --------------------------------------------------------------
    def _not_queued(self, job_id: str, verb: str, owner: str | None = None) -> ApiError:
        job = self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
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

