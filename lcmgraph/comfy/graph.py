"""ComfyUI workflows read into one form, whichever file format they came in.

The API format already is this form; the UI format is brought to it by
resolving reroutes, primitive nodes, muted and bypassed nodes (ui_format.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ref:
    """A ComfyUI link: output ``index`` of node ``node``. ``name`` is the
    output's name where the file tells it (UI format), for placeholders."""

    node: str
    index: int
    name: str | None = None


@dataclass
class ComfyNode:
    id: str
    class_type: str
    #: Input name -> literal or Ref.
    inputs: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    #: UI ``widgets_values`` of a class whose widget order is unknown (kept on placeholders).
    widgets: list | None = None
    #: Output names from the UI format (placeholders name their outputs with them).
    output_names: list[str] | None = None
    #: The lcmgraph ``ui.nodes`` entry: pos, size, collapsed, color.
    layout: dict | None = None
    #: The API format's ``_meta``.
    meta: dict = field(default_factory=dict)


@dataclass
class ComfyGraph:
    nodes: dict[str, ComfyNode]
    #: "API format" or "UI format", for messages and the document's meta.
    source: str
    #: Editor layout beyond nodes: groups, view.
    ui: dict = field(default_factory=dict)
    #: Note nodes: id -> text.
    notes: dict[str, str] = field(default_factory=dict)


def id_order(node_id: str) -> tuple:
    """Sort ComfyUI ids numerically ("2" before "10"), others after by name."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[:.]", node_id))
