"""Cache keys and the lazy plan of a prepared run.

A node's key hashes its type, version, literal inputs (files by identity) and
the keys of the *output values* it links to. An output's key is its node's
key, unless the output declares the inputs it depends on
(``Output(depends_on=...)``): then it hashes only those, so a change to
another input of that node does not invalidate what is computed from the
output (a new UNet LoRA weight does not re-run the text encoder).

The plan is lazy in the ComfyUI "dissolve" sense: walking back from the
requested outputs, a node whose value is cached is not executed, and its
ancestors are not even visited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .cache import node_key
from .workflow import Link

if TYPE_CHECKING:
    from .prepare import Prepared
    from .runtime import Runtime


@dataclass
class Plan:
    """What a run needs: node keys, which nodes must execute, what the cache already holds."""

    #: Cache key of every node in the prepared order.
    keys: dict[str, str]
    #: Nodes to execute, in topological order.
    run: list[str]
    #: Values found in the cache, by node id (in the order the walk found them).
    cached: dict[str, Mapping[str, Any]]


def compute_keys(runtime: Runtime, prepared: Prepared) -> dict[str, str]:
    """Node keys for every node of the prepared order."""
    registry, files = runtime.registry, runtime.files
    nodes = prepared.workflow.nodes
    keys: dict[str, str] = {}
    output_keys: dict[tuple[str, str], str] = {}
    for node_id in prepared.order:
        spec = nodes[node_id]
        cls = registry.get(spec.type)
        literals: dict[str, Any] = {}
        upstream: dict[str, str] = {}
        for decl in cls.inputs:
            value = spec.inputs.get(decl.name)
            if isinstance(value, Link):
                upstream[decl.name] = output_keys[(value.node, value.output)]
                continue
            value = decl.value_or_default(value)
            if decl.folder and isinstance(value, str):
                value = [value, files.identity(decl.folder, value)]
            literals[decl.name] = value
        if cls.has_referenced_files:
            _key_referenced_files(cls, spec, literals, files)
        key = keys[node_id] = node_key(cls.type_name, cls.version, literals, upstream, cls.cacheable)
        for out in cls.outputs:
            if out.depends_on is None or not cls.cacheable:
                output_keys[(node_id, out.name)] = f"{key}.{out.name}"
            else:
                only = set(out.depends_on)
                output_keys[(node_id, out.name)] = node_key(
                    f"{cls.type_name}.{out.name}", cls.version,
                    {k: v for k, v in literals.items() if k in only},
                    {k: v for k, v in upstream.items() if k in only})
    return keys


def _key_referenced_files(cls, spec, literals: dict[str, Any], files) -> None:
    """Add the identity of the files a node's literals name (``Node.referenced_files``)
    to the literal of the input naming them (a linked input: to its own entry)."""
    raw = {decl.name: decl.value_or_default(spec.inputs.get(decl.name)) for decl in cls.inputs
           if decl.is_literal and not isinstance(spec.inputs.get(decl.name), Link)}
    found: dict[str, list] = {}
    for input_name, folder, name in cls.referenced_files(raw, files.check):
        if name is None:  # unknown until the node runs: every file of the folder
            ident = [[n, files.identity(folder, n)] for n in files.list(folder)]
        else:
            ident = files.identity(folder, name)
        found.setdefault(input_name, []).append([folder, name, ident])
    for input_name, refs in found.items():
        literals[input_name] = [literals.get(input_name), {"files": refs}]


def make_plan(runtime: Runtime, prepared: Prepared) -> Plan:
    keys = compute_keys(runtime, prepared)
    nodes, registry, cache = prepared.workflow.nodes, runtime.registry, runtime.cache
    cached: dict[str, Mapping[str, Any]] = {}
    to_run: set[str] = set()
    stack = list(prepared.outputs)
    visited: set[str] = set()
    while stack:
        node_id = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        spec = nodes[node_id]
        if not registry.get(spec.type).output_node:
            value = cache.get(keys[node_id])
            if value is not None:
                cached[node_id] = value
                continue
        to_run.add(node_id)
        stack.extend(link.node for link in spec.links().values())
    return Plan(keys, [n for n in prepared.order if n in to_run], cached)
