"""The cluster worker: a Ray actor holding one Engine (and so one model manager).

``run`` is a streaming generator (Ray's ``num_returns="streaming"``): it runs
a batch of jobs on a thread and yields, in order, ``("file", job, folder,
name, bytes)``, ``("event", job, packed event)`` and finally one
``("outcome", job, record)`` per job, so the server relays each job's events
in the order the engine emitted them. ``interrupt`` reaches a running job
(the actor is threaded: it answers while ``run`` works).

This module imports no Ray: the dispatcher wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import events as E
from ..context import RunControl
from ..engine import Engine, EngineConfig
from ..executor import RunRequest
from ..results import RunResult
from ..server.jobs import DONE
from ..server.models_held import held_models
from ..server.outcomes import outcome_status
from .transfer import ProgressGate, Shipper, pack_event


@dataclass(frozen=True)
class WorkerSettings:
    name: str
    #: Where job folders go: the server's output root ("shared" storage), or
    #: None: a scratch folder of this worker's, whose files are sent back.
    shared_output: str | None
    threads: int
    progress_interval: float
    preview_side: int
    max_problems: int


class EngineWorker:
    def __init__(self, config: EngineConfig, settings: WorkerSettings):
        self.settings = settings
        if settings.threads > 0:
            import torch

            torch.set_num_threads(settings.threads)
        self.scratch = None if settings.shared_output else Path(tempfile.mkdtemp(prefix="lcmgraph-worker-"))
        self.output_root = Path(settings.shared_output) if settings.shared_output else self.scratch
        self.engine = Engine(replace(config, output_dir=self.output_root))
        self._controls: dict[str, RunControl] = {}
        self._lock = threading.Lock()
        self.jobs_run = 0

    # -- what the server asks ---------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Device, models held and loads so far (of every model service started)."""
        return {"name": self.settings.name, "pid": os.getpid(), "host": socket.gethostname(),
                **held_models(self.engine.runtime), "jobs_run": self.jobs_run, "running": sorted(self._controls)}

    def interrupt(self, job_ids: list[str]) -> list[str]:
        with self._lock:
            found = [j for j in job_ids if j in self._controls]
            for job_id in found:
                self._controls[job_id].interrupt()
        return found

    def run(self, specs: list[dict[str, Any]]) -> Iterator[tuple]:
        """Run jobs ({"job", "document", "outputs"}) as one batch; yields what the server relays."""
        box: queue.Queue = queue.Queue()
        shipper = Shipper(self._roots(), send=self.scratch is not None)
        requests = []
        with self._lock:
            for spec in specs:
                control = self._controls[spec["job"]] = RunControl()
                requests.append(RunRequest(spec["document"], spec.get("outputs"), self._sink(spec["job"], box),
                                           control, self.output_root / spec["job"], spec["job"]))
        thread = threading.Thread(target=self._work, args=(requests, box), name="lcmgraph-cluster-run",
                                  daemon=True)
        thread.start()
        try:
            while (item := box.get()) is not None:
                yield from self._sendable(item, shipper)
            thread.join()
            for spec, outcome in zip(specs, self._outcomes, strict=True):
                record = self._record(outcome, shipper)
                files = record.pop("files")
                for folder, rel, data in files:
                    yield ("file", spec["job"], folder, rel, data)
                yield ("outcome", spec["job"], record)
        finally:
            with self._lock:
                for spec in specs:
                    self._controls.pop(spec["job"], None)
            if self.scratch is not None:
                for spec in specs:
                    shutil.rmtree(self.scratch / spec["job"], ignore_errors=True)

    # -- inside ------------------------------------------------------------------
    def _roots(self) -> dict[str, Path]:
        return {"output": self.output_root, "temp": Path(self.engine.home) / "temp"}

    def _sink(self, job_id: str, box: queue.Queue) -> E.EventSink:
        gate = ProgressGate(self.settings.progress_interval)

        def sink(event: E.Event) -> None:
            if event.kind == E.NODE_PROGRESS and not gate.due(event):
                return
            box.put((job_id, event))

        return sink

    def _sendable(self, item: tuple[str, E.Event], shipper: Shipper) -> Iterator[tuple]:
        job_id, event = item
        packed = pack_event(event, self.settings.preview_side)
        if event.kind in (E.NODE_OUTPUT, E.RUN_DONE):
            packed["data"], files = shipper.ship(packed["data"])
            for folder, rel, data in files:
                yield ("file", job_id, folder, rel, data)
        yield ("event", job_id, packed)

    def _work(self, requests: list[RunRequest], box: queue.Queue) -> None:
        try:
            self._outcomes = self.engine.run_batch(requests)
        except Exception:  # noqa: BLE001 - an engine failure outside any job: each job alone
            self._outcomes = []
            for request in requests:
                try:
                    self._outcomes.append(self.engine.run_batch([request])[0])
                except Exception as exc:  # noqa: BLE001 - recorded as this job's failure
                    self._outcomes.append(exc)
        finally:
            self.jobs_run += len(requests)
            box.put(None)

    def _record(self, outcome: RunResult | Exception, shipper: Shipper) -> dict[str, Any]:
        status, error = outcome_status(outcome, self.settings.max_problems)
        record: dict[str, Any] = {"status": status, "error": error, "files": []}
        if status == DONE:
            record["outputs"], record["files"] = shipper.ship(outcome.outputs)
            record["result"] = {"executed": outcome.executed, "cached": sorted(outcome.cached),
                                "seconds": round(outcome.seconds, 6)}
        return record
