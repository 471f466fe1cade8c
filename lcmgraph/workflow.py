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
from typing import Any, NamedTuple

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
NODE_KEYS = ("type", "inputs", "title")


class Link(NamedTuple):
    """A link to another node's named output (a tuple: cheap to build, immutable)."""

    node: str
    output: str

    def to_json(self) -> dict:
        return {"link": [self.node, self.output]}


class NodeSpec(NamedTuple):
    """One node of a parsed workflow (immutable; a tuple, cheap to build)."""

    id: str
    type: str
    inputs: Mapping[str, Any]
    #: The linked inputs, by input name (derived from ``inputs`` when omitted).
    linked: Mapping[str, Link] | None = None

    def links(self) -> Mapping[str, Link]:
        """The linked inputs (do not mutate the result)."""
        if self.linked is not None:
            return self.linked
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
        if len(raw) > 2 or "inputs" not in raw:
            for key in raw:
                if key not in NODE_KEYS:
                    problems.append(Problem(f"unknown key {key!r} in node", node=node_id, code="format"))
        raw_inputs = raw.get("inputs", {})
        if not isinstance(raw_inputs, dict):
            problems.append(Problem('"inputs" must be an object', node=node_id, code="format"))
            raw_inputs = {}
        inputs: dict[str, Any] = {}
        links: dict[str, Link] = {}
        for name, value in raw_inputs.items():
            if type(value) is not dict:  # the common case: a JSON scalar or array
                inputs[name] = value
                continue
            parsed, problem = _parse_value(value)
            if problem:
                problems.append(Problem(problem, node=node_id, input=name, code="format"))
            else:
                inputs[name] = parsed
                if type(parsed) is Link:
                    links[name] = parsed
        nodes[node_id] = NodeSpec(node_id, node_type, inputs, links)
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


def _parse_value(value: dict) -> tuple[Any, str | None]:
    if len(value) == 1:
        if "link" in value:
            link = value["link"]
            if type(link) is list and len(link) == 2:
                node, output = link
                if type(node) is str and type(output) is str and node and output:
                    return Link(node, output), None
            return None, 'a link is {"link": [node_id, output_name]}'
        if "value" in value:
            return copy.deepcopy(value["value"]), None
    return None, 'an object input must be {"link": [node, output]} or {"value": ...}'


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
