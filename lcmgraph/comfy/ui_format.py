"""ComfyUI's UI (litegraph) format, brought to the API form.

The UI format stores what the editor shows: nodes with ``widgets_values`` in
widget order (names come from the pack's mapping table), links as
``[id, origin_id, origin_slot, target_id, target_slot, type]`` or, in newer
files, objects with those keys; plus nodes that compute nothing. Those are
resolved here as ComfyUI's frontend does when it queues a prompt: reroutes
are followed, primitive nodes become the literal they hold, muted nodes
(mode 2) vanish, and bypassed nodes (mode 4) pass on their input of the
link's type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ComfyImportError
from .graph import ComfyGraph, ComfyNode, Ref
from .mapping import SEED_CONTROL, SEED_CONTROL_VALUES

SOURCE = "UI format"
MODE_MUTED, MODE_BYPASS = 2, 4
NOTE_TYPES = ("Note", "MarkdownNote")
REROUTE, PRIMITIVE = "Reroute", "PrimitiveNode"
MAX_HOPS = 10_000


@dataclass(frozen=True)
class _Link:
    origin: str
    slot: int
    type: Any


@dataclass(frozen=True)
class _Literal:
    value: Any


#: A link from a muted node, or a bypassed one with nothing to pass on: the input is dropped.
_DROPPED = object()


def read_ui(doc: dict, mappings: Mapping[str, Any], values: dict | None = None) -> ComfyGraph:
    """``values``: the API prompt saved beside the UI workflow (ComfyUI's PNGs
    carry both). Its literals are what ran; the widgets may already hold the
    next seed of a "randomize" or "increment" control."""
    return _Reader(doc, mappings).read(values)


class _Reader:
    def __init__(self, doc: dict, mappings: Mapping[str, Any]):
        self.doc = doc
        self.mappings = mappings
        self.problems: list[str] = []
        self.by_id: dict[str, dict] = {}
        for raw in doc.get("nodes") or []:
            if isinstance(raw, dict) and "id" in raw and isinstance(raw.get("type"), str):
                self.by_id[str(raw["id"])] = raw
            else:
                self.problems.append(f"not a node (a UI-format node has an id and a type): {str(raw)[:60]}")
        self.links = self._read_links(doc.get("links") or [])
        definitions = doc.get("definitions") if isinstance(doc.get("definitions"), dict) else {}
        self.subgraphs = {d.get("id"): d.get("name") or d.get("id")
                          for d in definitions.get("subgraphs") or [] if isinstance(d, dict)}
        extra = doc.get("extra") if isinstance(doc.get("extra"), dict) else {}
        self.group_nodes = set(extra.get("groupNodes") or {})

    def _read_links(self, raw_links: list) -> dict[Any, _Link]:
        links = {}
        for raw in raw_links:
            if isinstance(raw, list) and len(raw) >= 6:
                link_id, origin, slot, link_type = raw[0], raw[1], raw[2], raw[5]
            elif isinstance(raw, dict) and {"id", "origin_id", "origin_slot"} <= raw.keys():
                link_id, origin, slot, link_type = raw["id"], raw["origin_id"], raw["origin_slot"], raw.get("type")
            else:
                self.problems.append(f"not a link: {str(raw)[:60]}")
                continue
            links[link_id] = _Link(str(origin), int(slot), link_type)
        return links

    # -- following links ---------------------------------------------------
    def source(self, link_id: Any, hops: int = 0) -> Any:
        """What a link delivers: a Ref, a _Literal, _DROPPED, or None (a dangling link)."""
        link = self.links.get(link_id)
        origin = self.by_id.get(link.origin) if link else None
        if origin is None:
            return None
        if hops > MAX_HOPS:
            self.problems.append(f"node {link.origin}: reroutes or bypassed nodes form a loop")
            return None
        kind, mode = origin["type"], origin.get("mode", 0)
        if mode == MODE_MUTED:
            return _DROPPED
        if kind == REROUTE:
            slots = origin.get("inputs") or []
            return self.source(slots[0].get("link"), hops + 1) if slots else None
        if kind == PRIMITIVE:
            values = origin.get("widgets_values") or []
            return _Literal(values[0]) if values else None
        if mode == MODE_BYPASS:
            slots = origin.get("inputs") or []
            # ComfyUI's frontend: the input at the same slot if its type matches, else the first that does.
            for i in [link.slot, *range(len(slots))]:
                if i < len(slots) and slots[i].get("type") == link.type and slots[i].get("link") is not None:
                    return self.source(slots[i]["link"], hops + 1)
            return _DROPPED
        return Ref(link.origin, link.slot, self._output_name(origin, link.slot))

    @staticmethod
    def _output_name(origin: dict, slot: int) -> str | None:
        names = [o.get("name") if isinstance(o, dict) else None for o in origin.get("outputs") or []]
        if slot >= len(names) or not isinstance(names[slot], str):
            return None
        # Placeholders name their outputs; two outputs of one name get the index appended.
        return names[slot] if names.count(names[slot]) == 1 else f"{names[slot]}_{slot}"

    # -- nodes ---------------------------------------------------------------
    def read(self, values: dict | None) -> ComfyGraph:
        nodes: dict[str, ComfyNode] = {}
        notes: dict[str, str] = {}
        for node_id, raw in self.by_id.items():
            kind = raw["type"]
            if kind in NOTE_TYPES:
                texts = raw.get("widgets_values") or [""]
                notes[node_id] = str(texts[0])
                continue
            if kind in (REROUTE, PRIMITIVE) or raw.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
                continue
            nodes[node_id] = self._node(node_id, raw)
        if values:
            _take_values(nodes, values)
        if self.problems:
            raise ComfyImportError(self.problems)
        return ComfyGraph(nodes, SOURCE, ui=self._ui_extras(), notes=notes)

    def _node(self, node_id: str, raw: dict) -> ComfyNode:
        kind = raw["type"]
        node = ComfyNode(node_id, kind, title=raw.get("title") if isinstance(raw.get("title"), str) else None)
        if kind in self.subgraphs:
            node.meta["subgraph"] = self.subgraphs[kind]
        elif kind.partition(">")[2] in self.group_nodes or kind.partition("/")[2] in self.group_nodes:
            node.meta["group_node"] = kind
        node.layout = _layout(raw)
        outputs = raw.get("outputs") or []
        node.output_names = [o.get("name") for o in outputs if isinstance(o, dict)]
        widget_values = raw.get("widgets_values")
        mapping = self.mappings.get(kind)
        if isinstance(widget_values, dict):  # some packs save their widgets by name
            node.inputs.update(widget_values)
        elif isinstance(widget_values, list) and widget_values:
            if mapping is None:
                node.widgets = list(widget_values)
            else:
                node.inputs.update(self._widgets(node_id, kind, mapping.widgets, widget_values))
        for slot in raw.get("inputs") or []:
            if not isinstance(slot, dict) or slot.get("link") is None:
                continue
            widget = slot.get("widget") if isinstance(slot.get("widget"), dict) else {}
            name = widget.get("name") or slot.get("name")
            found = self.source(slot["link"])
            if found is _DROPPED:
                node.inputs.pop(name, None)
            elif isinstance(found, _Literal):
                node.inputs[name] = found.value
            elif found is not None:
                node.inputs[name] = found
        return node

    def _widgets(self, node_id: str, kind: str, names: tuple[str, ...], values: list) -> dict:
        out, i = {}, 0
        for name in names:
            if i >= len(values):
                break
            if name == SEED_CONTROL:
                if isinstance(values[i], str) and values[i] in SEED_CONTROL_VALUES:
                    i += 1
                continue
            out[name] = values[i]
            i += 1
        if i < len(values):
            # More values than known widgets: a ComfyUI version with other
            # widgets; reading them by position would misplace values.
            known = ", ".join(n for n in names if n != SEED_CONTROL)
            self.problems.append(
                f"node {node_id} ({kind}): {len(values)} widget values {values!r} do not fit its widgets ({known})")
        return out

    def _ui_extras(self) -> dict:
        ui: dict[str, Any] = {}
        groups = []
        for g in self.doc.get("groups") or []:
            bounding = g.get("bounding") if isinstance(g, dict) else None
            if isinstance(bounding, list) and len(bounding) == 4:
                groups.append({"title": str(g.get("title") or "Group"), "bounding": [float(b) for b in bounding]})
        if groups:
            ui["groups"] = groups
        extra = self.doc.get("extra") if isinstance(self.doc.get("extra"), dict) else {}
        ds = extra.get("ds") if isinstance(extra.get("ds"), dict) else {}
        offset = _pair(ds.get("offset"))
        if offset is not None and isinstance(ds.get("scale"), int | float):
            ui["view"] = {"offset": offset, "scale": float(ds["scale"])}
        return ui


def _pair(value: Any) -> list[float] | None:
    """[x, y], or older files' {"0": x, "1": y}."""
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return [float(value[0]), float(value[1])]
    return None


def _layout(raw: dict) -> dict:
    layout: dict[str, Any] = {}
    for key in ("pos", "size"):
        pair = _pair(raw.get(key))
        if pair is not None:
            layout[key] = pair
    flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else {}
    if flags.get("collapsed"):
        layout["collapsed"] = True
    if isinstance(raw.get("color"), str):
        layout["color"] = raw["color"]
    return layout


def _take_values(nodes: dict[str, ComfyNode], prompt: dict) -> None:
    for node_id, node in nodes.items():
        ran = prompt.get(node_id)
        if not isinstance(ran, dict) or ran.get("class_type") != node.class_type:
            continue
        for name, value in (ran.get("inputs") or {}).items():
            if not isinstance(value, list) and not isinstance(node.inputs.get(name), Ref):
                node.inputs[name] = value
        if node.widgets is not None and any(not isinstance(v, list) for v in (ran.get("inputs") or {}).values()):
            node.widgets = None  # the prompt named them
