"""The server's side of a Ray cluster: N worker actors fed from the SQLite queue.

One coroutine per worker slot, on the server's event loop: claim jobs with
the slot's affinity policy (routing.py), stream them through the actor's
``run`` generator, relay events and land files as they come, record each
outcome in the queue. The queue stays the source of truth: a job is 'running'
only between its claim and its outcome.

Faults: a worker lost mid-run (process killed, node gone) has its unfinished
jobs put back in the queue once, to go to another worker; lost a second time,
a job fails saying so. The slot then gets a new actor. A job that fails (a
model that cannot be loaded included) fails alone: the worker goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..server.batching import SameGraphBatches
from ..server.config import Limits
from ..server.folders import ServedFolders
from ..server.hub import Hub
from ..server.jobs import DONE, FAILED, INTERRUPTED, Job
from ..server.outcomes import interrupted_error
from ..server.outputs import public_results
from ..server.queue import JobQueue
from ..server.relay import JobEventRelay
from .connect import Cluster, connect
from .options import RayOptions
from .remote import WorkerSettings
from .routing import AffinityPick, ModelKeys, SlotView
from .transfer import land, localize, unpack_event

log = logging.getLogger("lcmgraph.cluster")

#: A job is run again this many times after losing its worker, then failed.
MAX_REQUEUES = 1
INTERRUPT_POLL = 0.1
INFO_TIMEOUT = 5.0
#: Seconds a new worker may take to start before the log says why it waits.
PLACEMENT_WARNING = 60.0
#: Seconds between attempts to start a worker that failed to start (doubling up to the last).
RESTART_DELAYS = (1.0, 2.0, 5.0, 15.0, 60.0)


@dataclass
class Slot:
    view: SlotView
    name: str
    actor: Any = None
    health: str = "starting"
    info: dict[str, Any] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    restarts: int = 0
    jobs_done: int = 0
    failures: int = 0


class ClusterDispatcher:
    def __init__(self, options: RayOptions, engine: Engine, queue: JobQueue, hub: Hub,
                 folders: ServedFolders, output_root: Path, limits: Limits,
                 batches: SameGraphBatches | None = None):
        self.options = options
        self.engine = engine
        self.queue = queue
        self.hub = hub
        self.folders = folders
        self.output_root = output_root
        self.limits = limits
        self.batches = batches
        self.keys = ModelKeys(engine.registry)
        self.slots = [Slot(SlotView(i), f"worker-{i}") for i in range(options.workers)]
        self._attempts: dict[str, int] = {}
        self._avoid: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopped = threading.Event()
        self._cluster: Cluster | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._cluster = await loop.run_in_executor(None, connect, self.options)
        self._tasks = [asyncio.ensure_future(self._serve(slot)) for slot in self.slots]
        asyncio.ensure_future(self._all_ended())

    def stop(self, timeout: float) -> bool:
        """After ``queue.close()``: wait for the slots to end (from a thread), then let the actors go."""
        ended = self._stopped.wait(timeout)
        for slot in self.slots:
            if slot.actor is not None:
                self._kill(slot.actor)
                slot.actor = None
        if self._cluster is not None:
            self._cluster.close()
        return ended

    async def _all_ended(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stopped.set()

    # -- one slot ---------------------------------------------------------------------
    async def _serve(self, slot: Slot) -> None:
        delays = iter(RESTART_DELAYS)
        while not self.queue.closing:
            if not slot.view.alive:
                if not await self._start_actor(slot):
                    await asyncio.sleep(next(delays, RESTART_DELAYS[-1]))
                    continue
                delays = iter(RESTART_DELAYS)
            policy = AffinityPick(slot.view, [s.view for s in self.slots], self.keys, self.batches, self._avoid)
            jobs = await self.queue.claim(policy=policy)
            if jobs is None:
                return
            slot.view.busy, slot.running = True, [j.id for j in jobs]
            try:
                await self._run(slot, jobs)
            except Exception:  # noqa: BLE001 - the slot must go on whatever a run did
                log.exception("%s: a run failed in the dispatcher", slot.name)
            finally:
                slot.view.busy, slot.running = False, []
                self.queue.nudge()  # jobs passed over for this worker's models may be due now

    async def _start_actor(self, slot: Slot) -> bool:
        settings = WorkerSettings(
            name=slot.name, shared_output=str(self.output_root) if self.options.storage == "shared" else None,
            threads=max(1, int(self.options.cpus_per_worker)), progress_interval=self.limits.progress_interval,
            preview_side=self.limits.preview_side, max_problems=self.limits.max_problems)
        slot.health = "starting"
        slot.actor = self._cluster.actor_class.remote(self.engine.config, settings)
        try:
            slot.info = await self._placed(slot, asyncio.ensure_future(_awaitable(slot.actor.info.remote())))
        except Exception as exc:  # noqa: BLE001 - reported on /api/workers, tried again later
            log.error("%s could not start: %s", slot.name, _short(exc))
            slot.health = f"failed to start: {_short(exc)}"
            self._kill(slot.actor)
            slot.actor = None
            return False
        slot.view.alive, slot.view.keys, slot.health = True, type(slot.view.keys)(), "ok"
        log.info("%s ready (pid %s on %s, %s)", slot.name, slot.info.get("pid"), slot.info.get("host"),
                 slot.info.get("device"))
        self.queue.nudge()
        return True

    async def _placed(self, slot: Slot, ready: asyncio.Future) -> dict[str, Any]:
        """The new actor's first answer; says so in the log while Ray cannot place it yet
        (e.g. more GPUs per worker than the cluster has free)."""
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(ready), PLACEMENT_WARNING)
            except TimeoutError:
                log.warning("%s is not running yet: Ray has not placed it (it needs %s; the cluster has %s)",
                            slot.name, self._cluster.needs, self._cluster.ray.available_resources())

    async def _run(self, slot: Slot, jobs: list[Job]) -> None:
        by_id = {job.id: job for job in jobs}
        relays = {job.id: self._relay(job) for job in jobs}
        finished: set[str] = set()
        watcher = asyncio.ensure_future(self._forward_interrupts(slot, jobs))
        roots = self.folders.roots
        try:
            stream = slot.actor.run.options(num_returns="streaming").remote([self._spec(j) for j in jobs])
            async for ref in stream:
                item = await ref
                kind, job_id = item[0], item[1]
                if kind == "file":
                    self._land(job_id, *item[2:])
                elif kind == "event":
                    relays[job_id](unpack_event(localize(item[2], roots)))
                elif kind == "outcome":
                    self._finish(by_id[job_id], item[2])
                    finished.add(job_id)
                    slot.jobs_done += 1
        except self._cluster.ray.exceptions.RayTaskError as exc:  # our code failed on the worker, not the worker
            for job in jobs:
                if job.id not in finished:
                    self._fail(job, {"code": "internal", "message": f"the worker failed: {_short(exc)}"})
        except self._cluster.ray.exceptions.RayError as exc:  # the worker is gone (killed, node lost)
            slot.view.alive, slot.health, slot.failures = False, f"lost: {_short(exc)}", slot.failures + 1
            log.warning("%s was lost running %s: %s", slot.name, ", ".join(slot.running), _short(exc))
            self._kill(slot.actor)
            slot.actor, slot.restarts = None, slot.restarts + 1
            for job in jobs:
                if job.id not in finished:
                    self._lost(job, slot, exc)
        finally:
            watcher.cancel()

    def _spec(self, job: Job) -> dict[str, Any]:
        if job.prepared is not None:
            document, outputs = dict(job.prepared.document), list(job.prepared.outputs)
        else:  # queued before a restart, or put back after a lost worker: its stored document
            text = job.workflow_text or self.queue.store.workflow(job.id)
            document, outputs = (json.loads(text) if text else None), job.outputs_requested
        return {"job": job.id, "document": document, "outputs": outputs}

    def _relay(self, job: Job) -> JobEventRelay:
        limits = self.limits
        return JobEventRelay(job, self.hub.publish, self.folders, interval=0.0,  # the worker throttled
                             preview_side=limits.preview_side, preview_quality=limits.preview_quality,
                             thumbnail_side=limits.thumbnail_side)

    async def _forward_interrupts(self, slot: Slot, jobs: list[Job]) -> None:
        sent: set[str] = set()
        while True:
            await asyncio.sleep(INTERRUPT_POLL)
            due = [j.id for j in jobs if j.control is not None and j.control.interrupted and j.id not in sent]
            if due and slot.actor is not None:
                slot.actor.interrupt.remote(due)
                sent.update(due)

    # -- outcomes -----------------------------------------------------------------------
    def _land(self, job_id: str, folder: str, rel: str, data: bytes) -> None:
        try:
            land(self.folders.roots, folder, rel, data)
        except (OSError, ValueError) as exc:
            log.error("job %s: could not write %s/%s sent by its worker: %s", job_id, folder, rel, exc)

    def _finish(self, job: Job, record: dict[str, Any]) -> None:
        status, error = record["status"], record["error"]
        if status == INTERRUPTED and self.queue.closing:
            error = interrupted_error((error or {}).get("node"), "", closing=True)
        files: list[tuple[str, str, str]] = []
        if status == DONE:
            job.outputs, files = public_results(localize(record["outputs"], self.folders.roots), self.folders,
                                                self.limits.thumbnail_side)
            job.result = record["result"]
        job.error = error
        self._forget(job.id)
        self.queue.finish(job, status, files)

    def _fail(self, job: Job, error: dict[str, Any]) -> None:
        job.error = error
        self._forget(job.id)
        self.queue.finish(job, FAILED, [])

    def _lost(self, job: Job, slot: Slot, exc: BaseException) -> None:
        """The job's worker died before its outcome: run it again once, elsewhere; then fail it."""
        attempts = self._attempts[job.id] = self._attempts.get(job.id, 0) + 1
        self._remove_partial_files(job.id)
        reason = f"its worker ({slot.name}) was lost while running it: {_short(exc)}"
        if attempts <= MAX_REQUEUES and not self.queue.closing:
            self._avoid[job.id] = slot.view.index
            self.queue.requeue(job, reason)
            return
        again = " (the second time; it is not run again)" if attempts > MAX_REQUEUES else ""
        self._fail(job, {"code": "worker_lost", "message": reason + again, "worker": slot.name,
                         "attempts": attempts})

    def _forget(self, job_id: str) -> None:
        self._attempts.pop(job_id, None)
        self._avoid.pop(job_id, None)

    def _remove_partial_files(self, job_id: str) -> None:
        """Files a lost run wrote belong to no finished job: the next run writes its own."""
        for folder in ("output", "temp"):
            root = Path(self.folders.roots[folder][0])
            target = root / job_id
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)

    def _kill(self, actor: Any) -> None:
        if self._cluster is not None:
            self._cluster.kill(actor)

    # -- GET /api/workers ------------------------------------------------------------------
    async def describe(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._describe(slot) for slot in self.slots)))

    async def _describe(self, slot: Slot) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": slot.name, "kind": "ray", "health": slot.health,
                                 "running": list(slot.running), "jobs_done": slot.jobs_done,
                                 "restarts": slot.restarts, "routing_keys": list(slot.view.keys)}
        info = slot.info
        if slot.actor is not None and slot.view.alive:
            try:
                info = slot.info = await asyncio.wait_for(_awaitable(slot.actor.info.remote()), INFO_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a worker that does not answer says so
                entry["health"] = f"not answering: {_short(exc)}"
        for key in ("device", "models", "loads", "host", "pid"):
            entry[key] = info.get(key)
        return entry


async def _awaitable(ref: Any) -> Any:
    return await ref


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}"
