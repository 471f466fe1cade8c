"""The single worker: a thread that runs claimed jobs with ``engine.run_batch``, in order.

It asks the queue for work on the event loop (``run_coroutine_threadsafe``),
runs the batch it gets, and reports each result back with
``call_soon_threadsafe``; the loop never waits for a run. A batch of several
jobs (from a batching policy such as ``SameGraphBatches``) goes to
``engine.run_batch`` in one call: the jobs walk their common graph in
lockstep and batched nodes (the samplers) serve them all at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..executor import RunRequest
from ..results import RunResult
from .config import Limits
from .folders import ServedFolders
from .jobs import DONE, FAILED, Job
from .models_held import held_models
from .outcomes import outcome_status
from .outputs import public_results
from .queue import JobQueue
from .relay import JobEventRelay

log = logging.getLogger("lcmgraph.server")


class Worker:
    def __init__(self, engine: Engine, queue: JobQueue, loop: asyncio.AbstractEventLoop,
                 publish: Callable[[dict[str, Any], bool], None], folders: ServedFolders,
                 output_root: Path, limits: Limits):
        self.engine = engine
        self.queue = queue
        self.loop = loop
        self.publish = publish
        self.folders = folders
        self.output_root = output_root
        self.limits = limits
        self._thread = threading.Thread(target=self._main, name="lcmgraph-worker", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end (the queue must be closed first); True if it did."""
        self._stopping.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def describe(self) -> list[dict[str, Any]]:
        """``GET /api/workers``: this one worker thread."""
        return [{"name": "local", "kind": "thread", "health": "ok" if self._thread.is_alive() else "stopped",
                 "running": self.queue.running_ids(), **held_models(self.engine.runtime)}]

    # -- thread ---------------------------------------------------------------
    def _main(self) -> None:
        while not self._stopping.is_set():
            future = asyncio.run_coroutine_threadsafe(self.queue.claim(), self.loop)
            try:
                jobs = future.result()
            except Exception:  # noqa: BLE001 - loop closing or a store failure
                log.exception("the worker could not claim a job; stopping")
                return
            if not jobs:
                return
            self.run_batch(jobs)

    def run_batch(self, jobs: list[Job]) -> None:
        """Run the jobs the policy chose together: one job alone, several through
        ``engine.run_batch`` (lockstep, batched nodes). Should the engine fail
        outside any job, each job runs again on its own, so none is lost."""
        if len(jobs) < 2:
            for job in jobs:
                self.run_one(job)
            return
        try:
            outcomes = self.engine.run_batch([self._request(job) for job in jobs])
        except Exception:  # noqa: BLE001 - an engine bug must not lose the jobs
            log.exception("a batch of %d jobs failed in the engine; running them one by one", len(jobs))
            for job in jobs:
                self.run_one(job)
            return
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._finish(job, outcome)

    def run_one(self, job: Job) -> None:
        try:
            outcome = self.engine.run_batch([self._request(job)])[0]
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything a job does
            outcome = exc
        self._finish(job, outcome)

    def _request(self, job: Job) -> RunRequest:
        """The job's run: prepared at submit, or (after a restart) its stored document."""
        if job.prepared is not None:
            document, outputs = job.prepared, None
        elif job.workflow_text is None:
            raise LookupError(f"job {job.id} has no stored workflow document to run")
        else:
            document, outputs = json.loads(job.workflow_text), job.outputs_requested
        return RunRequest(document, outputs, self._relay(job), job.control, self.output_root / job.id, job.id)

    def _relay(self, job: Job) -> JobEventRelay:
        return JobEventRelay(job, self._post, self.folders, interval=self.limits.progress_interval,
                             preview_side=self.limits.preview_side,
                             preview_quality=self.limits.preview_quality,
                             thumbnail_side=self.limits.thumbnail_side)

    def _finish(self, job: Job, outcome: RunResult | Exception) -> None:
        """Record what became of ``job``: its result, or why it did not finish."""
        status, job.error = outcome_status(outcome, self.limits.max_problems, self.queue.closing)
        files = []
        if status == FAILED and job.error["code"] == "internal":
            log.error("job %s failed outside any node", job.id, exc_info=outcome)
        if status == DONE:
            job.outputs, files = public_results(outcome.outputs, self.folders, self.limits.thumbnail_side)
            job.result = {"executed": outcome.executed, "cached": sorted(outcome.cached),
                          "seconds": round(outcome.seconds, 6)}
        try:
            self.loop.call_soon_threadsafe(self.queue.finish, job, status, files)
        except RuntimeError:  # the loop is gone; the store marks the job failed on restart
            log.warning("job %s ended (%s) after the server stopped", job.id, status)

    def _post(self, message: dict[str, Any], droppable: bool) -> None:
        try:
            self.loop.call_soon_threadsafe(self.publish, message, droppable)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass
