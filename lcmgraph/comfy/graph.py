"""ComfyUI workflows read into one form, whichever file format they came in.

The API format already is this form; the UI format is brought to it by
resolving reroutes, primitive nodes, muted and bypassed nodes (ui_format.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: The most nodes (and, in the UI format, links) a ComfyUI workflow may have
#: for lcmgraph to convert it either way; beyond, the import or export is
#: refused with a message saying so. Every walk is iterative, so the limit
#: is about time and memory, not the depth of a chain.
MAX_NODES = 100_000


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
    #: What the reader noticed and worked around (kept in meta.comfy_import.notes).
    import_notes: list[str] = field(default_factory=list)


def id_order(node_id: str) -> tuple:
    """Sort ComfyUI ids numerically ("2" before "10"), others after by name.
    Digit runs compare by length then text: no int() of a 5000-digit id."""
    return tuple((0, len(d), d) if p.isascii() and p.isdigit() and (d := p.lstrip("0") or "0") else (1, 0, p)
                 for p in re.split(r"[:.]", node_id))


def show(value: Any, limit: int = 60) -> str:
    """A value as messages quote it: its repr, shortened."""
    try:
        text = repr(value)
    except RecursionError:
        return f"{kind(value)} nested too deeply to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """Text shortened for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind(value: Any) -> str:
    """What a JSON value is, for messages ("a string", "an object")."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def described(value: Any) -> str:
    """A value for "must be ..., got ..." messages: its kind and its repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    return f"{kind(value)} {show(value)}"


def is_id(value: Any) -> bool:
    """A ComfyUI node or link id: an integer or a string (never a boolean)."""
    return isinstance(value, int | str) and not isinstance(value, bool)
