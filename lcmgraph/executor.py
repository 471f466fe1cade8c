"""Plan and execute a validated workflow.

The plan is lazy in the ComfyUI "dissolve" sense: starting from the requested
output nodes, a node is executed only if its result is not already cached;
a cached node's ancestors are not even visited. The executor knows nothing
about diffusion: it moves opaque values between declared sockets.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from . import events as E
from .cache import node_key
from .context import Interrupted, NodeContext, RunControl
from .node import REQUIRED, Node
from .validation import build_graph
from .workflow import Link, Workflow

if TYPE_CHECKING:
    from .engine import Engine


class NodeFailed(Exception):
    """A node raised during execution; names the node, its type and the cause."""

    def __init__(self, node_id: str, node_type: str, cause: BaseException, tb: str):
        self.node_id = node_id
        self.node_type = node_type
        self.cause = cause
        self.traceback = tb
        detail = str(cause) or type(cause).__name__
        super().__init__(f"node {node_id!r} ({node_type}) failed: {detail}")


class RunInterrupted(Exception):
    def __init__(self, node_id: str | None):
        self.node_id = node_id
        super().__init__("the run was interrupted" + (f" during node {node_id!r}" if node_id else ""))


@dataclass
class RunResult:
    run_id: str
    #: Results reported by output nodes (``{"save": {"images": [...]}}``).
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: Output values of every node executed or fetched in this run, by node id.
    values: dict[str, Mapping[str, Any]] = field(default_factory=dict)


def compute_keys(engine: Engine, workflow: Workflow, order: list[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for node_id in order:
        spec = workflow.nodes[node_id]
        cls = engine.registry.get(spec.type)
        literals: dict[str, Any] = {}
        upstream: dict[str, tuple[str, str]] = {}
        for decl in cls.inputs:
            value = spec.inputs.get(decl.name, None)
            if isinstance(value, Link):
                upstream[decl.name] = (keys[value.node], value.output)
                continue
            if value is None:
                value = None if decl.default is REQUIRED else decl.default
            value = decl.coerce(value) if value is not None else None
            if decl.folder and isinstance(value, str):
                value = [value, engine.files.identity(decl.folder, value)]
            literals[decl.name] = value
        keys[node_id] = node_key(cls.type_name, cls.version, literals, upstream, cls.cacheable)
    return keys


def _inputs_for(cls: type[Node], spec, values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for decl in cls.inputs:
        value = spec.inputs.get(decl.name, None)
        if isinstance(value, Link):
            kwargs[decl.name] = values[value.node][value.output]
        elif value is None:
            kwargs[decl.name] = None if decl.default is REQUIRED else decl.default
        else:
            kwargs[decl.name] = decl.coerce(value)
    return kwargs


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


@dataclass
class Plan:
    """What a run needs: its nodes in order, their keys, and which must execute."""

    order: list[str]
    keys: dict[str, str]
    #: Nodes to execute, in topological order.
    run: list[str]
    #: Values found in the cache, by node id (in the order the walk found them).
    cached: dict[str, Mapping[str, Any]]


def plan_order(workflow: Workflow, outputs: list[str]) -> list[str]:
    """The nodes the outputs need, in a topological order."""
    graph = build_graph(workflow)
    needed: set[str] = set(outputs)
    for node_id in outputs:
        needed |= nx.ancestors(graph, node_id)
    return [n for n in nx.topological_sort(graph) if n in needed]


def make_plan(engine: Engine, workflow: Workflow, outputs: list[str]) -> Plan:
    order = plan_order(workflow, outputs)
    keys = compute_keys(engine, workflow, order)

    # Walk back from the outputs: cached values cut the walk short.
    cached: dict[str, Mapping[str, Any]] = {}
    to_run: set[str] = set()
    stack = list(outputs)
    visited: set[str] = set()
    while stack:
        node_id = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        cls = engine.registry.get(workflow.nodes[node_id].type)
        if not cls.output_node:
            value = engine.cache.get(keys[node_id])
            if value is not None:
                cached[node_id] = value
                continue
        to_run.add(node_id)
        stack.extend(link.node for link in workflow.nodes[node_id].links().values())
    return Plan(order, keys, [n for n in order if n in to_run], cached)


def execute(
    engine: Engine,
    workflow: Workflow,
    outputs: list[str],
    sink: E.EventSink = E.null_sink,
    control: RunControl | None = None,
    output_dir: Path | None = None,
    workflow_json: dict | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run a workflow that already passed validation."""
    control = control or RunControl()
    run_id = run_id or uuid.uuid4().hex[:12]
    started = time.perf_counter()
    result = RunResult(run_id=run_id)
    registry = engine.registry

    planned = make_plan(engine, workflow, outputs)
    keys, plan, values = planned.keys, planned.run, dict(planned.cached)
    result.keys = keys
    result.cached = list(planned.cached)

    sink(E.Event(E.RUN_START, run_id, data={"to_run": plan, "cached": sorted(result.cached), "total": len(plan)}))
    for node_id in sorted(result.cached):
        sink(E.Event(E.NODE_CACHED, run_id, node_id, workflow.nodes[node_id].type))

    output_dir = Path(output_dir or engine.config.output_dir)
    current: str | None = None
    try:
        for index, node_id in enumerate(plan):
            control.check()
            current = node_id
            spec = workflow.nodes[node_id]
            cls = registry.get(spec.type)
            sink(E.Event(E.NODE_START, run_id, node_id, spec.type, {"index": index, "total": len(plan)}))
            ctx = NodeContext(engine, run_id, node_id, spec.type, sink, control, output_dir, workflow_json)
            t0 = time.perf_counter()
            try:
                kwargs = _inputs_for(cls, spec, values)
                produced = _normalise_outputs(cls, cls().execute(ctx, **kwargs))
            except Interrupted:
                raise
            except Exception as exc:
                tb = traceback.format_exc()
                err = NodeFailed(node_id, spec.type, exc, tb)
                sink(E.Event(E.NODE_ERROR, run_id, node_id, spec.type,
                             {"message": str(err), "exception": type(exc).__name__, "traceback": tb}))
                raise err from exc
            values[node_id] = produced
            if not cls.output_node:
                engine.cache.put(keys[node_id], produced)
            result.executed.append(node_id)
            if ctx.results:
                result.outputs[node_id] = ctx.results
                sink(E.Event(E.NODE_OUTPUT, run_id, node_id, spec.type, {"results": ctx.results}))
            sink(E.Event(E.NODE_DONE, run_id, node_id, spec.type, {"seconds": round(time.perf_counter() - t0, 6)}))
    except Interrupted:
        sink(E.Event(E.INTERRUPTED, run_id, current, workflow.nodes[current].type if current else None))
        raise RunInterrupted(current) from None
    except NodeFailed as err:
        sink(E.Event(E.RUN_ERROR, run_id, err.node_id, err.node_type, {"message": str(err)}))
        raise
    result.values = values
    result.seconds = time.perf_counter() - started
    sink(E.Event(E.RUN_DONE, run_id, data={
        "seconds": round(result.seconds, 6),
        "executed": result.executed,
        "cached": sorted(result.cached),
        "outputs": result.outputs,
    }))
    return result
