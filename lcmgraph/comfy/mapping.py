"""What a node pack declares to make ComfyUI classes importable (``COMFY_MAPPINGS``).

A pack maps ComfyUI class names to :class:`ComfyMapping` entries. Most
entries are pure data: the lcmgraph node type, input renames, the order of
the class's widgets in ComfyUI's UI format, and its outputs by index. A class
whose meaning does not carry over one-to-one (KSampler's sampler/scheduler
pair, for instance) gives a ``convert`` function instead, and may give an
``export`` function for the way back to ComfyUI's API format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: In ``widgets``: ComfyUI's frontend adds a "control_after_generate" combo
#: (fixed/increment/decrement/randomize) after seed widgets. It is consumed
#: only when the saved value is one of those words, since older files lack it.
SEED_CONTROL = "<control_after_generate>"
SEED_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


class ConversionError(Exception):
    """A ComfyUI node whose settings have no lcmgraph equivalent (the message
    says which setting; the importer adds the node id and class)."""


@dataclass(frozen=True)
class Through:
    """An output that passes one of the node's inputs on unchanged: the
    ComfyUI node becomes no lcmgraph node (e.g. ModelSamplingDiscrete 'lcm',
    whose effect LCMSampler always has)."""

    input: str


@dataclass
class Converted:
    """One ComfyUI node's lcmgraph form. ``type`` None: no node (outputs are
    all :class:`Through`, or none: links from it are dropped). ``inputs``
    hold literals and the ComfyUI node's own links (``graph.Ref``) unchanged;
    the importer turns those into lcmgraph links."""

    type: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[int, str | Through] = field(default_factory=dict)


@dataclass(frozen=True)
class ComfyMapping:
    #: The lcmgraph node type the default conversion makes.
    node: str | None = None
    #: ComfyUI input name -> lcmgraph input name (default conversion).
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: ComfyUI output index -> lcmgraph output name (or Through).
    outputs: tuple[str | Through, ...] = ()
    #: The class's widgets in the order of ``widgets_values`` in the UI format.
    widgets: tuple[str, ...] = ()
    #: ComfyUI inputs that carry nothing lcmgraph needs (upload buttons...).
    ignore: tuple[str, ...] = ()
    #: ComfyUI's display name: the title it gives such nodes (not kept on import).
    title: str = ""
    #: ``convert(ctx, node) -> Converted`` replacing the default conversion.
    convert: Callable[[Any, Any], Converted] | None = None
    #: How ``node`` exports to ComfyUI's API format: True for the inverse of
    #: the default conversion, or ``export(ctx, spec)``; False: not from here.
    export: bool | Callable[[Any, Any], None] = False
    #: Further lcmgraph node types the ``export`` function writes (a one-node
    #: form of what ComfyUI does in several, such as Img2Img).
    export_types: tuple[str, ...] = ()


def default_convert(mapping: ComfyMapping, inputs: Mapping[str, Any]) -> Converted:
    """Rename the inputs; an input the mapping does not know is refused rather
    than dropped, since a setting silently lost changes the image."""
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if name in mapping.ignore:
            continue
        if name not in mapping.inputs:
            raise ConversionError(f"input {name!r} has no lcmgraph equivalent")
        out[mapping.inputs[name]] = value
    return Converted(mapping.node, out, dict(enumerate(mapping.outputs)))
