"""ComfyUI's API format: ``{"3": {"class_type": "KSampler", "inputs": {...}, "_meta": {...}}}``
with links written ``[node_id, output_index]``."""

from __future__ import annotations

from typing import Any

from .errors import ComfyImportError
from .graph import ComfyGraph, ComfyNode, Ref

SOURCE = "API format"


def read_api(prompt: dict) -> ComfyGraph:
    problems: list[str] = []
    nodes: dict[str, ComfyNode] = {}
    for key, raw in prompt.items():
        node_id = str(key)
        if not isinstance(raw, dict) or not isinstance(raw.get("class_type"), str):
            problems.append(f'node {node_id}: not a node (an API-format node is {{"class_type": ..., "inputs": {{...}}}})')
            continue
        raw_inputs = raw.get("inputs", {})
        if not isinstance(raw_inputs, dict):
            problems.append(f'node {node_id}: "inputs" must be an object')
            continue
        inputs = {}
        for name, value in raw_inputs.items():
            if isinstance(value, list) and not is_link(value):
                # ComfyUI reads every list input as a link, so a list literal cannot be meant.
                problems.append(f"node {node_id} input {name!r}: {value!r} is neither a literal nor a link [node_id, output_index]")
                continue
            inputs[name] = Ref(str(value[0]), value[1]) if isinstance(value, list) else value
        meta = raw.get("_meta") if isinstance(raw.get("_meta"), dict) else {}
        title = meta.get("title") if isinstance(meta.get("title"), str) else None
        nodes[node_id] = ComfyNode(node_id, raw["class_type"], inputs, title=title, meta=meta)
    if problems:
        raise ComfyImportError(problems)
    return ComfyGraph(nodes, SOURCE)


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))
