"""The single worker: a thread that runs claimed jobs with ``engine.run``, in order.

It asks the queue for work on the event loop (``run_coroutine_threadsafe``),
runs the batch it gets, and reports each result back with
``call_soon_threadsafe``; the loop never waits for a run. ``run_batch`` is the
seam for GPU batching: today it runs the jobs of a batch one after another
(the default ``OneAtATime`` policy only ever hands it one); a batching runner
would merge compatible jobs into one engine call there.
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
from ..executor import NodeFailed, RunInterrupted
from ..problems import WorkflowInvalid
from .config import Limits
from .folders import ServedFolders
from .jobs import DONE, FAILED, INTERRUPTED, Job
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
        for job in jobs:
            self.run_one(job)

    def run_one(self, job: Job) -> None:
        post = self._post
        relay = JobEventRelay(job, post, self.folders, interval=self.limits.progress_interval,
                              preview_side=self.limits.preview_side,
                              preview_quality=self.limits.preview_quality,
                              thumbnail_side=self.limits.thumbnail_side)
        status, files = FAILED, []
        try:
            document = json.loads(job.workflow_text)
            result = self.engine.run(document, outputs=job.outputs_requested, sink=relay,
                                     control=job.control, output_dir=self.output_root / job.id,
                                     run_id=job.id)
        except WorkflowInvalid as exc:  # valid at submit time; e.g. a file was removed since
            job.error = {"code": "invalid_workflow", "message": str(exc).splitlines()[0],
                         "problems": [p.to_json() for p in exc.problems]}
        except NodeFailed as exc:
            job.error = {"code": "node_failed", "message": str(exc), "node": exc.node_id,
                         "node_type": exc.node_type, "exception": type(exc.cause).__name__}
        except RunInterrupted as exc:
            status = INTERRUPTED
            if self.queue.closing:
                job.error = {"code": "server_shutdown", "node": exc.node_id,
                             "message": "the server was stopped while this job was running; resubmit it"}
            else:
                job.error = {"code": "interrupted", "message": str(exc), "node": exc.node_id}
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything a job does
            log.exception("job %s failed outside any node", job.id)
            job.error = {"code": "internal", "message": f"the run failed: {type(exc).__name__}: {exc}"}
        else:
            status = DONE
            job.outputs, files = public_results(result.outputs, self.folders, self.limits.thumbnail_side)
            job.result = {"executed": result.executed, "cached": sorted(result.cached),
                          "seconds": round(result.seconds, 6)}
        try:
            self.loop.call_soon_threadsafe(self.queue.finish, job, status, files)
        except RuntimeError:  # the loop is gone; the store marks the job failed on restart
            log.warning("job %s ended (%s) after the server stopped", job.id, status)

    def _post(self, message: dict[str, Any], droppable: bool) -> None:
        try:
            self.loop.call_soon_threadsafe(self.publish, message, droppable)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass
