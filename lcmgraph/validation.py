"""Validation before execution: every problem in a workflow, reported at once.

``validate`` also returns what it had to work out on the way (the requested
output nodes and a topological order), so that preparing a run does not
compute them again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import types as T
from .node import REQUIRED
from .problems import Problem
from .registry import NodeRegistry
from .workflow import Link, NodeSpec, Workflow

#: ``check(folder, name) -> sentence or None`` for inputs that name files.
FileCheck = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Checked:
    """The result of validation."""

    problems: list[Problem]
    #: The output nodes to run (requested, else the workflow's, else every output node).
    outputs: list[str]
    #: Every node in a topological order; shorter than the workflow when it has a cycle.
    order: list[str]
    #: (node, input, folder, name) of every literal that names a file.
    file_inputs: list[tuple[str, str, str, str]]

    @property
    def ok(self) -> bool:
        return not self.problems


def requested_outputs(workflow: Workflow, registry: NodeRegistry, outputs: Iterable[str] | None = None) -> list[str]:
    if outputs is not None:
        return list(outputs)
    if workflow.outputs is not None:
        return list(workflow.outputs)
    return [
        node_id
        for node_id, spec in workflow.nodes.items()
        if (cls := registry.get(spec.type)) is not None and cls.output_node
    ]


def topological_order(nodes: Mapping[str, NodeSpec]) -> list[str]:
    """Kahn's algorithm in the workflow's own node order (so the order is
    stable). Nodes on or behind a cycle are left out; links to missing
    nodes are ignored (validation reports them)."""
    indegree = dict.fromkeys(nodes, 0)
    consumers: dict[str, list[str]] = {}
    for node_id, spec in nodes.items():
        for link in spec.links().values():
            if link.node in indegree:
                indegree[node_id] += 1
                consumers.setdefault(link.node, []).append(node_id)
    return _kahn(indegree, consumers)


def _kahn(indegree: dict[str, int], consumers: dict[str, list[str]]) -> list[str]:
    ready = deque(n for n, d in indegree.items() if d == 0)
    order = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for consumer in consumers.get(node_id, ()):
            indegree[consumer] -= 1
            if indegree[consumer] == 0:
                ready.append(consumer)
    return order


def needed_order(workflow: Workflow, order: list[str], outputs: Iterable[str]) -> list[str]:
    """The nodes ``outputs`` depend on (and themselves), in ``order``."""
    nodes = workflow.nodes
    needed = set(outputs)
    for node_id in reversed(order):  # consumers come after their sources: one pass back suffices
        if node_id in needed:
            for link in nodes[node_id].links().values():
                needed.add(link.node)
    return [n for n in order if n in needed]


def validate(
    workflow: Workflow,
    registry: NodeRegistry,
    outputs: Iterable[str] | None = None,
    file_check: FileCheck | None = None,
) -> Checked:
    problems: list[Problem] = []
    nodes = workflow.nodes
    lookup = registry.get
    # The edges for the topological order are gathered on the same pass.
    indegree = dict.fromkeys(nodes, 0)
    consumers: dict[str, list[str]] = {}
    file_inputs: list[tuple[str, str, str, str]] = []
    for node_id, spec in nodes.items():
        for link in spec.links().values():
            if link.node in indegree:
                indegree[node_id] += 1
                consumers.setdefault(link.node, []).append(node_id)
        cls = lookup(spec.type)
        if cls is None:
            problems.append(Problem(f"unknown node type {spec.type!r}{_suggest(spec.type, registry.names())}",
                                    node=node_id, code="unknown_type"))
            continue
        before = len(problems)
        input_map = cls.input_map
        inputs = spec.inputs
        for name, value in inputs.items():
            decl = input_map.get(name)
            if decl is None:
                known = ", ".join(input_map) or "none"
                problems.append(Problem(f"{spec.type} has no input {name!r} (its inputs: {known})",
                                        node=node_id, input=name, code="unknown_input"))
            elif type(value) is Link:
                source = nodes.get(value.node)
                source_cls = lookup(source.type) if source is not None else None
                out = source_cls.output_map.get(value.output) if source_cls is not None else None
                if out is None or out.type != decl.type:  # the common case, a same-type link, is fine
                    problem = _check_link(nodes, lookup, value, decl.type)
                    if problem is not None:
                        message, code = problem
                        problems.append(Problem(message, node=node_id, input=name, code=code))
            elif value is None and not decl.required:
                continue  # explicit null = "use the default / leave unset"
            elif (message := decl.check_literal(value)) is not None:
                problems.append(Problem(message, node=node_id, input=name, code="bad_value"))
            elif decl.folder:
                missing = file_check(decl.folder, value) if file_check is not None else None
                if missing:
                    problems.append(Problem(missing, node=node_id, input=name, code="missing_file"))
                else:
                    file_inputs.append((node_id, name, decl.folder, value))
        for decl in cls.required_inputs:
            if decl.name not in inputs:
                what = f"a link from a {decl.type} output" if not decl.is_literal else f"a {decl.type} value"
                problems.append(Problem(f"required input is missing (needs {what})", node=node_id,
                                        input=decl.name, code="missing_input"))
        if (cls.has_input_checks or (cls.has_referenced_files and file_check is not None)) and len(problems) == before:
            literals = {}
            for decl in cls.inputs:
                value = inputs.get(decl.name)
                if decl.is_literal and not isinstance(value, Link) and (decl.name in inputs or decl.default is not REQUIRED):
                    literals[decl.name] = decl.value_or_default(value)
            if cls.has_input_checks:
                for input_name, message in cls.check_inputs(literals):
                    problems.append(Problem(message, node=node_id, input=input_name, code="bad_value"))
            if cls.has_referenced_files and file_check is not None:
                for input_name, folder, name in cls.referenced_files(literals, file_check):
                    if name is None:
                        continue
                    missing = file_check(folder, name)
                    if missing:
                        problems.append(Problem(missing, node=node_id, input=input_name, code="missing_file"))
                    else:
                        file_inputs.append((node_id, input_name, folder, name))

    order = _kahn(indegree, consumers)
    if len(order) < len(nodes):
        problems.extend(_cycles(workflow, set(order)))

    wanted = requested_outputs(workflow, registry, outputs)
    if not wanted:
        if nodes:
            problems.append(Problem("the workflow has no output node (e.g. SaveImage), so nothing would run",
                                    code="no_output"))
        else:
            problems.append(Problem("the workflow has no nodes", code="no_output"))
    for node_id in wanted:
        spec = nodes.get(node_id)
        if spec is None:
            problems.append(Problem("requested output node does not exist", node=node_id, code="no_output"))
            continue
        cls = registry.get(spec.type)
        if cls is not None and not cls.output_node:
            problems.append(Problem(f"{spec.type} is not an output node and cannot be requested as an output",
                                    node=node_id, code="no_output"))
    return Checked(problems, wanted, order, file_inputs)


def _check_link(nodes: Mapping[str, NodeSpec], lookup: Callable, link: Link, want: str) -> tuple[str, str] | None:
    source = nodes.get(link.node)
    if source is None:
        return f"links to node {link.node!r}, which does not exist", "dangling_link"
    source_cls = lookup(source.type)
    if source_cls is None:
        return None  # the unknown type is reported on the source node itself
    out = source_cls.output_map.get(link.output)
    if out is None:
        known = ", ".join(source_cls.output_map) or "none"
        return (f"links to output {link.output!r} of node {link.node!r} ({source.type}), which has no such "
                f"output (its outputs: {known})", "dangling_link")
    if not T.link_compatible(out.type, want):
        return f"type mismatch: expects {want} but {link.node!r}.{link.output} is {out.type}", "type_mismatch"
    return None


def build_graph(workflow: Workflow):
    """The workflow as a networkx DiGraph; edges run from producer to consumer."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    for node_id, spec in workflow.nodes.items():
        for link in spec.links().values():
            if link.node in workflow.nodes:
                graph.add_edge(link.node, node_id)
    return graph


def _cycles(workflow: Workflow, ordered: set[str]) -> list[Problem]:
    """Name each cycle (only called when the topological walk left nodes out)."""
    import networkx as nx

    graph = build_graph(workflow).subgraph(n for n in workflow.nodes if n not in ordered)
    problems = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            cycle = [u for u, _ in nx.find_cycle(graph.subgraph(component))]
            path = " -> ".join(cycle + [cycle[0]])
            problems.append(Problem(f"the graph has a cycle: {path}", node=cycle[0], code="cycle"))
    return problems


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
