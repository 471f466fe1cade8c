"""Validation before execution: every problem in a workflow, reported at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx

from . import types as T
from .node import REQUIRED
from .problems import Problem
from .registry import NodeRegistry
from .workflow import Link, Workflow

#: ``check(folder, name) -> sentence or None`` for inputs that name files.
FileCheck = Callable[[str, str], "str | None"]


def build_graph(workflow: Workflow) -> nx.DiGraph:
    """Edges run from the producing node to the consuming node."""
    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    for node_id, spec in workflow.nodes.items():
        for link in spec.links().values():
            if link.node in workflow.nodes:
                graph.add_edge(link.node, node_id)
    return graph


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


def validate(
    workflow: Workflow,
    registry: NodeRegistry,
    outputs: Iterable[str] | None = None,
    file_check: FileCheck | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    for node_id, spec in workflow.nodes.items():
        cls = registry.get(spec.type)
        if cls is None:
            problems.append(Problem(f"unknown node type {spec.type!r}{_suggest(spec.type, registry.names())}", node=node_id, code="unknown_type"))
            continue
        for name, value in spec.inputs.items():
            decl = cls.input_map.get(name)
            if decl is None:
                known = ", ".join(cls.input_map) or "none"
                problems.append(Problem(f"{spec.type} has no input {name!r} (its inputs: {known})", node=node_id, input=name, code="unknown_input"))
                continue
            if isinstance(value, Link):
                problems.extend(_check_link(workflow, registry, node_id, name, decl.type, value))
            elif value is None and not decl.required:
                continue  # explicit null = "use the default / leave unset"
            else:
                problem = decl.check_literal(value)
                if problem:
                    problems.append(Problem(problem, node=node_id, input=name, code="bad_value"))
                elif decl.folder and file_check is not None:
                    missing = file_check(decl.folder, value)
                    if missing:
                        problems.append(Problem(missing, node=node_id, input=name, code="missing_file"))
        for decl in cls.inputs:
            if decl.required and decl.name not in spec.inputs:
                what = f"a link from a {decl.type} output" if not decl.is_literal else f"a {decl.type} value"
                problems.append(Problem(f"required input is missing (needs {what})", node=node_id, input=decl.name, code="missing_input"))
        literals = {
            d.name: d.coerce(spec.inputs.get(d.name, d.default))
            for d in cls.inputs
            if d.is_literal and not isinstance(spec.inputs.get(d.name), Link)
            and (d.name in spec.inputs or d.default is not REQUIRED)
        }
        if not any(p.node == node_id for p in problems):
            for input_name, message in cls.check_inputs(literals):
                problems.append(Problem(message, node=node_id, input=input_name, code="bad_value"))

    graph = build_graph(workflow)
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            cycle = [u for u, _ in nx.find_cycle(graph.subgraph(component))]
            path = " -> ".join(cycle + [cycle[0]])
            problems.append(Problem(f"the graph has a cycle: {path}", node=cycle[0], code="cycle"))

    wanted = requested_outputs(workflow, registry, outputs)
    if not wanted:
        if workflow.nodes:
            problems.append(Problem("the workflow has no output node (e.g. SaveImage), so nothing would run", code="no_output"))
        else:
            problems.append(Problem("the workflow has no nodes", code="no_output"))
    for node_id in wanted:
        spec = workflow.nodes.get(node_id)
        if spec is None:
            problems.append(Problem("requested output node does not exist", node=node_id, code="no_output"))
            continue
        cls = registry.get(spec.type)
        if cls is not None and not cls.output_node:
            problems.append(Problem(f"{spec.type} is not an output node and cannot be requested as an output", node=node_id, code="no_output"))
    return problems


def _check_link(workflow: Workflow, registry: NodeRegistry, node_id: str, name: str, want: str, link: Link) -> list[Problem]:
    source = workflow.nodes.get(link.node)
    if source is None:
        return [Problem(f"links to node {link.node!r}, which does not exist", node=node_id, input=name, code="dangling_link")]
    source_cls = registry.get(source.type)
    if source_cls is None:
        return []  # the unknown type is reported on the source node itself
    out = source_cls.output_map.get(link.output)
    if out is None:
        known = ", ".join(source_cls.output_map) or "none"
        return [Problem(f"links to output {link.output!r} of node {link.node!r} ({source.type}), which has no such output (its outputs: {known})", node=node_id, input=name, code="dangling_link")]
    if not T.link_compatible(out.type, want):
        return [Problem(f"type mismatch: expects {want} but {link.node!r}.{link.output} is {out.type}", node=node_id, input=name, code="type_mismatch")]
    return []


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
