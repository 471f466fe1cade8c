"""Which workflow format a JSON document is, from its shape alone."""

from __future__ import annotations

from typing import Any

from ..workflow import FORMAT

LCMGRAPH, COMFY_API, COMFY_UI = "lcmgraph", "comfy_api", "comfy_ui"


def detect(document: Any) -> str | None:
    """``"lcmgraph"``, ``"comfy_api"``, ``"comfy_ui"`` or None (not a workflow
    we recognise; the lcmgraph parser then says what is wrong with it)."""
    if not isinstance(document, dict):
        return None
    nodes = document.get("nodes")
    if "format" in document or isinstance(nodes, dict):
        return LCMGRAPH if document.get("format", FORMAT) == FORMAT else None
    if isinstance(nodes, list) and ("links" in document or "last_node_id" in document):
        return COMFY_UI
    if is_api_prompt(document):
        return COMFY_API
    if is_api_prompt(document.get("prompt")):  # the body POSTed to ComfyUI's /prompt
        return COMFY_API
    return None


def is_api_prompt(value: Any) -> bool:
    # Every entry of an API prompt is a node with a class_type; one stray
    # entry still makes it one (the reader then names the stray entry).
    return (isinstance(value, dict) and bool(value)
            and any(isinstance(v, dict) and "class_type" in v for v in value.values()))
