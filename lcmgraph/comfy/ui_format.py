"""ComfyUI's UI (litegraph) format, brought to the API form.

The UI format stores what the editor shows: nodes with ``widgets_values`` in
widget order (names come from the pack's mapping table), links as
``[id, origin_id, origin_slot, target_id, target_slot, type]`` or, in newer
files, objects with those keys; plus nodes that compute nothing. Those are
resolved here as ComfyUI's frontend does when it queues a prompt: reroutes
are followed, primitive nodes become the literal it holds, muted nodes
(mode 2) vanish, and bypassed nodes (mode 4) pass on their input of the
link's type.

The file is read in two steps. First every structure that carries meaning
(nodes, ids, types, modes, input slots, links, widget values, group-node and
subgraph definitions) is checked and read into typed records; each
malformed one is a problem naming the node or link and the field. Layout
(positions, sizes, colours, groups, the canvas view) is decoration: what is
malformed there is left out. Then links are followed, iteratively, however
long a chain of reroutes or bypassed nodes is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ComfyImportError
from .expand import expand
from .graph import MAX_NODES, ComfyGraph, ComfyNode, Ref, clip, described, is_id, kind, show
from .widgets import read_widgets, widget_layout

SOURCE = "UI format"
MODE_MUTED, MODE_BYPASS = 2, 4
NOTE_TYPES = ("Note", "MarkdownNote")
REROUTE, PRIMITIVE = "Reroute", "PrimitiveNode"
LINK_KEYS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")


@dataclass(frozen=True)
class _Link:
    origin: str
    slot: int
    type: Any


@dataclass(frozen=True)
class _Slot:
    """One entry of a node's ``inputs``: its name (the widget's, for a
    converted widget), the link id feeding it (a str), and its type."""

    name: str | None
    link: str | None
    type: Any


@dataclass
class _UINode:
    id: str
    type: str
    mode: int
    raw: dict
    inputs: list[_Slot] = field(default_factory=list)
    output_names: list[str | None] = field(default_factory=list)
    widgets: list | dict | None = None


@dataclass(frozen=True)
class _Literal:
    value: Any


#: A link from a muted node, or a bypassed one with nothing to pass on: the input is dropped.
_DROPPED = object()


def read_ui(doc: dict, mappings: Mapping[str, Any], values: dict | None = None) -> ComfyGraph:
    """``values``: the API prompt saved beside the UI workflow (ComfyUI's PNGs
    carry both). Its literals are what ran; the widgets may already hold the
    next seed of a "randomize" or "increment" control."""
    doc, notes = expand(doc)
    reader = _Reader(doc, mappings)
    reader.notes.extend(notes)
    return reader.read(values)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Reader:
    def __init__(self, doc: dict, mappings: Mapping[str, Any]):
        self.doc = doc
        self.mappings = mappings
        self.problems: list[str] = []
        self.notes: list[str] = []
        raw_nodes = doc.get("nodes")
        raw_links = doc.get("links")
        if not isinstance(raw_nodes, list):
            raise ComfyImportError([f'"nodes" must be an array of nodes, got {kind(raw_nodes)}'])
        if raw_links is not None and not isinstance(raw_links, list):
            raise ComfyImportError([f'"links" must be an array of links, got {kind(raw_links)}'])
        raw_links = raw_links or []
        if len(raw_nodes) > MAX_NODES or len(raw_links) > 4 * MAX_NODES:
            raise ComfyImportError([f"the workflow has {len(raw_nodes)} nodes and {len(raw_links)} links; lcmgraph "
                                    f"imports at most {MAX_NODES} nodes and {4 * MAX_NODES} links"])
        self.by_id: dict[str, _UINode] = {}
        for index, raw in enumerate(raw_nodes):
            node = self._read_node(index, raw)
            if node is not None:
                self.by_id[node.id] = node
        self.links = self._read_links(raw_links)
        self.subgraphs = self._read_subgraphs()
        self.group_nodes = self._read_group_nodes()
        self._loops: set[str] = set()

    # -- reading the structures ----------------------------------------------
    def _read_node(self, index: int, raw: Any) -> _UINode | None:
        where = f"nodes[{index}]"
        if not isinstance(raw, dict):
            self.problems.append(f"{where}: not a node (a UI-format node is an object with an id and a type), "
                                 f"got {kind(raw)}")
            return None
        if not is_id(raw.get("id")):
            got = described(raw["id"]) if "id" in raw else "none"
            self.problems.append(f'{where}: "id" must be an integer or a string, got {got}')
            return None
        node_id = str(raw["id"])
        where = f"node {node_id}"
        node_type = raw.get("type")
        if not isinstance(node_type, str) or not node_type:
            got = described(node_type) if "type" in raw else "none"
            self.problems.append(f'{where}: "type" must be the node\'s class name (a string), got {got}')
            return None
        where = f"node {node_id} ({clip(node_type, 80)})"
        if node_id in self.by_id:
            self.problems.append(f"{where}: the id {node_id} is used by more than one node")
            return None
        mode = raw.get("mode", 0)
        if _int(mode) is None:
            self.problems.append(f'{where}: "mode" must be an integer, got {described(mode)}')
            return None
        node = _UINode(node_id, node_type, mode, raw)
        slots = raw.get("inputs")
        if slots is not None and not isinstance(slots, list):
            self.problems.append(f'{where}: "inputs" must be an array of input slots, got {kind(slots)}')
            slots = []
        for i, slot in enumerate(slots or []):
            if not isinstance(slot, dict):
                self.problems.append(f"{where}: inputs[{i}] must be an object (an input slot), got {kind(slot)}")
                continue
            widget = slot.get("widget") if isinstance(slot.get("widget"), dict) else {}
            name = widget.get("name") if isinstance(widget.get("name"), str) else slot.get("name")
            name = name if isinstance(name, str) and name else None
            link = slot.get("link")
            if link is not None and not is_id(link):
                label = f"input {name!r}" if name else f"inputs[{i}]"
                self.problems.append(f'{where} {label}: "link" must be a link id (an integer) or null, '
                                     f"got {described(link)}")
                continue
            node.inputs.append(_Slot(name, None if link is None else str(link), slot.get("type")))
        outputs = raw.get("outputs")
        if outputs is not None and not isinstance(outputs, list):
            self.problems.append(f'{where}: "outputs" must be an array of output slots, got {kind(outputs)}')
            outputs = []
        node.output_names = [o.get("name") if isinstance(o, dict) and isinstance(o.get("name"), str) else None
                             for o in outputs or []]
        widgets = raw.get("widgets_values")
        if widgets is not None and not isinstance(widgets, list | dict):
            self.problems.append(f'{where}: "widgets_values" must be an array, got {described(widgets)}')
        else:
            node.widgets = widgets
        return node

    def _read_links(self, raw_links: list) -> dict[str, _Link]:
        links: dict[str, _Link] = {}
        for index, raw in enumerate(raw_links):
            if isinstance(raw, list) and len(raw) >= 6:
                link_id, origin, slot, link_type = raw[0], raw[1], raw[2], raw[5]
            elif isinstance(raw, dict) and {"id", "origin_id", "origin_slot"} <= raw.keys():
                link_id, origin, slot, link_type = raw["id"], raw["origin_id"], raw["origin_slot"], raw.get("type")
            elif raw is None:
                continue  # litegraph leaves null where a link was removed
            else:
                self.problems.append(f"links[{index}]: not a link (an array [{', '.join(LINK_KEYS)}] or an object "
                                     f"with those keys), got {described(raw)}")
                continue
            if not is_id(link_id):
                self.problems.append(f"links[{index}]: the link id must be an integer, got {described(link_id)}")
                continue
            where = f"link {link_id}"
            if not is_id(origin):
                self.problems.append(f"{where}: origin_id must be a node id, got {described(origin)}")
                continue
            if _int(slot) is None or slot < 0:
                self.problems.append(f"{where}: origin_slot must be an output index (0 or more), "
                                     f"got {described(slot)}")
                continue
            link = _Link(str(origin), slot, link_type)
            if links.setdefault(str(link_id), link) != link:
                self.problems.append(f"{where}: listed twice, with different ends")
        return links

    def _read_subgraphs(self) -> dict[str, str]:
        definitions = self.doc.get("definitions")
        if definitions is None:
            return {}
        entries = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        if not isinstance(definitions, dict) or not isinstance(entries, list | type(None)):
            self.problems.append('"definitions" must be an object with a "subgraphs" array')
            return {}
        subgraphs = {}
        for index, entry in enumerate(entries or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                self.problems.append(f'definitions.subgraphs[{index}]: a subgraph is an object with an "id" string, '
                                     f"got {described(entry)}")
                continue
            name = entry.get("name")
            subgraphs[entry["id"]] = name if isinstance(name, str) and name else entry["id"]
        return subgraphs

    def _read_group_nodes(self) -> set[str]:
        extra = self.doc.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        if groups is None:
            return set()
        if not isinstance(groups, dict):
            self.problems.append(f"extra.groupNodes must be an object mapping group node names to their "
                                 f"definitions, got {described(groups)}")
            return set()
        return set(groups)

    # -- following links ---------------------------------------------------
    def source(self, link_id: str, where: str) -> Any:
        """What a link delivers: a Ref, a _Literal, _DROPPED, or None (nothing:
        a dangling link, an unconnected reroute, a loop). Iterative, however
        many reroutes and bypassed nodes are in the way."""
        seen: set[str] = set()
        while True:
            link = self.links.get(link_id)
            origin = self.by_id.get(link.origin) if link else None
            if origin is None:
                what = (f"link {link_id} is not in the workflow's links" if link is None
                        else f"link {link_id} comes from node {link.origin}, which is not in the workflow")
                self.notes.append(f"{where}: {what}; the input is left unconnected, as in ComfyUI")
                return None
            if origin.id in seen:
                if origin.id not in self._loops:
                    self._loops.add(origin.id)
                    self.problems.append(f"node {origin.id} ({origin.type}): reroutes or bypassed nodes form a loop "
                                         "through it")
                return None
            seen.add(origin.id)
            if origin.mode == MODE_MUTED:
                return _DROPPED
            if origin.type == REROUTE:
                upstream = origin.inputs[0].link if origin.inputs else None
                if upstream is None:
                    return None
                link_id = upstream
                continue
            if origin.type == PRIMITIVE:
                values = origin.widgets
                return _Literal(values[0]) if isinstance(values, list) and values else None
            if origin.mode == MODE_BYPASS:
                slots = origin.inputs
                # ComfyUI's frontend: the input at the same slot if its type matches, else the first that does.
                for i in [link.slot, *range(len(slots))]:
                    if i < len(slots) and slots[i].type == link.type and slots[i].link is not None:
                        link_id = slots[i].link
                        break
                else:
                    return _DROPPED
                continue
            return Ref(origin.id, link.slot, self._output_name(origin, link.slot))

    @staticmethod
    def _output_name(origin: _UINode, slot: int) -> str | None:
        names = origin.output_names
        if slot >= len(names) or names[slot] is None:
            return None
        # Placeholders name their outputs; two outputs of one name get the index appended.
        return names[slot] if names.count(names[slot]) == 1 else f"{names[slot]}_{slot}"

    # -- nodes ---------------------------------------------------------------
    def read(self, values: dict | None) -> ComfyGraph:
        nodes: dict[str, ComfyNode] = {}
        notes: dict[str, str] = {}
        for node_id, raw in self.by_id.items():
            if raw.type in NOTE_TYPES:
                texts = raw.widgets if isinstance(raw.widgets, list) else []
                notes[node_id] = texts[0] if texts and isinstance(texts[0], str) else ""
                continue
            if raw.type in (REROUTE, PRIMITIVE) or raw.mode in (MODE_MUTED, MODE_BYPASS):
                continue
            nodes[node_id] = self._node(raw)
        if isinstance(values, dict):
            _take_values(nodes, values)
        if self.problems:
            raise ComfyImportError(self.problems)
        return ComfyGraph(nodes, SOURCE, ui=self._ui_extras(), notes=notes, import_notes=self.notes)

    def _node(self, raw: _UINode) -> ComfyNode:
        node_id, node_type = raw.id, raw.type
        title = raw.raw.get("title")
        node = ComfyNode(node_id, node_type, title=title if isinstance(title, str) else None)
        if node_type in self.subgraphs:
            node.meta["subgraph"] = self.subgraphs[node_type]
        elif node_type.partition(">")[2] in self.group_nodes or node_type.partition("/")[2] in self.group_nodes:
            node.meta["group_node"] = node_type
        node.layout = _layout(raw.raw)
        node.output_names = [name for name in raw.output_names if name is not None]
        widget_values = raw.widgets
        mapping = self.mappings.get(node_type)
        if isinstance(widget_values, dict):  # some packs save their widgets by name
            node.inputs.update(widget_values)
        elif isinstance(widget_values, list) and widget_values:
            if mapping is None:
                node.widgets = list(widget_values)
            else:
                # ComfyUI's own declaration for its core classes; a pack's for the classes it maps.
                layout = widget_layout(node_type)
                node.inputs.update(self._widgets(node_id, node_type, mapping.widgets if layout is None else layout,
                                                 widget_values))
        for i, slot in enumerate(raw.inputs):
            if slot.link is None:
                continue
            if slot.name is None:
                self.problems.append(f"node {node_id} ({node_type}): inputs[{i}] is linked (link {slot.link}) but "
                                     "has no name")
                continue
            found = self.source(slot.link, f"node {node_id} input {slot.name!r}")
            if found is _DROPPED:
                node.inputs.pop(slot.name, None)
            elif isinstance(found, _Literal):
                node.inputs[slot.name] = found.value
            elif found is not None:
                node.inputs[slot.name] = found
        return node

    def _widgets(self, node_id: str, node_type: str, names: tuple[str, ...], values: list) -> dict:
        out, i = read_widgets(names, values)
        if i < len(values):
            # More values than known widgets: a ComfyUI version with other
            # widgets; reading them by position would misplace values.
            known = ", ".join(n for n in names if not n.startswith("<")) or "it has none"
            self.problems.append(
                f"node {node_id} ({node_type}): {len(values)} widget values {show(values, 200)} do not fit its "
                f"widgets ({known})")
        return out

    def _ui_extras(self) -> dict:
        ui: dict[str, Any] = {}
        groups = []
        raw_groups = self.doc.get("groups")
        for g in raw_groups if isinstance(raw_groups, list) else []:
            bounding = g.get("bounding") if isinstance(g, dict) else None
            numbers = [_finite(b) for b in bounding] if isinstance(bounding, list) and len(bounding) == 4 else []
            if numbers and None not in numbers:
                title = g.get("title")
                groups.append({"title": title if isinstance(title, str) and title else "Group", "bounding": numbers})
        if groups:
            ui["groups"] = groups
        extra = self.doc.get("extra") if isinstance(self.doc.get("extra"), dict) else {}
        ds = extra.get("ds") if isinstance(extra.get("ds"), dict) else {}
        offset, scale = _pair(ds.get("offset")), _finite(ds.get("scale"))
        if offset is not None and scale is not None:
            ui["view"] = {"offset": offset, "scale": scale}
        return ui


def _finite(value: Any) -> float | None:
    """A number the layout can use: finite, as a float (else None)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _pair(value: Any) -> list[float] | None:
    """[x, y], or older files' {"0": x, "1": y}."""
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, list) and len(value) == 2:
        pair = [_finite(value[0]), _finite(value[1])]
        if None not in pair:
            return pair
    return None


def _layout(raw: dict) -> dict:
    layout: dict[str, Any] = {}
    for key in ("pos", "size"):
        pair = _pair(raw.get(key))
        if pair is not None:
            layout[key] = pair
    flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else {}
    if flags.get("collapsed") is True:
        layout["collapsed"] = True
    if isinstance(raw.get("color"), str):
        layout["color"] = raw["color"]
    return layout


def _take_values(nodes: dict[str, ComfyNode], prompt: dict) -> None:
    for node_id, node in nodes.items():
        ran = prompt.get(node_id)
        if not isinstance(ran, dict) or ran.get("class_type") != node.class_type:
            continue
        inputs = ran.get("inputs")
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if not isinstance(value, list) and not isinstance(node.inputs.get(name), Ref):
                node.inputs[name] = value
        if node.widgets is not None and any(not isinstance(v, list) for v in inputs.values()):
            node.widgets = None  # the prompt named them
