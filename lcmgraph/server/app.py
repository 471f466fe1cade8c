"""ServerApp: owns the engine, store, queue, hub and worker of one server
(the aiohttp application around it is built in application.py)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..engine import Engine
from .batching import SameGraphBatches
from .config import ServerConfig
from .folders import ServedFolders
from .hub import Hub
from .queue import BatchPolicy, JobQueue
from .store import JobStore
from .worker import Worker

if TYPE_CHECKING:
    from ..cluster.dispatcher import ClusterDispatcher

log = logging.getLogger("lcmgraph.server")

REPO_ROOT = Path(__file__).resolve().parents[2]
RESTART_MESSAGE = ("the server stopped while this job was running; it was not re-run "
                   "(resubmit it to run it again)")


class ServerApp:
    def __init__(self, config: ServerConfig, engine: Engine, policy: BatchPolicy | None = None):
        self.config = config
        self.limits = config.limits
        self.engine = engine
        if policy is None and config.max_batch > 1:
            policy = SameGraphBatches(engine.registry, config.max_batch)
        self.policy = policy
        self.output_root = config.outputs_path.resolve()
        self.output_root.mkdir(parents=True, exist_ok=True)
        input_roots = [Path(p) for p in engine.files.roots.get("input", [])] or [Path(config.data_dir) / "input"]
        self.folders = ServedFolders(self.output_root, Path(engine.home) / "temp", input_roots)
        self.store = JobStore(config.database_path)
        recovered = self.store.recover(RESTART_MESSAGE)
        if recovered:
            log.warning("marked %d job(s) interrupted by the last shutdown as failed: %s",
                        len(recovered), ", ".join(recovered))
            moved = quarantine(self.output_root, recovered)
            if moved:
                log.warning("moved the files of %d unfinished job(s) to %s (not served)", moved,
                            self.output_root / QUARANTINE)
        self.workflows_dir = Path(config.workflows_dir) if config.workflows_dir else _default_workflows()
        self.web_dir = Path(config.web_dir) if config.web_dir else _default_web()
        self.hub = Hub(self.limits.ws_buffer)
        self.queue: JobQueue | None = None
        self.worker: Worker | ClusterDispatcher | None = None
        self.image_slots: asyncio.Semaphore | None = None
        self._schema_text: str | None = None

    # -- lifecycle (lcmgraph/server/application.py wires these into aiohttp) ---
    async def start(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.image_slots = asyncio.Semaphore(self.limits.image_workers)
        self.queue = JobQueue(self.store, self.hub, self.limits.max_queue, self.policy)
        if self.config.ray is not None:
            from ..cluster.dispatcher import ClusterDispatcher

            batches = self.policy if isinstance(self.policy, SameGraphBatches) else None
            self.worker = ClusterDispatcher(self.config.ray, self.engine, self.queue, self.hub, self.folders,
                                            self.output_root, self.limits, batches)
            await self.worker.start()
            return
        self.worker = Worker(self.engine, self.queue, loop, self.hub.publish, self.folders,
                             self.output_root, self.limits)
        self.worker.start()

    async def shutdown(self, app: web.Application) -> None:
        await self.hub.close_all()

    async def cleanup(self, app: web.Application) -> None:
        if self.queue is not None:
            self.queue.close()  # wakes a waiting claim, interrupts a running job
        if self.worker is not None:
            loop = asyncio.get_running_loop()
            # The loop keeps running while we wait, so the worker can still record the result.
            stopped = await loop.run_in_executor(None, self.worker.stop, 30.0)
            if not stopped:
                log.warning("the running job did not stop within 30 s; it will be marked failed on restart")
            await asyncio.sleep(0)  # let a just-posted finish() run
        if self.queue is not None:
            self.queue.cancel_notice()
        self.store.close()

    def schema_text(self) -> str:
        if self._schema_text is None:
            from .errors import dumps

            self._schema_text = dumps(self.engine.registry.schema())
        return self._schema_text


#: Where the files of jobs that did not finish go at start-up (hidden: never served).
QUARANTINE = ".quarantine"


def quarantine(output_root: Path, job_ids: list[str]) -> int:
    """Move the output folders of jobs a crash interrupted out of the served tree:
    a file written before the crash belongs to no finished job."""
    moved = 0
    for job_id in job_ids:
        folder = output_root / job_id
        if folder.is_dir():
            target = output_root / QUARANTINE / job_id
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            folder.rename(target)
            moved += 1
    return moved


def _default_workflows() -> Path:
    repo = REPO_ROOT / "workflows"
    return repo if repo.is_dir() else Path("workflows")


def _default_web() -> Path | None:
    for candidate in (REPO_ROOT / "web" / "dist", REPO_ROOT / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    return None
