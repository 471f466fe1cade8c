"""Several workflows of one graph, run in lockstep: the engine side of batching.

Workflows are *batch-compatible* when they have the same node ids, types and
links and request the same outputs, so they differ only in literal values.
Such a group walks one topological order together; at each node

* jobs whose node has the same cache key execute it once and share the value
  (one checkpoint load, one encoding of a prompt they have in common);
* jobs with different inputs go to the node's ``execute_batch`` hook in one
  call when the node class has one (the sampler: one denoising loop for every
  seed and prompt); when the hook refuses (returns None) or raises, the node
  runs per job after all, so nothing is lost and a bad input fails only its job;
* otherwise ``execute`` runs once per job.

Every job keeps its own events (run id = the job's), cache entries, outputs
and errors. Output nodes run per job (each writes its own files, with its own
workflow embedded). An interrupted job stops at its next node or progress
step; a call shared by several jobs stops early only once all of them are
interrupted (the others leave at the next node).

The executor knows nothing of what the values are: whether two jobs may share
a call is decided by cache keys and by the node's own hook.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import events as E
from . import workflow as wf
from .context import EngineAccess, Interrupted, NodeContext, RunControl
from .executor import (
    NodeFailed,
    RunInterrupted,
    RunResult,
    _inputs_for,
    _normalise_outputs,
    execute,
    make_plan,
    plan_order,
)
from .node import REQUIRED, Node
from .problems import WorkflowInvalid
from .validation import requested_outputs, validate
from .workflow import Link, Workflow

if TYPE_CHECKING:
    from .engine import Engine
    from .registry import NodeRegistry

log = logging.getLogger(__name__)


@dataclass
class RunRequest:
    """One workflow of a batch, and where its events and files go."""

    document: Mapping[str, Any]
    outputs: Sequence[str] | None = None
    sink: E.EventSink | None = None
    control: RunControl | None = None
    output_dir: str | Path | None = None
    run_id: str | None = None


#: Per request: its RunResult, or the exception a single ``Engine.run`` would
#: have raised (WorkflowInvalid, NodeFailed, RunInterrupted).
Outcome = RunResult | Exception


# -- compatibility -------------------------------------------------------------

def graph_signature(workflow: Workflow, outputs: Sequence[str]) -> str:
    """Equal for workflows that can run in lockstep: same node ids, types, links and outputs."""
    nodes = {
        node_id: [spec.type, {name: [ln.node, ln.output] for name, ln in spec.links().items()}]
        for node_id, spec in workflow.nodes.items()
    }
    return json.dumps([nodes, list(outputs)], sort_keys=True, separators=(",", ":"))


def batch_signature(workflow: Workflow, registry: NodeRegistry, outputs: Sequence[str]) -> str | None:
    """The graph signature plus every literal that its node does not list in
    ``batch_inputs``: jobs with equal batch signatures are worth merging. None
    when a node type is unknown."""
    fixed: dict[str, dict[str, Any]] = {}
    for node_id, spec in workflow.nodes.items():
        cls = registry.get(spec.type)
        if cls is None:
            return None
        if cls.batch_inputs is None:
            continue
        values = {}
        for decl in cls.inputs:
            value = spec.inputs.get(decl.name)
            if decl.name in cls.batch_inputs or isinstance(value, Link):
                continue
            if value is None:
                value = None if decl.default is REQUIRED else decl.default
            values[decl.name] = decl.coerce(value) if value is not None else None
        fixed[node_id] = values
    extra = json.dumps(fixed, sort_keys=True, separators=(",", ":"), default=repr)
    return graph_signature(workflow, outputs) + extra


# -- what a batched call sees -----------------------------------------------------

class JointControl:
    """The interrupt control of a call shared by several jobs: it stops only
    once every one of them was asked to stop."""

    def __init__(self, controls: Sequence[RunControl]):
        self.controls = list(controls)

    @property
    def interrupted(self) -> bool:
        return all(c.interrupted for c in self.controls)

    def check(self) -> None:
        if self.interrupted:
            raise Interrupted("interrupted")


class BatchContext(EngineAccess):
    """What ``Node.execute_batch`` receives as ``ctx``: one NodeContext per entry
    (``items``, for ``add_result`` and the like) and the NodeContext helpers."""

    def __init__(self, items: list[NodeContext], control: JointControl):
        self.items = items
        self.engine = items[0].engine
        self.node_id = items[0].node_id
        self.node_type = items[0].node_type
        self._control = control

    def progress(self, step: int, total: int, preview: Any = None, previews: Sequence[Any] | None = None,
                 **info: Any) -> None:
        """Report progress to every job (``previews``: one image per entry, in
        order); the call stops here once every job was interrupted."""
        for index, item in enumerate(self.items):
            item.emit_progress(step, total, previews[index] if previews is not None else preview, **info)
        self._control.check()


# -- one job in a lockstep walk ---------------------------------------------------

@dataclass
class _Prepared:
    workflow: Workflow
    outputs: list[str]
    request: RunRequest
    signature: str


class _Job:
    def __init__(self, engine: Engine, prepared: _Prepared, order: list[str]):
        request = prepared.request
        self.workflow = prepared.workflow
        self.run_id = request.run_id or uuid.uuid4().hex[:12]
        self.sink = request.sink or E.null_sink
        self.control = request.control or RunControl()
        self.output_dir = Path(request.output_dir or engine.config.output_dir)
        self.document = dict(request.document)
        self.started = time.perf_counter()
        self.plan = make_plan(engine, self.workflow, prepared.outputs)
        to_run = set(self.plan.run)
        self.run = [n for n in order if n in to_run]
        self.values: dict[str, Mapping[str, Any]] = dict(self.plan.cached)
        self.result = RunResult(run_id=self.run_id, keys=self.plan.keys, cached=list(self.plan.cached))
        self.error: Exception | None = None
        self.current: str | None = None

    @property
    def alive(self) -> bool:
        return self.error is None

    def emit(self, kind: str, node: str | None = None, data: dict | None = None) -> None:
        node_type = self.workflow.nodes[node].type if node else None
        self.sink(E.Event(kind, self.run_id, node, node_type, data or {}))

    def announce(self) -> None:
        cached = sorted(self.result.cached)
        self.emit(E.RUN_START, data={"to_run": self.run, "cached": cached, "total": len(self.run)})
        for node_id in cached:
            self.emit(E.NODE_CACHED, node_id)

    def start(self, node_id: str) -> None:
        self.current = node_id
        self.emit(E.NODE_START, node_id, {"index": self.run.index(node_id), "total": len(self.run)})

    def context(self, engine: Engine, node_id: str, sink: E.EventSink, control: Any) -> NodeContext:
        node_type = self.workflow.nodes[node_id].type
        return NodeContext(engine, self.run_id, node_id, node_type, sink, control, self.output_dir, self.document)

    def fail(self, node_id: str, exc: Exception, tb: str) -> None:
        node_type = self.workflow.nodes[node_id].type
        self.error = NodeFailed(node_id, node_type, exc, tb)
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


def _fan_out(jobs: list[_Job]) -> E.EventSink:
    if len(jobs) == 1:
        return jobs[0].sink

    def sink(event: E.Event) -> None:
        for job in jobs:
            job.sink(replace(event, run_id=job.run_id))

    return sink


def _entry_context(engine: Engine, node_id: str, entry: _Entry) -> NodeContext:
    lead = entry.jobs[0]
    control = lead.control if len(entry.jobs) == 1 else JointControl([j.control for j in entry.jobs])
    return lead.context(engine, node_id, _fan_out(entry.jobs), control)


# -- the walk ----------------------------------------------------------------------

def run_lockstep(engine: Engine, prepared: list[_Prepared]) -> list[Outcome]:
    """Run batch-compatible workflows together; one outcome per workflow, in order."""
    graph_order = plan_order(prepared[0].workflow, prepared[0].outputs)
    jobs = [_Job(engine, p, graph_order) for p in prepared]
    for job in jobs:
        job.announce()
    for node_id in graph_order:
        active = [j for j in jobs if j.alive and node_id in j.run]
        for job in active:
            if job.control.interrupted:
                job.interrupt()
        active = [j for j in active if j.alive]
        if active:
            _run_node(engine, node_id, active)
    for job in jobs:
        if job.alive:
            job.finish()
    return [job.error or job.result for job in jobs]


def _run_node(engine: Engine, node_id: str, jobs: list[_Job]) -> None:
    cls = engine.registry.get(jobs[0].workflow.nodes[node_id].type)
    t0 = time.perf_counter()
    entries: list[_Entry] = []
    by_key: dict[str, _Entry] = {}
    for job in jobs:
        job.start(node_id)
        try:
            kwargs = _inputs_for(cls, job.workflow.nodes[node_id], job.values)
        except Exception as exc:  # noqa: BLE001 - reported as this job's failure
            job.fail(node_id, exc, traceback.format_exc())
            continue
        key = job.plan.keys[node_id]
        if key in by_key and not cls.output_node:  # output nodes always run per job
            by_key[key].jobs.append(job)
        else:
            by_key[key] = _Entry(key, [job], kwargs)
            entries.append(by_key[key])
    if len(entries) > 1 and cls.execute_batch is not Node.execute_batch:
        entries = _run_batched(engine, cls, node_id, entries, t0)
    for entry in entries:
        _run_entry(engine, cls, node_id, entry, t0)


def _run_entry(engine: Engine, cls: type[Node], node_id: str, entry: _Entry, t0: float) -> None:
    ctx = _entry_context(engine, node_id, entry)
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
    _store(engine, cls, node_id, entry, produced, ctx.results, t0, len(entry.jobs))


def _run_batched(engine: Engine, cls: type[Node], node_id: str, entries: list[_Entry], t0: float) -> list[_Entry]:
    """Offer ``entries`` to the node's ``execute_batch``; returns those still to run one by one."""
    items = [_entry_context(engine, node_id, entry) for entry in entries]
    everyone = JointControl([j.control for entry in entries for j in entry.jobs])
    node_type = cls.type_name
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
    total = sum(len(e.jobs) for e in entries)
    for entry, value, item in zip(entries, produced, items, strict=True):
        _store(engine, cls, node_id, entry, value, item.results, t0, total)
    return []


def _store(engine: Engine, cls: type[Node], node_id: str, entry: _Entry, produced: dict[str, Any],
           results: dict[str, Any], t0: float, batch: int) -> None:
    if not cls.output_node:
        engine.cache.put(entry.key, produced)
    seconds = round(time.perf_counter() - t0, 6)
    for job in entry.jobs:
        job.values[node_id] = produced
        job.result.executed.append(node_id)
        if results:
            own = {kind: list(items) if isinstance(items, list) else items for kind, items in results.items()}
            job.result.outputs[node_id] = own
            job.emit(E.NODE_OUTPUT, node_id, {"results": own})
        done = {"seconds": seconds}
        if batch > 1:
            done["batch"] = batch  # how many jobs this one call served
        job.emit(E.NODE_DONE, node_id, done)


# -- entry point -------------------------------------------------------------------

def prepare(engine: Engine, request: RunRequest) -> _Prepared | WorkflowInvalid:
    workflow, problems = wf.parse(request.document)
    problems += validate(workflow, engine.registry, request.outputs, engine.files.check)
    if problems:
        return WorkflowInvalid(problems)
    outputs = requested_outputs(workflow, engine.registry, request.outputs)
    return _Prepared(workflow, outputs, request, graph_signature(workflow, outputs))


def run_prepared(engine: Engine, prepared: list[_Prepared | WorkflowInvalid]) -> list[Outcome]:
    """Group the valid runs by graph, run each group (lockstep when it has several), in order."""
    outcomes: list[Outcome | None] = [p if isinstance(p, WorkflowInvalid) else None for p in prepared]
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(prepared):
        if isinstance(item, _Prepared):
            groups.setdefault(item.signature, []).append(index)
    for members in groups.values():
        if len(members) > 1:
            for index, outcome in zip(members, run_lockstep(engine, [prepared[i] for i in members]), strict=True):
                outcomes[index] = outcome
            continue
        item = prepared[members[0]]
        request = item.request
        try:
            outcomes[members[0]] = execute(
                engine, item.workflow, item.outputs, sink=request.sink or E.null_sink, control=request.control,
                output_dir=Path(request.output_dir) if request.output_dir else None,
                workflow_json=dict(request.document), run_id=request.run_id)
        except (NodeFailed, RunInterrupted) as exc:
            outcomes[members[0]] = exc
    return outcomes
