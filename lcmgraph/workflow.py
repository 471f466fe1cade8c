"""Workflow format v1: the one JSON format the CLI, the API and the editor share.

    {
      "format": "lcmgraph.workflow",
      "version": 1,
      "nodes": {
        "ckpt":   {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-random"}},
        "prompt": {"type": "TextEncode", "inputs": {"clip": {"link": ["ckpt", "clip"]},
                                                    "text": "a red circle"}}
      },
      "outputs": ["save"],
      "ui": {"nodes": {"ckpt": {"pos": [0, 0]}}}
    }

An input is a literal (JSON scalar or array), a link ``{"link": [node_id, output_name]}``,
or ``{"value": ...}`` to give an object literal: a link can never be mistaken
for a literal. ``outputs`` (optional) names the output nodes to run; by
default every output node runs. ``ui`` belongs to the editor; the engine
ignores it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .problems import Problem

FORMAT = "lcmgraph.workflow"
VERSION = 1
#: Node ids as an ECMAScript regex source: what the published JSON Schema
#: (workflow.schema.json) and the editor (through the node schema) test ids with.
NODE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}$"
#: The same rule in Python, where ``$`` also matches before a final newline:
#: ``\Z`` is what ECMAScript's ``$`` means.
NODE_ID = re.compile(NODE_ID_PATTERN.removesuffix("$") + r"\Z")
TOP_LEVEL_KEYS = {"format", "version", "nodes", "outputs", "ui", "meta"}


@dataclass(frozen=True)
class Link:
    node: str
    output: str

    def to_json(self) -> dict:
        return {"link": [self.node, self.output]}


@dataclass(frozen=True)
class NodeSpec:
    id: str
    type: str
    inputs: Mapping[str, Any]

    def links(self) -> dict[str, Link]:
        return {k: v for k, v in self.inputs.items() if isinstance(v, Link)}

    def literals(self) -> dict[str, Any]:
        return {k: v for k, v in self.inputs.items() if not isinstance(v, Link)}


@dataclass(frozen=True)
class Workflow:
    nodes: Mapping[str, NodeSpec]
    outputs: tuple[str, ...] | None = None
    ui: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "nodes": {}}
        for node_id, spec in self.nodes.items():
            inputs = {}
            for name, value in spec.inputs.items():
                if isinstance(value, Link):
                    inputs[name] = value.to_json()
                elif isinstance(value, dict):
                    inputs[name] = {"value": value}
                else:
                    inputs[name] = value
            out["nodes"][node_id] = {"type": spec.type, "inputs": inputs}
        if self.outputs is not None:
            out["outputs"] = list(self.outputs)
        if self.meta:
            out["meta"] = dict(self.meta)
        if self.ui is not None:
            out["ui"] = self.ui
        return out


def parse(data: Any) -> tuple[Workflow, list[Problem]]:
    """Read a workflow document. Structural problems are collected, not raised;
    whatever could be understood is returned so validation can report more."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return Workflow(nodes={}), [Problem("a workflow must be a JSON object", code="format")]
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        problems.append(Problem(f"unknown format {fmt!r}; expected {FORMAT!r}", code="format"))
    version = data.get("version", VERSION)
    if version != VERSION:
        problems.append(
            Problem(f"workflow format version {version!r} is not supported (this lcmgraph reads {VERSION})", code="format")
        )
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(Problem(f"unknown top-level key {key!r}", code="format"))
    raw_nodes = data.get("nodes")
    nodes: dict[str, NodeSpec] = {}
    if not isinstance(raw_nodes, dict):
        problems.append(Problem('"nodes" must be an object mapping node ids to nodes', code="format"))
        raw_nodes = {}
    for node_id, raw in raw_nodes.items():
        if not NODE_ID.match(node_id):
            problems.append(
                Problem("node ids are 1-64 characters of letters, digits, _ . : - (not starting with . : -)", node=node_id, code="format")
            )
            continue
        if not isinstance(raw, dict):
            problems.append(Problem("a node must be an object with a \"type\"", node=node_id, code="format"))
            continue
        node_type = raw.get("type")
        if not isinstance(node_type, str) or not node_type:
            problems.append(Problem('a node needs a "type" string', node=node_id, code="format"))
            continue
        for key in raw:
            if key not in ("type", "inputs", "title"):
                problems.append(Problem(f"unknown key {key!r} in node", node=node_id, code="format"))
        raw_inputs = raw.get("inputs", {})
        if not isinstance(raw_inputs, dict):
            problems.append(Problem('"inputs" must be an object', node=node_id, code="format"))
            raw_inputs = {}
        inputs: dict[str, Any] = {}
        for name, value in raw_inputs.items():
            parsed, problem = _parse_value(value)
            if problem:
                problems.append(Problem(problem, node=node_id, input=name, code="format"))
            else:
                inputs[name] = parsed
        nodes[node_id] = NodeSpec(id=node_id, type=node_type, inputs=inputs)
    outputs = data.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            problems.append(Problem('"outputs" must be a list of node ids', code="format"))
            outputs = None
        else:
            outputs = tuple(outputs)
    ui = data.get("ui")
    if ui is not None and not isinstance(ui, dict):
        problems.append(Problem('"ui" must be an object', code="format"))
        ui = None
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return Workflow(nodes=nodes, outputs=outputs, ui=ui, meta=meta), problems


def _parse_value(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, dict):
        if set(value) == {"link"}:
            link = value["link"]
            if (
                isinstance(link, list)
                and len(link) == 2
                and all(isinstance(x, str) and x for x in link)
            ):
                return Link(link[0], link[1]), None
            return None, 'a link is {"link": [node_id, output_name]}'
        if set(value) == {"value"}:
            return copy.deepcopy(value["value"]), None
        return None, 'an object input must be {"link": [node, output]} or {"value": ...}'
    return value, None


def loads(text: str | bytes) -> Any:
    """Parse JSON text, turning a syntax error into a sentence with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise WorkflowFileError("the file is not UTF-8 text") from None


class WorkflowFileError(Exception):
    """A workflow file that cannot be read at all."""


def read_file(path: str | Path) -> Any:
    """Load a workflow document from a .json file or a PNG made by lcmgraph."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkflowFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise WorkflowFileError(f"{path}: {exc.strerror or exc}") from None
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        from .pngmeta import workflow_from_png

        data = workflow_from_png(path)
        if data is None:
            raise WorkflowFileError(f"{path}: this PNG has no embedded workflow")
        return data
    try:
        return loads(raw)
    except WorkflowFileError as exc:
        raise WorkflowFileError(f"{path}: {exc}") from None


def apply_overrides(data: dict, assignments: Mapping[str, Any]) -> dict:
    """Return a copy of ``data`` with ``{"node.input": value}`` literals set."""
    data = copy.deepcopy(data)
    nodes = data.get("nodes")
    for target, value in assignments.items():
        node_id, _, input_name = target.rpartition(".")
        if not node_id or not input_name:
            raise WorkflowFileError(f"--set {target}: expected NODE.INPUT=VALUE")
        if not isinstance(nodes, dict) or node_id not in nodes:
            raise WorkflowFileError(f"--set {target}: the workflow has no node {node_id!r}")
        node = nodes[node_id]
        node.setdefault("inputs", {})[input_name] = {"value": value} if isinstance(value, dict) else value
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"sampler.steps=8"`` -> ``("sampler.steps", 8)``; non-JSON values stay strings."""
    target, sep, raw = text.partition("=")
    if not sep or "." not in target:
        raise WorkflowFileError(f"{text!r}: expected NODE.INPUT=VALUE")
    return target.strip(), parse_scalar(raw)


def parse_scalar(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def json_schema() -> dict:
    """The published JSON Schema of workflow format v1."""
    text = resources.files("lcmgraph").joinpath("workflow.schema.json").read_text()
    return json.loads(text)
