"""An lcmgraph workflow -> ComfyUI's API format (what ComfyUI's /prompt runs).

Each node exports through the pack mapping that declares ``export`` for its
type. Nodes are exported from the output nodes back, sources first, so an
exporter that rewires its inputs (a sampler threading its negative prompt
through ControlNet nodes, as ComfyUI needs) sees them before anyone else.
Node ids are kept as the API prompt's keys; nodes ComfyUI needs but lcmgraph
does not (an empty negative prompt, ModelSamplingDiscrete) are added with
``_meta.lcmgraph_added``, and the importer drops them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import workflow as wf
from ..node import REQUIRED
from .api_format import is_link
from .convert import PLACEHOLDER_PREFIX
from .errors import ComfyExportError
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
        self._state[node_id] = "active"
        try:
            self._export(spec)
        except ConversionError as exc:
            self.problems.append((node_id, f"node {node_id!r} ({spec.type}): {exc}"))
            # Dependants would repeat the problem; they get a stand-in link.
            for out in _output_names(self.registry, spec):
                self._outputs.setdefault((node_id, out), [node_id, 0])
        finally:
            self._state[node_id] = "done"

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
    raw_nodes = document.get("nodes", {})
    titles = {k: v["title"] for k, v in raw_nodes.items() if isinstance(v, dict) and isinstance(v.get("title"), str)}
    ctx = ExportContext(workflow, titles, registry)
    is_output: Callable[[wf.NodeSpec], bool] = lambda s: bool(getattr(registry.get(s.type), "output_node", False))  # noqa: E731
    # Outputs first: their sources then export in dependency order (see the module docstring).
    ordered = sorted(workflow.nodes.values(), key=lambda s: not is_output(s))
    for spec in ordered:
        try:
            ctx.export_node(spec.id)
        except ConversionError as exc:
            ctx.problems.append((spec.id, f"node {spec.id!r} ({spec.type}): {exc}"))
    if ctx.problems:
        position = {node_id: i for i, node_id in enumerate(workflow.nodes)}  # the document's order
        raise ComfyExportError([p for _, p in sorted(ctx.problems, key=lambda p: position.get(p[0], 0))])
    for node in ctx.prompt.values():  # the format's own rule, checked once for every exporter
        for name, value in node["inputs"].items():
            if isinstance(value, list) and not is_link(value):
                raise ComfyExportError([f"input {name!r}: {value!r} would read as a link in ComfyUI"])
    return ctx.prompt
