"""Group nodes (``extra.groupNodes``, the legacy frontend) and subgraphs
(``definitions.subgraphs``, the current one) expanded into the plain UI graph
they stand for, before the UI reader reads it. This is what ComfyUI's
frontend does when it queues a prompt:

* each inner node becomes a node of its own, id ``<instance id>:<inner id>``
  (a group node's inner nodes are numbered by their index), so nested
  instances give ``5:12:3`` and messages name the node ComfyUI would;
* inner links are kept; an inner input fed from the instance's input takes
  the link that feeds the instance (a subgraph input with a value instead of
  a link becomes a primitive holding it); links from the instance's outputs
  come from the inner node that feeds that output;
* the instance's widget values go to the inner widgets they stand for;
* a muted or bypassed instance mutes or bypasses its inner nodes.

What cannot be expanded (a definition without nodes, say) stays as it was,
and the import names it. Malformed definitions are the reader's to refuse.
"""

from __future__ import annotations

import copy
from typing import Any

from .graph import is_id
from .widgets import set_widget, widget_layout

IN_NODE, OUT_NODE = -10, -20
#: Subgraphs nest; deeper than this is a definition that contains itself.
MAX_DEPTH = 32


def expand(doc: dict) -> tuple[dict, list[str]]:
    """(the document with instances expanded, notes). Returns ``doc`` itself when it has nothing to expand."""
    groups = _definitions(doc.get("extra"), "groupNodes")
    subgraphs = {}
    definitions = doc.get("definitions")
    if isinstance(definitions, dict) and isinstance(definitions.get("subgraphs"), list):
        subgraphs = {s["id"]: s for s in definitions["subgraphs"]
                     if isinstance(s, dict) and isinstance(s.get("id"), str) and isinstance(s.get("nodes"), list)}
    nodes, links = doc.get("nodes"), doc.get("links")
    if not (groups or subgraphs) or not isinstance(nodes, list) or not isinstance(links, list | type(None)):
        return doc, []
    notes: list[str] = []
    links = [link for link in links or [] if link is not None]
    nodes = list(nodes)
    for _ in range(MAX_DEPTH):
        expanded, changed = [], False
        for node in nodes:
            kind = _instance_kind(node, groups, subgraphs)
            if kind is None:
                expanded.append(node)
                continue
            changed = True
            if kind[0] == "group":
                expanded.extend(_expand_group(node, kind[1], links, notes))
            else:
                expanded.extend(_expand_subgraph(node, kind[1], links, notes))
        nodes = expanded
        if not changed:
            break
    else:
        notes.append(f"subgraphs nested more than {MAX_DEPTH} deep were not expanded further")
    return {**doc, "nodes": nodes, "links": links}, notes


def _definitions(extra: Any, key: str) -> dict:
    groups = extra.get(key) if isinstance(extra, dict) else None
    if not isinstance(groups, dict):
        return {}
    return {name: d for name, d in groups.items() if isinstance(d, dict) and isinstance(d.get("nodes"), list)}


def _instance_kind(node: Any, groups: dict, subgraphs: dict) -> tuple[str, dict] | None:
    if not isinstance(node, dict) or not is_id(node.get("id")) or not isinstance(node.get("type"), str):
        return None
    node_type = node["type"]
    if node_type in subgraphs:
        return "subgraph", subgraphs[node_type]
    for sep in (">", "/"):  # "workflow>NAME" (older frontends wrote "workflow/NAME")
        prefix, found, name = node_type.partition(sep)
        if found and prefix == "workflow" and name in groups:
            return "group", groups[name]
    return None


# -- links ---------------------------------------------------------------------
def _ends(link: Any) -> tuple | None:
    """(id, origin, origin_slot, target, target_slot, type) of an array or object link."""
    if isinstance(link, list) and len(link) >= 6:
        return tuple(link[:6])
    if isinstance(link, dict):
        return tuple(link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"))
    return None


def _retarget_outputs(links: list, instance_id: str, feeds: dict[int, tuple[str, int] | None]) -> None:
    """Links from the instance's output k now come from ``feeds[k]`` (dropped when nothing feeds it)."""
    for i, link in enumerate(links):
        ends = _ends(link)
        if ends is None or str(ends[1]) != instance_id or not isinstance(ends[2], int):
            continue
        source = feeds.get(ends[2])
        if source is None:
            links[i] = [ends[0], f"{instance_id}:missing", 0, ends[3], ends[4], ends[5]]
        else:
            links[i] = [ends[0], source[0], source[1], ends[3], ends[4], ends[5]]


def _inner(instance: dict, raw: dict, inner_id: str) -> dict:
    node = copy.deepcopy(raw)
    node["id"] = f"{instance['id']}:{inner_id}"
    node.pop("index", None)
    node["inputs"] = [dict(s, link=None) if isinstance(s, dict) else s for s in node.get("inputs") or []]
    if instance.get("mode") in (2, 4):
        node["mode"] = instance["mode"]
    return node


def _slot(node: dict, index: Any) -> dict | None:
    inputs = node.get("inputs")
    if isinstance(index, int) and isinstance(inputs, list) and 0 <= index < len(inputs) and isinstance(inputs[index], dict):
        return inputs[index]
    return None


# -- group nodes ---------------------------------------------------------------
def _expand_group(instance: dict, definition: dict, links: list, notes: list[str]) -> list[dict]:
    inst = str(instance["id"])
    raw_nodes = [n for n in definition["nodes"] if isinstance(n, dict)]
    by_index: dict[Any, dict] = {}
    ordered = []
    for position, raw in enumerate(raw_nodes):
        index = raw.get("index", position)
        node = _inner(instance, raw, str(index))
        by_index[index] = node
        ordered.append((index, node))
    internal_origins = set()
    for k, glink in enumerate(definition.get("links") or []):
        if not (isinstance(glink, list) and len(glink) >= 4):
            continue
        o_idx, o_slot, t_idx, t_slot = glink[:4]
        slot = _slot(by_index.get(t_idx, {}), t_slot)
        if o_idx not in by_index or slot is None:
            continue
        link_id = f"{inst}:{k}"
        links.append([link_id, by_index[o_idx]["id"], o_slot, by_index[t_idx]["id"], t_slot,
                      glink[5] if len(glink) > 5 else None])
        slot["link"] = link_id
        internal_origins.add((o_idx, o_slot))
    _group_widgets(instance, [node for _, node in ordered], notes)
    # The instance's inputs are the inner inputs no inner link feeds, named as the frontend names them.
    candidates, seen = [], set()
    for _, node in ordered:
        for slot in node.get("inputs") or []:
            if not isinstance(slot, dict) or slot.get("link") is not None:
                continue
            name = slot.get("name")
            label = name if name not in seen else f"{node.get('title') or node.get('type')} {name}"
            seen.add(name)
            candidates.append([label, slot])
    for slot in instance.get("inputs") or []:
        if not isinstance(slot, dict) or slot.get("link") is None:
            continue
        match = next((c for c in candidates if c[0] == slot.get("name")), None)
        if match is None:
            notes.append(f"node {inst} ({instance['type']}): input {slot.get('name')!r} matches no input inside the "
                         "group node; it is left unconnected")
            continue
        match[1]["link"] = slot["link"]
        candidates.remove(match)
    external = {(e[0], e[1]) for e in definition.get("external") or [] if isinstance(e, list) and len(e) >= 2}
    exposed = [(node["id"], i) for index, node in ordered for i, _ in enumerate(node.get("outputs") or [])
               if (index, i) not in internal_origins or (index, i) in external]
    _retarget_outputs(links, inst, dict(enumerate(exposed)))
    return [node for _, node in ordered]


def _group_widgets(instance: dict, nodes: list[dict], notes: list[str]) -> None:
    """The instance's widget values are its inner nodes' widget values, node after node."""
    values = instance.get("widgets_values")
    if not isinstance(values, list) or not values:
        return
    counts = [len(n["widgets_values"]) if isinstance(n.get("widgets_values"), list) else 0 for n in nodes]
    if sum(counts) != len(values):
        notes.append(f"node {instance['id']} ({instance['type']}): its {len(values)} widget values do not match the "
                     f"{sum(counts)} of the nodes inside; the inner nodes keep their own")
        return
    start = 0
    for node, count in zip(nodes, counts, strict=True):
        if count:
            node["widgets_values"] = list(values[start:start + count])
        start += count


# -- subgraphs -----------------------------------------------------------------
def _expand_subgraph(instance: dict, definition: dict, links: list, notes: list[str]) -> list[dict]:
    inst = str(instance["id"])
    nodes = {}
    for raw in definition["nodes"]:
        if isinstance(raw, dict) and is_id(raw.get("id")):
            nodes[str(raw["id"])] = _inner(instance, raw, str(raw["id"]))
    from_inputs: dict[int, list[dict]] = {}
    feeds: dict[int, tuple[str, int] | None] = {}
    for raw_link in definition.get("links") or []:
        ends = _ends(raw_link)
        if ends is None:
            continue
        link_id, origin, o_slot, target, t_slot, link_type = ends
        if target == OUT_NODE:
            if isinstance(t_slot, int):
                feeds[t_slot] = (nodes[str(origin)]["id"], o_slot) if str(origin) in nodes else None
            continue
        slot = _slot(nodes.get(str(target), {}), t_slot)
        if slot is None:
            continue
        if origin == IN_NODE:
            if isinstance(o_slot, int):
                from_inputs.setdefault(o_slot, []).append(slot)
            continue
        if str(origin) not in nodes:
            continue
        new_id = f"{inst}:{link_id}"
        links.append([new_id, nodes[str(origin)]["id"], o_slot, nodes[str(target)]["id"], t_slot, link_type])
        slot["link"] = new_id
    extra_nodes = _subgraph_inputs(instance, definition, from_inputs, links)
    _promoted_widgets(instance, nodes)
    _retarget_outputs(links, inst, feeds)
    return [*extra_nodes, *nodes.values()]


def _subgraph_inputs(instance: dict, definition: dict, from_inputs: dict[int, list[dict]], links: list) -> list[dict]:
    """Inner inputs fed by the subgraph's inputs: the instance's link, or its widget value as a primitive."""
    inst = str(instance["id"])
    declared = [d if isinstance(d, dict) else {} for d in definition.get("inputs") or []]
    slots = {s.get("name"): s for s in instance.get("inputs") or [] if isinstance(s, dict)}
    # Inputs shown as widgets on the instance: those without a socket there (older frontends), or with a widget.
    widget_inputs = [k for k, d in enumerate(declared)
                     if d.get("name") not in slots or isinstance(slots[d.get("name")].get("widget"), dict)]
    values = instance.get("widgets_values")
    value_of = (dict(zip(widget_inputs, values, strict=True))
                if isinstance(values, list) and values and len(values) == len(widget_inputs) else {})
    extra = []
    for k, targets in from_inputs.items():
        name = declared[k].get("name") if k < len(declared) else None
        slot = slots.get(name)
        if slot is not None and slot.get("link") is not None:
            for target in targets:
                target["link"] = slot["link"]
        elif k in value_of:
            primitive = {"id": f"{inst}:input{k}", "type": "PrimitiveNode", "mode": 0, "inputs": [],
                         "outputs": [{"name": declared[k].get("type"), "type": declared[k].get("type"), "links": []}],
                         "widgets_values": [value_of[k]]}
            link_id = f"{inst}:input{k}"
            links.append([link_id, primitive["id"], 0, None, None, declared[k].get("type")])
            for target in targets:
                target["link"] = link_id
            extra.append(primitive)
    return extra


def _promoted_widgets(instance: dict, nodes: dict[str, dict]) -> None:
    """properties.proxyWidgets: [[inner id, widget name], ...] shown on the instance with its own values."""
    properties = instance.get("properties")
    proxies = properties.get("proxyWidgets") if isinstance(properties, dict) else None
    values = instance.get("widgets_values")
    if not isinstance(proxies, list) or not isinstance(values, list) or len(values) != len(proxies):
        return
    for proxy, value in zip(proxies, values, strict=True):
        if not (isinstance(proxy, list) and len(proxy) == 2):
            continue
        node = nodes.get(str(proxy[0]))
        layout = widget_layout(node.get("type")) if node else None
        if layout and isinstance(node.get("widgets_values"), list):
            set_widget(layout, node["widgets_values"], proxy[1], value)
