"""``lcmgraph run --sweep ... --ray``: a sweep's cells spread over Ray workers.

The cells (in the sweep's order, the last axis varying fastest) are cut into
one contiguous run per worker, so each worker's cells share their leading
values and its cache serves their common prefix (the model load, the prompt
encoding), as one process would. Each cell runs alone (not batched), so its
image is the one a single-process sweep makes. Files come back into the
output folder under ``cellNNN/`` (NNN: the cell's index in the sweep);
the grid is assembled from them by the caller as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import events as E
from ..context import RunControl
from ..engine import EngineConfig
from ..prepare import Prepared
from ..results import RunInterrupted, RunResult
from ..runtime import default_home
from ..server.jobs import DONE, INTERRUPTED
from .connect import connect
from .options import RayOptions
from .remote import WorkerSettings
from .transfer import land, localize, unpack_event

INTERRUPT_POLL = 0.1


class ClusterRunFailed(Exception):
    """A cell of a sweep failed on its worker (the message says which node and why)."""


def cell_id(index: int) -> str:
    return f"cell{index:03d}"


def split(count: int, parts: int) -> list[range]:
    """``count`` cells as ``parts`` contiguous runs of nearly equal length."""
    size, extra = divmod(count, parts)
    runs, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        runs.append(range(start, end))
        start = end
    return [r for r in runs if len(r)]


def run_cells(options: RayOptions, config: EngineConfig, out_dir: Path, cells: list[tuple[dict, Prepared]],
              sink: E.EventSink | None = None, control: RunControl | None = None,
              note: Callable[[str], None] | None = None) -> list[tuple[dict, RunResult]]:
    cluster = connect(options)
    out_dir = Path(out_dir).resolve()
    roots = {"output": [out_dir], "temp": [Path(config.home or default_home()).expanduser() / "temp"]}
    shared = options.storage == "shared"
    runs = split(len(cells), max(1, min(options.workers, len(cells))))
    actors = [cluster.actor_class.remote(replace(config, output_dir=out_dir), WorkerSettings(
        name=f"worker-{i}", shared_output=str(out_dir) if shared else None,
        threads=max(1, int(options.cpus_per_worker)), progress_interval=0.05, preview_side=256,
        max_problems=100)) for i in range(len(runs))]
    records: list[dict[str, Any] | None] = [None] * len(cells)
    current: dict[int, str] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        actor = actors[worker]
        try:
            for index in runs[worker]:
                if failures or (control is not None and control.interrupted):
                    return
                _, prepared = cells[index]
                current[worker] = cell_id(index)
                spec = {"job": cell_id(index), "document": dict(prepared.document),
                        "outputs": list(prepared.outputs)}
                for ref in actor.run.options(num_returns="streaming").remote([spec]):
                    item = cluster.ray.get(ref)
                    if item[0] == "file":
                        land(roots, *item[2:])
                    elif item[0] == "event" and sink is not None:
                        with lock:  # one sink, several workers
                            sink(unpack_event(localize(item[2], roots)))
                    elif item[0] == "outcome":
                        records[index] = {**item[2], "outputs": localize(item[2].get("outputs"), roots)}
                if note is not None:
                    note(f"worker-{worker}: cell {index + 1}/{len(cells)} {records[index]['status']}")
                if records[index]["status"] != DONE:
                    return
        except Exception as exc:  # noqa: BLE001 - reported after every worker stopped
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(len(runs))]
    try:
        for thread in threads:
            thread.start()
        interrupted = False
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(INTERRUPT_POLL)
            if control is not None and control.interrupted and not interrupted:
                interrupted = True
                for worker, job in list(current.items()):
                    actors[worker].interrupt.remote([job])
    finally:
        for actor in actors:
            cluster.kill(actor)
        cluster.close()
    if failures:
        raise ClusterRunFailed(f"a worker failed: {type(failures[0]).__name__}: {failures[0]}")
    return [(assignment, _result(index, records[index])) for index, (assignment, _) in enumerate(cells)]


def _result(index: int, record: dict[str, Any] | None) -> RunResult:
    if record is None:
        raise RunInterrupted(None)
    if record["status"] == INTERRUPTED:
        raise RunInterrupted((record["error"] or {}).get("node"))
    if record["status"] != DONE:
        raise ClusterRunFailed(f"in sweep cell {index + 1}: {record['error']['message']}")
    result = record["result"]
    return RunResult(run_id=cell_id(index), outputs=record["outputs"], executed=result["executed"],
                     cached=result["cached"], seconds=result["seconds"])
