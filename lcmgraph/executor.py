"""The one walk: run 1..N prepared workflows, a single run being a batch of one.

Runs are grouped by graph (node ids, types, links, outputs); each group walks
its topological order together. At each node, every job of the group that
must execute it (its plan: the node is not cached and an output needs it):

* jobs whose node has the same cache key share one call and its value
  (one checkpoint load, one encoding of a prompt they have in common);
* when the jobs hold different inputs and the node class has an
  ``execute_batch`` hook, the distinct inputs go to it in one call (the
  sampler: one denoising loop for every seed and prompt); when the hook
  refuses (returns None) or raises, they run one by one after all, so a bad
  input fails only its own job;
* otherwise ``execute`` runs once per distinct input.

Every job keeps its own events (run id = the job's), cache entries, outputs
and errors, in the same order whether it runs alone or with others. Output
nodes always run per job. An interrupted job stops at its next node or
progress step; a call shared by several jobs stops early only once all of
them are interrupted. The executor knows nothing of what the values are.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import events as E
from .batch import BatchContext, JointControl
from .context import Interrupted, NodeContext, RunControl
from .node import Node
from .plan import make_plan
from .prepare import Prepared
from .results import NodeFailed, Outcome, RunInterrupted, RunResult
from .workflow import Link

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["NodeFailed", "Outcome", "RunInterrupted", "RunRequest", "RunResult", "run_prepared"]


@dataclass
class RunRequest:
    """One workflow to run, and where its events and files go.

    ``document`` is a workflow document, or a run already prepared
    (``Engine.prepare``), which is not parsed or validated again (only its
    file inputs are checked again, in case a file went away since).
    """

    document: Mapping[str, Any] | Prepared
    outputs: Sequence[str] | None = None
    sink: E.EventSink | None = None
    control: RunControl | None = None
    output_dir: str | Path | None = None
    run_id: str | None = None


class _Job:
    """One prepared run inside the walk: its plan, values, result or error."""

    def __init__(self, runtime: Runtime, prepared: Prepared, request: RunRequest):
        self.prepared = prepared
        self.nodes = prepared.workflow.nodes
        self.run_id = request.run_id or uuid.uuid4().hex[:12]
        self.sink = request.sink or E.null_sink
        self.control = request.control or RunControl()
        self.output_dir = Path(request.output_dir or runtime.output_dir)
        self.document = dict(prepared.document)
        self.started = time.perf_counter()
        plan = make_plan(runtime, prepared)
        self.keys = plan.keys
        self.run = plan.run
        self.position = {node_id: index for index, node_id in enumerate(plan.run)}
        self.values: dict[str, Mapping[str, Any]] = dict(plan.cached)
        self.result = RunResult(run_id=self.run_id, keys=plan.keys, cached=list(plan.cached))
        self.error: Exception | None = None
        self.current: str | None = None
        self.redact = runtime.redact

    @property
    def alive(self) -> bool:
        return self.error is None

    def emit(self, kind: str, node: str | None = None, data: dict | None = None) -> None:
        node_type = self.nodes[node].type if node else None
        self.sink(E.Event(kind, self.run_id, node, node_type, data or {}))

    def announce(self) -> None:
        cached = sorted(self.result.cached)
        self.emit(E.RUN_START, data={"to_run": self.run, "cached": cached, "total": len(self.run)})
        for node_id in cached:
            self.emit(E.NODE_CACHED, node_id)

    def start(self, node_id: str) -> None:
        self.current = node_id
        self.emit(E.NODE_START, node_id, {"index": self.position[node_id], "total": len(self.run)})

    def inputs(self, cls: type[Node], node_id: str) -> dict[str, Any]:
        spec = self.nodes[node_id]
        kwargs: dict[str, Any] = {}
        for decl in cls.inputs:
            value = spec.inputs.get(decl.name)
            if isinstance(value, Link):
                kwargs[decl.name] = self.values[value.node][value.output]
            else:
                kwargs[decl.name] = decl.value_or_default(value)
        return kwargs

    def context(self, runtime: Runtime, node_id: str, sink: E.EventSink, control: Any) -> NodeContext:
        return NodeContext(runtime, self.run_id, node_id, self.nodes[node_id].type, sink, control,
                           self.output_dir, self.document)

    def fail(self, node_id: str, exc: Exception, tb: str) -> None:
        detail = self.redact(str(exc) or type(exc).__name__)
        self.error = NodeFailed(node_id, self.nodes[node_id].type, exc, tb, detail)
        self.emit(E.NODE_ERROR, node_id, {"message": str(self.error), "exception": type(exc).__name__,
                                          "traceback": tb})
        self.emit(E.RUN_ERROR, node_id, {"message": str(self.error)})

    def interrupt(self) -> None:
        self.error = RunInterrupted(self.current)
        self.emit(E.INTERRUPTED, self.current)

    def finish(self) -> None:
        self.result.values = self.values
        self.result.seconds = time.perf_counter() - self.started
        self.emit(E.RUN_DONE, data={"seconds": round(self.result.seconds, 6), "executed": self.result.executed,
                                    "cached": sorted(self.result.cached), "outputs": self.result.outputs})


@dataclass
class _Entry:
    """One distinct set of inputs at a node, and the jobs that share it."""

    key: str
    jobs: list[_Job]
    kwargs: dict[str, Any]


def run_prepared(runtime: Runtime, prepared: Sequence[Prepared], requests: Sequence[RunRequest]) -> list[Outcome]:
    """Run each prepared workflow (with its request's sink, control, output
    folder and run id); one outcome per run, in order. Runs of one graph walk
    together; groups run in the order of their first member."""
    jobs = [_Job(runtime, p, r) for p, r in zip(prepared, requests, strict=True)]
    groups: dict[str, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.prepared.signature, []).append(job)
    for group in groups.values():
        _walk(runtime, group)
    return [job.error or job.result for job in jobs]


def _walk(runtime: Runtime, jobs: list[_Job]) -> None:
    for job in jobs:
        job.announce()
    for node_id in jobs[0].prepared.order:
        active = []
        for job in jobs:
            if job.alive and node_id in job.position:
                if job.control.interrupted:
                    job.interrupt()
                else:
                    active.append(job)
        if active:
            _run_node(runtime, node_id, active)
    for job in jobs:
        if job.alive:
            job.finish()


def _run_node(runtime: Runtime, node_id: str, jobs: list[_Job]) -> None:
    cls = runtime.registry.get(jobs[0].nodes[node_id].type)
    entries: list[_Entry] = []
    by_key: dict[str, _Entry] = {}
    for job in jobs:
        job.start(node_id)
        try:
            kwargs = job.inputs(cls, node_id)
        except Exception as exc:  # noqa: BLE001 - reported as this job's failure
            job.fail(node_id, exc, traceback.format_exc())
            continue
        key = job.keys[node_id]
        if key in by_key and not cls.output_node:  # output nodes always run per job
            by_key[key].jobs.append(job)
        else:
            by_key[key] = _Entry(key, [job], kwargs)
            entries.append(by_key[key])
    if len(entries) > 1 and cls.execute_batch is not Node.execute_batch:
        entries = _run_batched(runtime, cls, node_id, entries)
    for entry in entries:
        _run_entry(runtime, cls, node_id, entry)


def _fan_out(jobs: list[_Job]) -> E.EventSink:
    if len(jobs) == 1:
        return jobs[0].sink

    def sink(event: E.Event) -> None:
        for job in jobs:
            job.sink(replace(event, run_id=job.run_id))

    return sink


def _entry_context(runtime: Runtime, node_id: str, entry: _Entry) -> NodeContext:
    lead = entry.jobs[0]
    control = lead.control if len(entry.jobs) == 1 else JointControl([j.control for j in entry.jobs])
    return lead.context(runtime, node_id, _fan_out(entry.jobs), control)


def _run_entry(runtime: Runtime, cls: type[Node], node_id: str, entry: _Entry) -> None:
    ctx = _entry_context(runtime, node_id, entry)
    t0 = time.perf_counter()
    try:
        produced = _normalise_outputs(cls, cls().execute(ctx, **entry.kwargs))
    except Interrupted:
        for job in entry.jobs:
            job.interrupt()
        return
    except Exception as exc:  # noqa: BLE001 - the node's failure, for the jobs that ran it
        tb = traceback.format_exc()
        for job in entry.jobs:
            job.fail(node_id, exc, tb)
        return
    _store(runtime, cls, node_id, entry, produced, ctx.results, time.perf_counter() - t0, len(entry.jobs))


def _run_batched(runtime: Runtime, cls: type[Node], node_id: str, entries: list[_Entry]) -> list[_Entry]:
    """Offer ``entries`` to the node's ``execute_batch``; returns those still to run one by one."""
    items = [_entry_context(runtime, node_id, entry) for entry in entries]
    everyone = JointControl([j.control for entry in entries for j in entry.jobs])
    node_type = cls.type_name
    t0 = time.perf_counter()
    try:
        results = cls().execute_batch(BatchContext(items, everyone), [e.kwargs for e in entries])
        if results is None:
            return entries
        results = list(results)
        if len(results) != len(entries):
            raise TypeError(f"{node_type}.execute_batch returned {len(results)} results for {len(entries)} inputs")
        produced = [_normalise_outputs(cls, r) for r in results]
    except Interrupted:
        left = []
        for entry in entries:
            if all(j.control.interrupted for j in entry.jobs):
                for job in entry.jobs:
                    job.interrupt()
            else:
                left.append(entry)
        return left
    except Exception as exc:  # noqa: BLE001 - fall back to one call per entry
        log.warning("node %r (%s): the batched call for %d inputs failed (%s: %s); running them one by one",
                    node_id, node_type, len(entries), type(exc).__name__, exc)
        return entries
    seconds = time.perf_counter() - t0
    total = sum(len(e.jobs) for e in entries)
    for entry, value, item in zip(entries, produced, items, strict=True):
        _store(runtime, cls, node_id, entry, value, item.results, seconds, total)
    return []


def _store(runtime: Runtime, cls: type[Node], node_id: str, entry: _Entry, produced: dict[str, Any],
           results: dict[str, Any], seconds: float, served: int) -> None:
    """Record one call's value for the jobs it served: cache, values, events."""
    if not cls.output_node:
        runtime.cache.put(entry.key, produced)
    done: dict[str, Any] = {"seconds": round(seconds, 6)}
    if served > 1:
        done["batch"] = served  # how many jobs this one call served
    for job in entry.jobs:
        job.values[node_id] = produced
        job.result.executed.append(node_id)
        if results:
            own = {kind: list(items) if isinstance(items, list) else items for kind, items in results.items()}
            job.result.outputs[node_id] = own
            job.emit(E.NODE_OUTPUT, node_id, {"results": own})
        job.emit(E.NODE_DONE, node_id, dict(done))


def _normalise_outputs(cls: type[Node], result: Any) -> dict[str, Any]:
    names = [o.name for o in cls.outputs]
    if result is None:
        result = {}
    if isinstance(result, tuple):
        if len(result) != len(names):
            raise TypeError(f"{cls.type_name}.execute returned {len(result)} values for {len(names)} outputs")
        return dict(zip(names, result, strict=True))
    if not isinstance(result, Mapping):
        raise TypeError(f"{cls.type_name}.execute must return a mapping of outputs, got {type(result).__name__}")
    missing = [n for n in names if n not in result]
    if missing:
        raise TypeError(f"{cls.type_name}.execute did not return output(s) {', '.join(missing)}")
    return {n: result[n] for n in names}
