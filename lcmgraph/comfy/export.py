"""An lcmgraph workflow -> ComfyUI's API format (what ComfyUI's /prompt runs).

Each node exports through the pack mapping that declares ``export`` for its
type. Nodes are exported from the output nodes back, sources first, so an
exporter that rewires its inputs (a sampler threading its negative prompt
through ControlNet nodes, as ComfyUI needs) sees them before anyone else.
That walk nests at most MAX_NESTING exporters deep, however long a chain of
nodes is (ExportContext.export_all). Cycles are named before anything is
exported, and so are literal values lcmgraph's validation refuses (a wrong
type, out of range): exporters only see values lcmgraph would run.
Node ids are kept as the API prompt's keys; nodes ComfyUI needs but lcmgraph
does not (an empty negative prompt, ModelSamplingDiscrete) are added with
``_meta.lcmgraph_added``, and the importer drops them again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .. import workflow as wf
from ..node import REQUIRED
from .api_format import is_link
from .convert import PLACEHOLDER_PREFIX
from .errors import ComfyExportError
from .graph import MAX_NODES, clip, show
from .mapping import ComfyMapping, ConversionError

ADDED = "lcmgraph_added"


class ExportContext:
    """What an ``export`` function uses to write its node(s)."""

    def __init__(self, workflow: wf.Workflow, titles: dict[str, str], registry):
        self.workflow = workflow
        self.titles = titles
        self.registry = registry
        self.prompt: dict[str, dict] = {}
        self.problems: list[tuple[str, str]] = []  # (node id, sentence)
        #: Scratch space for exporters (e.g. nodes they already wrote for others).
        self.memo: dict[str, Any] = {}
        self._outputs: dict[tuple[str, str], list] = {}
        self._state: dict[str, str] = {}  # node id -> "active" | "done"
        self._bad_values: dict[str, list[str]] | None = None  # validation's bad_value sentences, when needed
        self._depth = 0  # export_node calls under way, nested in each other's exporters
        self._exporters: dict[str, tuple[str, ComfyMapping]] = {}
        for class_type, mapping in registry.comfy_mappings().items():
            if not mapping.export:
                continue
            for node_type in (mapping.node, *mapping.export_types):
                if node_type:
                    self._exporters.setdefault(node_type, (class_type, mapping))

    # -- reading the lcmgraph node -------------------------------------------
    def spec(self, node_id: str) -> wf.NodeSpec:
        return self.workflow.nodes[node_id]

    def value(self, spec: wf.NodeSpec, name: str) -> Any:
        """The input as given, else its declared default (None when it has none)."""
        if name in spec.inputs:
            return spec.inputs[name]
        cls = self.registry.get(spec.type)
        for declared in getattr(cls, "inputs", ()):
            if declared.name == name:
                return None if declared.default is REQUIRED else declared.default
        return None

    def default(self, node_type: str, name: str) -> Any:
        for declared in getattr(self.registry.get(node_type), "inputs", ()):
            if declared.name == name:
                return None if declared.default is REQUIRED else declared.default
        return None

    def source(self, value: Any) -> wf.NodeSpec | None:
        """The lcmgraph node a link comes from."""
        return self.workflow.nodes.get(value.node) if isinstance(value, wf.Link) else None

    # -- writing ComfyUI nodes -----------------------------------------------
    def ref(self, value: Any) -> Any:
        """A literal as ComfyUI's API format writes it, or a link as [comfy_id, output_index]."""
        if not isinstance(value, wf.Link):
            if isinstance(value, list):
                raise ConversionError(f"the list {value!r} cannot be written in ComfyUI's API format "
                                      "(ComfyUI reads every list as a link)")
            return value
        self.export_node(value.node)
        found = self._outputs.get((value.node, value.output))
        if found is None:
            source = self.workflow.nodes.get(value.node)
            if source is not None and source.type.startswith(PLACEHOLDER_PREFIX):
                index = value.output.removeprefix("output_")
                if index.isdigit():
                    return [value.node, int(index)]
            raise ConversionError(f"output {value.output!r} of node {value.node!r} has no ComfyUI equivalent")
        return list(found)

    def unique_id(self, base: str) -> str:
        if base not in self.prompt and base not in self.workflow.nodes:
            return base
        n = 2
        while f"{base}.{n}" in self.prompt or f"{base}.{n}" in self.workflow.nodes:
            n += 1
        return f"{base}.{n}"

    def emit(self, comfy_id: str, class_type: str, inputs: dict, title: str | None = None, added: bool = False) -> str:
        meta: dict[str, Any] = {"title": title or self.display_name(class_type)}
        if added:
            meta[ADDED] = True
        self.prompt[comfy_id] = {"class_type": class_type, "inputs": inputs, "_meta": meta}
        return comfy_id

    def expose(self, node_id: str, output: str, comfy_id: str, index: int) -> None:
        """lcmgraph output ``node_id.output`` is ComfyUI's ``[comfy_id, index]``."""
        self._outputs[(node_id, output)] = [comfy_id, index]

    def title(self, node_id: str) -> str | None:
        return self.titles.get(node_id)

    def display_name(self, class_type: str) -> str:
        mapping = self.registry.comfy_mappings().get(class_type)
        return (mapping.title if mapping and mapping.title else class_type)

    def claim(self, node_id: str) -> None:
        """Mark a node as written by another node's exporter."""
        self._state[node_id] = "done"

    def is_done(self, node_id: str) -> bool:
        return self._state.get(node_id) == "done"

    # -- driving ---------------------------------------------------------------
    def export_node(self, node_id: str) -> None:
        state = self._state.get(node_id)
        if state == "done":
            return
        if state == "active":
            raise ConversionError(f"node {node_id!r} is part of a cycle")
        spec = self.workflow.nodes.get(node_id)
        if spec is None:
            raise ConversionError(f"links to node {node_id!r}, which is not in the workflow")
        if self._depth >= MAX_NESTING:
            raise _TooDeep(node_id)
        self._state[node_id] = "active"
        self._depth += 1
        try:
            self._export(spec)
        except ConversionError as exc:
            self.fail(node_id, f"node {node_id!r} ({spec.type}): {exc}")
        except Exception as exc:  # noqa: BLE001 - a pack's exporter tripping over odd values is the workflow's problem
            self.fail(node_id, *self._unexportable(spec, exc))
        finally:
            self._depth -= 1
            self._state[node_id] = "done"

    def export_all(self, node_ids: list[str], height: dict[str, int]) -> None:
        """Export these nodes (and what they need), each as ``export_node`` would.

        ``export_node`` exports a node's sources on demand, from inside its
        exporter: a chain of nodes nests as deep as it is long. Past
        MAX_NESTING levels the export unwinds (``_TooDeep``), everything the
        unfinished exporters wrote is undone, the deep source is exported
        first, and the export is tried again, now stopping where the source
        is already done. No recursion deeper than MAX_NESTING, and graphs of
        ordinary depth (``height`` below MAX_NESTING) export in exactly the
        order of one recursive walk."""
        for node_id in node_ids:
            pending = [node_id]
            while pending:
                target = pending[-1]
                if self.is_done(target):
                    pending.pop()
                    continue
                saved = self._save() if height.get(target, 0) >= MAX_NESTING else None
                try:
                    self.export_node(target)
                except _TooDeep as deeper:
                    if saved is None:  # an exporter that exports nodes its node does not depend on
                        self._depth = 0
                        self.fail(target, f"node {target!r} ({self.workflow.nodes[target].type}): its export "
                                          f"nests deeper than {MAX_NESTING} nodes through nodes it does not "
                                          "depend on")
                        pending.pop()
                        continue
                    self._restore(saved)
                    pending.append(deeper.node_id)
                    continue
                except ConversionError as exc:
                    spec = self.workflow.nodes[target]
                    self.problems.append((target, f"node {target!r} ({spec.type}): {exc}"))
                pending.pop()

    def _save(self) -> tuple:
        return (dict(self.prompt), len(self.problems), copy.deepcopy(self.memo), dict(self._outputs),
                dict(self._state))

    def _restore(self, saved: tuple) -> None:
        prompt, problems, memo, outputs, state = saved
        self.prompt.clear()
        self.prompt.update(prompt)
        del self.problems[problems:]
        self.memo.clear()
        self.memo.update(memo)
        self._outputs, self._state, self._depth = outputs, state, 0

    def fail(self, node_id: str, *problems: str) -> None:
        """Record why a node cannot be exported; its dependants get a stand-in
        link (they would only repeat the problem)."""
        self.problems.extend((node_id, p) for p in problems)
        spec = self.workflow.nodes.get(node_id)
        for out in _output_names(self.registry, spec) if spec is not None else ():
            self._outputs.setdefault((node_id, out), [node_id, 0])
        self._state[node_id] = "done"

    def bad_values(self) -> dict[str, list[str]]:
        """Node id -> validation's sentences about its literal values (a
        wrong type, out of range): what lcmgraph would refuse to run, and what
        exporters need not expect (a steps of 1.5 kept one computing forever)."""
        if self._bad_values is None:
            from ..validation import validate

            self._bad_values = {}
            try:
                problems = validate(self.workflow, self.registry).problems
            except Exception:  # noqa: BLE001 - a validator bug must not stop the export; exporters still check
                problems = []
            for p in problems:
                if p.code == "bad_value" and p.node:
                    self._bad_values.setdefault(p.node, []).append(f"node {p.node!r} input {p.input!r}: {p.message}")
        return self._bad_values

    def _unexportable(self, spec: wf.NodeSpec, exc: Exception) -> list[str]:
        """Sentences for an exporter that raised something else than ConversionError."""
        return [f"node {spec.id!r} ({spec.type}): its values cannot be exported ({type(exc).__name__}: "
                f"{clip(str(exc))})"]

    def _export(self, spec: wf.NodeSpec) -> None:
        if spec.type.startswith(PLACEHOLDER_PREFIX):
            _export_placeholder(self, spec)
            return
        found = self._exporters.get(spec.type)
        if found is None:
            known = "unknown node type" if self.registry.get(spec.type) is None else "lcmgraph node type"
            raise ConversionError(f"{known} {spec.type!r} has no ComfyUI equivalent")
        class_type, mapping = found
        if callable(mapping.export):
            mapping.export(self, spec)
        else:
            default_export(self, spec, class_type, mapping)


def default_export(ctx: ExportContext, spec: wf.NodeSpec, class_type: str, mapping: ComfyMapping,
                   extra: dict | None = None, drop: tuple[str, ...] = ()) -> str:
    """The inverse of the default conversion. An lcmgraph input ComfyUI's class
    lacks may only hold its default (anything else would be lost), unless the
    caller ``drop``s it knowingly."""
    reverse = {ours: theirs for theirs, ours in mapping.inputs.items()}
    inputs: dict[str, Any] = {}
    for declared in ctx.registry.get(spec.type).inputs:
        value = ctx.value(spec, declared.name)
        theirs = reverse.get(declared.name)
        if theirs is None:
            if declared.name not in drop and declared.name in spec.inputs and value != ctx.default(spec.type, declared.name):
                raise ConversionError(f"input {declared.name!r} = {value!r} has no equivalent in ComfyUI's {class_type}")
            continue
        if value is not None:
            inputs[theirs] = ctx.ref(value)
    inputs.update(extra or {})
    ctx.emit(spec.id, class_type, inputs, ctx.title(spec.id))
    for index, name in enumerate(mapping.outputs):
        if isinstance(name, str):
            ctx.expose(spec.id, name, spec.id, index)
    return spec.id


def _export_placeholder(ctx: ExportContext, spec: wf.NodeSpec) -> None:
    if "widgets_values" in spec.inputs:
        raise ConversionError("a placeholder read from ComfyUI's UI format keeps its widget values without "
                              "names, which the API format needs")
    inputs = {name: ctx.ref(value) for name, value in spec.inputs.items()}
    ctx.emit(spec.id, spec.type.removeprefix(PLACEHOLDER_PREFIX), inputs, ctx.title(spec.id))


def _output_names(registry, spec: wf.NodeSpec) -> list[str]:
    cls = registry.get(spec.type)
    return [o.name for o in getattr(cls, "outputs", ())]


def export(document: Any, registry) -> dict:
    workflow, problems = wf.parse(document)
    if problems:
        raise ComfyExportError([p.message if not p.node else f"node {p.node!r}: {p.message}" for p in problems])
    if len(workflow.nodes) > MAX_NODES:
        raise ComfyExportError([f"the workflow has {len(workflow.nodes)} nodes; lcmgraph exports at most {MAX_NODES}"])
    raw_nodes = document.get("nodes", {})
    titles = {k: v["title"] for k, v in raw_nodes.items() if isinstance(v, dict) and isinstance(v.get("title"), str)}
    ctx = ExportContext(workflow, titles, registry)
    for first, problem, members in _cycles(workflow):
        ctx.fail(first, problem)
        for node_id in members:
            ctx.fail(node_id)
    for node_id, sentences in ctx.bad_values().items():
        ctx.fail(node_id, *sentences)
    height = _heights(workflow, ctx.is_done)
    is_output: Callable[[wf.NodeSpec], bool] = lambda s: bool(getattr(registry.get(s.type), "output_node", False))  # noqa: E731
    # Outputs first: their sources then export in dependency order (see the module docstring).
    ordered = sorted(workflow.nodes.values(), key=lambda s: not is_output(s))
    ctx.export_all([s.id for s in ordered], height)
    position = {node_id: i for i, node_id in enumerate(workflow.nodes)}  # the document's order
    for comfy_id, node in ctx.prompt.items():  # the format's own rule, checked once for every exporter
        for name, value in node["inputs"].items():
            if isinstance(value, list) and not is_link(value):
                owner = comfy_id if comfy_id in position else comfy_id.rpartition(".")[0]
                ctx.problems.append((owner, f"node {comfy_id!r} input {name!r}: {show(value, 200)} would read as a "
                                            "link in ComfyUI"))
    if ctx.problems:
        raise ComfyExportError([p for _, p in sorted(ctx.problems, key=lambda p: position.get(p[0], 0))])
    return ctx.prompt


#: The deepest export_node calls nest in each other (see ExportContext.export_all).
MAX_NESTING = 48


class _TooDeep(BaseException):
    """Unwinds an export nested MAX_NESTING deep, to export ``node_id`` first.
    A BaseException, so that no exporter's ``except Exception`` stops it."""

    def __init__(self, node_id: str):
        super().__init__(node_id)
        self.node_id = node_id


def _heights(workflow: wf.Workflow, skip: Callable[[str], bool]) -> dict[str, int]:
    """The longest chain of links behind each node (0 without linked inputs)."""
    nodes, height = workflow.nodes, {}
    for node_id in _topological(workflow, skip):
        sources = [height[link.node] for link in nodes[node_id].links().values() if link.node in height]
        height[node_id] = 1 + max(sources) if sources else 0
    return height


def _topological(workflow: wf.Workflow, skip: Callable[[str], bool]) -> list[str]:
    """Kahn's order of the nodes not skipped; links to skipped or missing nodes are ignored."""
    from ..validation import _kahn

    indegree = {node_id: 0 for node_id in workflow.nodes if not skip(node_id)}
    consumers: dict[str, list[str]] = {}
    for node_id in indegree:
        for link in workflow.nodes[node_id].links().values():
            if link.node in indegree:
                indegree[node_id] += 1
                consumers.setdefault(link.node, []).append(node_id)
    return _kahn(indegree, consumers)


def _cycles(workflow: wf.Workflow) -> list[tuple[str, str, set[str]]]:
    """(a node, the problem naming the cycle, the nodes on it) for each cycle of the graph."""
    if len(_topological(workflow, skip=lambda _: False)) == len(workflow.nodes):
        return []
    import networkx as nx

    from ..validation import build_graph

    graph = build_graph(workflow)
    position = {node_id: i for i, node_id in enumerate(workflow.nodes)}
    found = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            cycle = [u for u, _ in nx.find_cycle(graph.subgraph(component))]
            start = min(range(len(cycle)), key=lambda i: position[cycle[i]])  # from the first in the document
            cycle = cycle[start:] + cycle[:start]
            path = " -> ".join(cycle[:20] + [cycle[0]]) if len(cycle) <= 20 else \
                " -> ".join(cycle[:10]) + f" -> ... ({len(cycle) - 10} more) -> {cycle[0]}"
            first = cycle[0]
            problem = f"node {first!r} ({workflow.nodes[first].type}): the graph has a cycle: {path}"
            found.append((first, problem, component))
    return found
