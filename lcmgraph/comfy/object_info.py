"""ComfyUI's ``/object_info``: the mapped ComfyUI classes, in ComfyUI's shape.

A client (ComfyUI's frontend, a script) reads ``/object_info`` to build an
API-format graph and submits it to ``/prompt``, where the packs' mapping
tables convert it. So the classes offered are exactly the mapped ones that
convert, each with its inputs as ComfyUI names and orders them (widgets.py)
and with what lcmgraph accepts for them: a renamed input takes the lcmgraph
input's declaration (type, default, range, choices; a file input lists the
files of its folder), the others come from declarations.py. Per class::

    {"input": {"required": {name: [type, options] | [[choices], options]}, "optional": {...}},
     "input_order": {"required": [...], "optional": [...]}, "output": [types],
     "output_is_list": [...], "output_name": [...], "name", "display_name", "description",
     "category", "output_node", "python_module"}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import types as T
from ..node import REQUIRED, Input
from .declarations import DECLARED, Declared, DeclaredClass
from .mapping import ComfyMapping, Through
from .widgets import COMFY_NODES

#: Where ComfyUI's core classes live (the frontend counts ``nodes`` as core, not a custom node pack).
PYTHON_MODULE = "nodes"

ListFiles = Callable[[str], list[str]]


class _Undescribed(Exception):
    """A class input neither a rename table nor declarations.py describes: the class is left out."""


def object_info(registry: Any, list_files: ListFiles) -> dict[str, dict[str, Any]]:
    """Every mapped ComfyUI class that can be described, by class name (the mapping's order).
    ``list_files(folder)`` gives the file names a file input offers."""
    out: dict[str, dict[str, Any]] = {}
    for class_type, mapping in registry.comfy_mappings().items():
        info = class_info(class_type, mapping, registry, list_files)
        if info is not None:
            out[class_type] = info
    return out


def class_info(class_type: str, mapping: ComfyMapping, registry: Any, list_files: ListFiles) -> dict | None:
    declared = DECLARED.get(class_type)
    node = registry.get(mapping.node) if mapping.node else None
    if node is None and declared is None:  # no node and nothing declared: a class the pack only refuses
        return None
    try:
        inputs = {"required": {}, "optional": {}}
        for name, upload, control in _input_names(class_type, mapping, declared):
            spec, optional = _input(name, mapping, declared, node, registry, list_files, upload, control)
            inputs["optional" if optional else "required"][name] = spec
        outputs = _outputs(mapping, declared, node, inputs)
    except _Undescribed:
        return None
    types = [kind for kind, _ in outputs]
    names = [name for _, name in outputs]
    present = {part: specs for part, specs in inputs.items() if specs or part == "required"}
    description = (declared.description if declared else "") or _first_paragraph(node)
    return {
        "input": present,
        "input_order": {part: list(specs) for part, specs in present.items()},
        "output": types,
        "output_is_list": [False] * len(types),
        "output_name": names,
        "name": class_type,
        "display_name": mapping.title or class_type,
        "description": description,
        "python_module": PYTHON_MODULE,
        "category": (declared.category if declared else "") or getattr(node, "category", "") or "lcmgraph",
        "output_node": bool(getattr(node, "output_node", False)),
    }


def _input_names(class_type: str, mapping: ComfyMapping, declared: DeclaredClass | None):
    """(name, has an upload button, has control_after_generate) in ComfyUI's INPUT_TYPES order."""
    core = COMFY_NODES.get(class_type)
    if core is not None:
        return [(i.name, i.upload, i.control) for i in core]
    if declared is not None:
        return [(name, False, False) for name in declared.inputs]
    return [(name, False, False) for name in mapping.inputs if name not in mapping.ignore]


def _input(name: str, mapping: ComfyMapping, declared: DeclaredClass | None, node, registry,
           list_files: ListFiles, upload: bool, control: bool) -> tuple[list, bool]:
    if declared is not None and name in declared.inputs:
        entry = declared.inputs[name]
        return _declared_spec(entry, registry, list_files), entry.optional
    target = mapping.inputs.get(name)
    native = node.input_map.get(target) if node is not None and target else None
    if native is None:
        raise _Undescribed(name)
    spec = input_spec(native, list_files)
    if control and native.type == T.INT:
        spec[1]["control_after_generate"] = True
    if upload:
        spec[1]["image_upload"] = True
    return spec, False


def _declared_spec(entry: Declared, registry, list_files: ListFiles) -> list:
    if entry.like:
        node_type, _, input_name = entry.like.partition(".")
        node = registry.get(node_type)
        native = node.input_map.get(input_name) if node is not None else None
        if native is None:
            raise _Undescribed(entry.like)
        spec = input_spec(native, list_files)
        if entry.drop and isinstance(spec[0], list):
            spec[0] = [c for c in spec[0] if c not in entry.drop]
            if spec[1].get("default") in entry.drop:
                spec[1]["default"] = spec[0][0]
        spec[1].update(entry.options)
        return spec
    if entry.type == "COMBO":
        return [list(entry.choices), dict(entry.options)]
    return [entry.type, dict(entry.options)] if entry.options else [entry.type]


def input_spec(native: Input, list_files: ListFiles) -> list:
    """An lcmgraph input declaration as ComfyUI's ``[type, options]`` / ``[[choices], options]``."""
    options: dict[str, Any] = {}
    has_default = native.default is not REQUIRED and native.default is not None
    if native.type == T.ENUM or (native.type == T.STRING and native.folder):
        choices = list(native.choices) if native.type == T.ENUM else list(list_files(native.folder))
        if has_default and native.default in choices:
            options["default"] = native.default
        kind: Any = choices
    elif native.is_literal:
        kind = native.type
        if has_default:
            options["default"] = native.default
        for key in ("min", "max", "step"):
            value = getattr(native, key)
            if value is not None:
                options[key] = value
        if native.multiline:
            options["multiline"] = True
    else:
        kind = native.type
    if native.description:
        options["tooltip"] = native.description
    return [kind, options] if options or isinstance(kind, list) or native.is_literal else [kind]


def _outputs(mapping: ComfyMapping, declared: DeclaredClass | None, node, inputs: dict) -> list[tuple[str, str]]:
    if declared is not None and declared.outputs:
        names = declared.output_names or declared.outputs
        return list(zip(declared.outputs, names, strict=True))
    found: list[tuple[str, str]] = []
    for output in mapping.outputs:
        if isinstance(output, Through):
            spec = inputs["required"].get(output.input) or inputs["optional"].get(output.input)
            if spec is None or not isinstance(spec[0], str):
                raise _Undescribed(output.input)
            found.append((spec[0], output.input))
        else:
            native = node.output_map.get(output) if node is not None else None
            if native is None:
                raise _Undescribed(output)
            found.append((native.type, native.name))
    types = [kind for kind, _ in found]
    if len(set(types)) == len(types):  # ComfyUI names outputs by type unless a class names them (RETURN_NAMES)
        return [(kind, kind) for kind in types]
    return found


def _first_paragraph(node) -> str:
    text = getattr(node, "description", "") or ""
    return " ".join(text.split("\n\n")[0].split())
