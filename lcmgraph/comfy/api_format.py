"""ComfyUI's API format: ``{"3": {"class_type": "KSampler", "inputs": {...}, "_meta": {...}}}``
with links written ``[node_id, output_index]``."""

from __future__ import annotations

from typing import Any

from .errors import ComfyImportError
from .graph import MAX_NODES, ComfyGraph, ComfyNode, Ref, clip, kind, show

SOURCE = "API format"


def read_api(prompt: dict) -> ComfyGraph:
    if len(prompt) > MAX_NODES:
        raise ComfyImportError([f"the workflow has {len(prompt)} nodes; lcmgraph imports at most {MAX_NODES}"])
    problems: list[str] = []
    nodes: dict[str, ComfyNode] = {}
    for key, raw in prompt.items():
        node_id = clip(str(key), 80)
        if not isinstance(raw, dict) or not isinstance(raw.get("class_type"), str):
            problems.append(f'node {node_id}: not a node (an API-format node is {{"class_type": ..., "inputs": {{...}}}})')
            continue
        raw_inputs = raw.get("inputs", {})
        if not isinstance(raw_inputs, dict):
            problems.append(f'node {node_id} ({clip(raw["class_type"], 80)}): "inputs" must be an object, '
                            f"got {kind(raw_inputs)}")
            continue
        inputs = {}
        for name, value in raw_inputs.items():
            if isinstance(value, list) and not is_link(value):
                # ComfyUI reads every list input as a link, so a list literal cannot be meant.
                problems.append(f"node {node_id} input {clip(name, 80)!r}: {show(value, 200)} is neither a literal "
                                "nor a link [node_id, output_index]")
                continue
            inputs[name] = Ref(str(value[0]), value[1]) if isinstance(value, list) else value
        meta = raw.get("_meta") if isinstance(raw.get("_meta"), dict) else {}
        title = meta.get("title") if isinstance(meta.get("title"), str) else None
        nodes[str(key)] = ComfyNode(str(key), raw["class_type"], inputs, title=title, meta=meta)
    if problems:
        raise ComfyImportError(problems)
    return ComfyGraph(nodes, SOURCE)


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))
