"""A ComfyUI workflow (graph.ComfyGraph) -> an lcmgraph workflow document.

Each node converts through its class's entry in the packs' COMFY_MAPPINGS;
then its ComfyUI links become lcmgraph links, following pass-through
outputs (``Through``) to what they pass on. ComfyUI node ids are kept, so
messages, ``--set 3.seed=...`` and the ComfyUI file all name the same nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..workflow import FORMAT, NODE_ID, VERSION
from .errors import ALLOW_MISSING_HINT, ComfyImportError
from .graph import MAX_NODES, ComfyGraph, ComfyNode, Ref, clip, id_order, show
from .mapping import ComfyMapping, ConversionError, Converted, Through, default_convert
from .widgets import frontend_only

#: Unknown ComfyUI classes kept with --allow-missing become nodes of this type
#: prefix, which no pack registers: the editor shows them as missing, and a
#: ComfyUI class named like an lcmgraph node cannot be mistaken for it.
PLACEHOLDER_PREFIX = "comfy:"
#: lcmgraph's value nodes (the core pack's): ``ImportContext.constant`` reads through them.
VALUE_NODES = frozenset({"Int", "Float", "String", "Boolean"})
_OMIT = object()
_MISSING = object()


class ImportContext:
    """What a ``convert`` function may ask beyond its own node."""

    def __init__(self, graph: ComfyGraph, mappings: Mapping[str, ComfyMapping]):
        self.graph = graph
        self.mappings = mappings
        self.notes: list[str] = []
        self.current: ComfyNode | None = None

    def node(self, ref: Any) -> ComfyNode | None:
        """The ComfyUI node a link comes from (None for a literal or a missing node)."""
        return self.graph.nodes.get(ref.node) if isinstance(ref, Ref) else None

    def literal(self, node: ComfyNode, name: str, default: Any = _MISSING) -> Any:
        """An input that must be a literal for the conversion to compute with it."""
        value = node.inputs.get(name, default)
        if value is _MISSING:
            raise ConversionError(f"input {name!r} is missing")
        if isinstance(value, Ref):
            raise ConversionError(f"input {name!r} must be a value, not a link from node {value.node}, "
                                  "for lcmgraph to convert it")
        return value

    def constant(self, node: ComfyNode, name: str, default: Any = _MISSING) -> Any:
        """Like ``literal``, but an input linked from a value node (PrimitiveInt and
        the like: a node whose conversion is one of VALUE_NODES with a literal
        ``value``) gives that value, for the conversion to compute with; the
        caller keeps the link where it passes the value on unchanged."""
        value = node.inputs.get(name, default)
        if isinstance(value, Ref):
            found = self._value_of(value)
            if found is not _MISSING:
                return found
        return self.literal(node, name, default)

    def _value_of(self, ref: Ref) -> Any:
        source = self.graph.nodes.get(ref.node)
        mapping = self.mappings.get(source.class_type) if source is not None else None
        if mapping is None or mapping.node not in VALUE_NODES:
            return _MISSING
        current = self.current
        try:
            result = mapping.convert(self, source) if mapping.convert else default_convert(mapping, source.inputs)
        except ConversionError:
            return _MISSING
        finally:
            self.current = current
        value = result.inputs.get("value", _MISSING)
        if result.type not in VALUE_NODES or result.outputs.get(ref.index) != "value" or isinstance(value, Ref):
            return _MISSING
        return value

    def note(self, text: str) -> None:
        """A semantic difference worth telling the user (kept in meta.comfy_import.notes)."""
        node = self.current
        self.notes.append(f"node {node.id} ({node.class_type}): {text}" if node else text)


def convert(graph: ComfyGraph, mappings: Mapping[str, ComfyMapping], allow_missing: bool = False) -> dict:
    if len(graph.nodes) > MAX_NODES:
        raise ComfyImportError([f"the workflow has {len(graph.nodes)} nodes; lcmgraph imports at most {MAX_NODES}"])
    ctx = ImportContext(graph, mappings)
    ctx.notes.extend(graph.import_notes)
    order = sorted(graph.nodes, key=id_order)
    results: dict[str, Converted] = {}
    placeholders: dict[str, ComfyNode] = {}
    problems: list[tuple[tuple, str]] = []
    for node_id in order:
        node = graph.nodes[node_id]
        if not NODE_ID.match(node_id):
            problems.append((id_order(node_id), f"node {show(node_id)}: not a usable node id (1-64 letters, digits, _ . : -)"))
            continue
        mapping = mappings.get(node.class_type)
        if mapping is None:
            placeholders[node_id] = node
            if not allow_missing:
                problems.append((id_order(node_id), _unknown(node)))
            else:
                ctx.notes.append(f"node {node_id}: ComfyUI node type {node.class_type!r} is kept as a placeholder; "
                                 "replace it before running")
            continue
        ctx.current = node
        for name in frontend_only(node.class_type):  # upload buttons, control_after_generate
            node.inputs.pop(name, None)
        try:
            result = mapping.convert(ctx, node) if mapping.convert else default_convert(mapping, node.inputs)
        except ConversionError as exc:
            problems.append((id_order(node_id), f"node {node_id} ({node.class_type}): {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - a pack's converter tripping over odd values is the file's problem
            problems.append((id_order(node_id), f"node {node_id} ({node.class_type}): its values cannot be "
                                                f"converted ({type(exc).__name__}: {clip(str(exc))})"))
            continue
        if not isinstance(result, Converted):
            problems.append((id_order(node_id), f"node {node_id} ({node.class_type}): the pack's conversion "
                                                f"returned {type(result).__name__}, not a Converted"))
            continue
        results[node_id] = result
    if problems:
        unknown = any(node_id in placeholders for node_id in graph.nodes) and not allow_missing
        raise ComfyImportError([p for _, p in sorted(problems, key=lambda p: p[0])],
                               hint=ALLOW_MISSING_HINT if unknown else "")
    return _Builder(graph, mappings, results, placeholders, ctx.notes).build(order)


def _unknown(node: ComfyNode) -> str:
    if "subgraph" in node.meta:
        return (f"node {node.id}: a ComfyUI subgraph ({node.meta['subgraph']!r}) whose definition has no nodes "
                "to expand")
    if "group_node" in node.meta:
        return f"node {node.id}: a ComfyUI group node ({node.class_type!r}) whose definition has no nodes to expand"
    return f"node {node.id}: ComfyUI node type {node.class_type!r} has no lcmgraph equivalent"


class _Builder:
    def __init__(self, graph, mappings, results, placeholders, notes):
        self.graph: ComfyGraph = graph
        self.mappings = mappings
        self.results: dict[str, Converted] = results
        self.placeholders: dict[str, ComfyNode] = placeholders
        self.notes: list[str] = notes
        self.problems: list[str] = []

    def build(self, order: list[str]) -> dict:
        nodes: dict[str, dict] = {}
        for node_id in order:
            node = self.graph.nodes[node_id]
            if node_id in self.placeholders:
                inputs = self._inputs(node_id, node.inputs)
                if node.widgets is not None:
                    inputs["widgets_values"] = node.widgets
                entry = {"type": PLACEHOLDER_PREFIX + node.class_type, "inputs": inputs}
            else:
                result = self.results[node_id]
                if result.type is None:
                    continue
                entry = {"type": result.type, "inputs": self._inputs(node_id, result.inputs)}
            title = self._title(node)
            if title:
                entry["title"] = title
            nodes[node_id] = entry
        if self.problems:
            raise ComfyImportError(self.problems)
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "nodes": nodes}
        comfy: dict[str, Any] = {"from": f"ComfyUI {self.graph.source}"}
        if self.notes:
            comfy["notes"] = self.notes
        if self.graph.notes:
            comfy["note_nodes"] = dict(self.graph.notes)
        doc["meta"] = {"comfy_import": comfy}
        layout = {i: dict(self.graph.nodes[i].layout) for i in nodes if self.graph.nodes[i].layout}
        if layout or self.graph.ui:
            doc["ui"] = {"nodes": layout, **self.graph.ui}
        return doc

    def _title(self, node: ComfyNode) -> str | None:
        mapping = self.mappings.get(node.class_type)
        defaults = {node.id, node.class_type, mapping.title if mapping else ""}
        return node.title if node.title and node.title not in defaults else None

    def _inputs(self, node_id: str, inputs: Mapping[str, Any]) -> dict:
        out = {}
        for name, value in inputs.items():
            resolved = self._resolve(node_id, name, value)
            if resolved is not _OMIT:
                out[name] = resolved
        return out

    def _resolve(self, node_id: str, name: str, value: Any) -> Any:
        """A ComfyUI input as an lcmgraph input: a literal, or a link followed
        through pass-through outputs (iteratively) to the node that computes it."""
        where = f"node {node_id} input {name!r}"
        passed: dict[str, None] = {}  # pass-through nodes on the way (ordered), to name a loop
        while True:
            if not isinstance(value, Ref):
                return {"value": value} if isinstance(value, dict) else value
            source = self.graph.nodes.get(value.node)
            if source is None:
                self.problems.append(f"{where}: links to node {value.node}, which is not in the workflow")
                return _OMIT
            if value.node in self.placeholders:
                return {"link": [value.node, value.name or f"output_{value.index}"]}
            if value.node in passed:
                way = list(passed)
                loop = " -> ".join([*way[way.index(value.node):], value.node])
                self.problems.append(f"{where}: pass-through nodes form a loop ({loop})")
                return _OMIT
            result = self.results[value.node]
            output = result.outputs.get(value.index)
            if output is None:
                if result.type is None and not result.outputs:
                    return _OMIT  # a node the conversion dropped: the input takes its default
                self.problems.append(f"{where}: node {value.node} ({source.class_type}) has no output {value.index}")
                return _OMIT
            if isinstance(output, Through):
                if output.input not in source.inputs:
                    return _OMIT
                passed[value.node] = None
                value = source.inputs[output.input]
                continue
            if result.type is None:
                self.problems.append(f"{where}: node {value.node} ({source.class_type}) makes no lcmgraph node")
                return _OMIT
            return {"link": [value.node, output]}
