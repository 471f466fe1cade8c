"""ComfyUI-shaped garbage for the fuzz tests: seeded mutations of the real
ComfyUI files in tests/comfy/workflows (wrong types at every JSON path,
missing keys, huge and negative numbers, deep nesting, strings where ints
go, cycles, dangling and duplicate ids), the /prompt body and PNG text
chunks built from them, and deep graphs (long chains of reroutes, bypassed
nodes, LoRA loaders, ControlNets) in both formats.

Every value made here is plain JSON (what a server could receive), so the
same mutants serve the direct property test and the HTTP fuzz."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from .helpers import WORKFLOWS

#: The real files, parsed once.
REAL = {path.name: json.loads(path.read_text()) for path in sorted(WORKFLOWS.glob("*.json"))}
API_DOCS = [doc for name, doc in REAL.items() if name.startswith("api_")]
UI_DOCS = [doc for name, doc in REAL.items() if name.startswith("ui_")]

HUGE = [2**31, 2**63, -(2**63) - 1, 2**70, 10**30, 1e308, -1e308, 1e-320]
JUNK: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 7, -7, 0.5, -0.0, *HUGE, "", "x", "0", "-1", "1.5", "3", "lcm", "randomize",
    "enable", "disable", "MODEL", "*", "\u0000", "\ud800", "é😀", "x" * 3000, "..", "Reroute", "PrimitiveNode",
    [], [1], [1, 2], ["3", 0], ["3", -1], ["3", "0"], ["999", 0], [3, 0], [None, 0], ["3", 2**70], [[]], [[], []],
    [1, 2, 3, 4, 5, 6], [1, 2, "x", 4, 5, "T"], {}, {"a": 1}, {"link": {}}, {"link": 1}, {"0": 1, "1": 2},
    {"class_type": "KSampler"}, {"class_type": 3, "inputs": []}, {"id": 1}, {"id": -1, "type": "Reroute"},
]
NODE_TYPES = [
    "KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncodeSDXL", "VAEDecode",
    "VAEEncode", "VAEDecodeTiled", "EmptyLatentImage", "SaveImage", "LoadImage", "LoraLoader", "LoraLoaderModelOnly",
    "ModelSamplingDiscrete", "CLIPSetLastLayer", "ControlNetApply", "ControlNetApplyAdvanced", "ControlNetLoader",
    "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean", "Reroute", "PrimitiveNode", "Note",
    "MarkdownNote", "UltimateSDUpscale", "workflow>Upscaler", "a1b2c3", "", "__proto__", "constructor",
]
KEYS = ["id", "type", "class_type", "inputs", "outputs", "links", "link", "widgets_values", "mode", "nodes",
        "extra", "groupNodes", "definitions", "subgraphs", "groups", "bounding", "ds", "offset", "scale", "pos",
        "size", "flags", "widget", "name", "slot_index", "origin_id", "origin_slot", "target_id", "target_slot",
        "_meta", "title", "prompt", "extra_data", "extra_pnginfo", "workflow", "version", "format", "color"]


def deep(depth: int, leaf: Any = 1) -> Any:
    """``depth`` nested lists or objects around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def copied(doc: Any) -> Any:
    """A deep copy of a JSON document (through the C encoder: fast, and no recursion in Python)."""
    return json.loads(json.dumps(doc))


def random_path(rng: random.Random, doc: Any) -> list:
    """A path into ``doc`` by random descent: shallow paths more often, but any path can come up."""
    path, value = [], doc
    while isinstance(value, dict | list) and value and rng.random() > 0.2:
        key = rng.choice(list(value)) if isinstance(value, dict) else rng.randrange(len(value))
        path.append(key)
        value = value[key]
    return path


def junk(rng: random.Random, max_depth: int) -> Any:
    roll = rng.random()
    if roll < 0.04:
        return deep(rng.randint(2, max_depth))
    if roll < 0.08:
        return rng.choice(NODE_TYPES)
    return copy.deepcopy(rng.choice(JUNK))


# -- generic mutations: any JSON path ----------------------------------------

def mutate(rng: random.Random, doc: Any, rounds: int | None = None, max_depth: int = 40) -> Any:
    """1-4 random edits anywhere in ``doc`` (a deep copy), structure-aware
    ones (links, ids, node types, modes) among them."""
    doc = copied(doc)
    for _ in range(rounds or rng.randint(1, 4)):
        if rng.random() < 0.45:
            doc = _structural(rng, doc)
            continue
        path = random_path(rng, doc)
        if not path:
            if rng.random() < 0.1:
                doc = junk(rng, max_depth)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = rng.random()
        if action < 0.25:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif action < 0.65:
            parent[key] = junk(rng, max_depth)
        elif action < 0.75 and isinstance(parent, dict):
            parent[rng.choice(KEYS)] = junk(rng, max_depth)
        elif action < 0.85 and isinstance(parent[key], list):
            parent[key] = parent[key] * rng.choice([0, 2, 3])  # duplicates, or nothing
        elif action < 0.9 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[rng.choice(["-1", "0", "999", "a b", "x" * 70, "3", "3.5", "\ud800", "9" * 5000, "²"])
                   if rng.random() < 0.5 else str(key) + "_"] = parent.pop(key)
    return doc


def _structural(rng: random.Random, doc: Any) -> Any:
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), list):
        return _ui_edit(rng, doc)
    if isinstance(doc, dict) and isinstance(doc.get("prompt"), dict):
        if rng.random() < 0.5:
            doc["prompt"] = _api_edit(rng, doc["prompt"])
        else:
            workflow = doc.get("extra_data", {}).get("extra_pnginfo", {}).get("workflow") \
                if isinstance(doc.get("extra_data"), dict) and isinstance(doc["extra_data"].get("extra_pnginfo"), dict) \
                else None
            if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
                _ui_edit(rng, workflow)
        return doc
    if isinstance(doc, dict):
        return _api_edit(rng, doc)
    return doc


def _api_edit(rng: random.Random, prompt: dict) -> dict:
    ids = list(prompt) or ["1"]
    node_id = rng.choice(ids)
    node = prompt.get(node_id)
    roll = rng.random()
    if not isinstance(node, dict) or roll < 0.1:
        prompt[rng.choice(["-1", "0", "999", "3", "x.y", "a:b"])] = copy.deepcopy(node)
        return prompt
    inputs = node.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        node["class_type"] = rng.choice(NODE_TYPES)
        return prompt
    name = rng.choice(list(inputs))
    if roll < 0.3:  # a cycle: the node's own output, or one downstream
        inputs[name] = [rng.choice([node_id, *ids]), rng.randint(0, 2)]
    elif roll < 0.45:  # a dangling or odd link
        inputs[name] = rng.choice([["999", 0], [node_id, 7], [node_id, -1], [int(node_id) if node_id.isascii() and node_id.isdigit() and len(node_id) < 100 else 0, 0],
                                   [node_id, 2**64], ["", 0], [node_id, 0.0]])
    elif roll < 0.6:
        node["class_type"] = rng.choice(NODE_TYPES)
    elif roll < 0.75:  # a string where a number goes, or the reverse
        value = inputs[name]
        inputs[name] = str(value) if isinstance(value, int | float) else rng.choice([0, -1, 2**70, 0.5, True])
    elif roll < 0.85:
        del inputs[name]
    else:
        node["_meta"] = junk(rng, 8)
    return prompt


def _ui_edit(rng: random.Random, doc: dict) -> dict:
    nodes = [n for n in doc["nodes"] if isinstance(n, dict)]
    links = doc.get("links") if isinstance(doc.get("links"), list) else []
    roll = rng.random()
    node = rng.choice(nodes) if nodes else {}
    if roll < 0.12 and links:  # a cycle, or a link that points somewhere odd
        link = rng.choice(links)
        if isinstance(link, list) and len(link) >= 6:
            link[1] = rng.choice([link[3], link[1], -1, 999, "3", None, link[1]])
            link[2] = rng.choice([link[2], -1, 9, "0", 2**70])
    elif roll < 0.22:  # a dangling or odd link id on an input
        slots = [s for s in node.get("inputs") or [] if isinstance(s, dict)] if isinstance(node.get("inputs"), list) else []
        if slots:
            rng.choice(slots)["link"] = rng.choice([999, -1, "1", 1.5, [1], {}, True, 2**70, None])
    elif roll < 0.32:  # duplicate ids
        twin = copy.deepcopy(node)
        if rng.random() < 0.5 and nodes:
            twin["type"] = rng.choice(NODE_TYPES)
        doc["nodes"].append(twin)
        if links and rng.random() < 0.5:
            links.append(copy.deepcopy(rng.choice(links)))
    elif roll < 0.42:
        node["id"] = rng.choice([-1, 0, "3", 3.5, None, 2**70, "x:y", "a" * 80, [1], True])
    elif roll < 0.55:
        node["type"] = rng.choice(NODE_TYPES)
    elif roll < 0.65:
        node["mode"] = rng.choice([0, 2, 4, "2", None, -1, 2**70])
    elif roll < 0.78:
        values = node.get("widgets_values")
        if isinstance(values, list):
            values.extend(rng.choice([[1], ["fixed"], [None, {}], []]))
            if values and rng.random() < 0.5:
                values[rng.randrange(len(values))] = junk(rng, 8)
        else:
            node["widgets_values"] = rng.choice([{}, {"seed": "x"}, "x", 3, None, [[]], ["randomize"]])
    elif roll < 0.86:
        extra = doc.setdefault("extra", {}) if isinstance(doc.get("extra", {}), dict) else {}
        extra[rng.choice(["groupNodes", "ds"])] = rng.choice([5, [], {"Upscaler": 1}, {"ds": 1}, "x", None,
                                                             {"scale": "x", "offset": [1e308, -1e308]},
                                                             {"scale": 2**70, "offset": {"0": 1, "1": 2**1100}}])
    elif roll < 0.93:
        doc["groups"] = rng.choice([5, [1], [{"bounding": [1, 2, "x", 4]}], [{"bounding": [2**1100, 0, 0, 0]}],
                                    [{"title": {}, "bounding": [0, 0, 1, 1]}], [{"bounding": {}}]])
    else:
        doc["definitions"] = rng.choice([5, {"subgraphs": 5}, {"subgraphs": [{"id": {}}, {"id": [1]}, 7]},
                                         {"subgraphs": [{"id": node.get("type"), "name": 3}]}])
    return doc


# -- documents to mutate --------------------------------------------------------

def links_as_objects(doc: dict) -> dict:
    """The UI file with version-1 link objects."""
    doc = copy.deepcopy(doc)
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    doc["links"] = [dict(zip(keys, link, strict=False)) if isinstance(link, list) else link for link in doc["links"]]
    return doc


def prompt_body(api: dict, ui: dict | None = None) -> dict:
    body: dict[str, Any] = {"prompt": copy.deepcopy(api), "client_id": "fuzz"}
    if ui is not None:
        body["extra_data"] = {"extra_pnginfo": {"workflow": copy.deepcopy(ui)}}
    return body


def seeds() -> list[Any]:
    """The documents mutations start from: every real file, the UI files with
    link objects, /prompt bodies, and a few deep graphs."""
    out: list[Any] = [*API_DOCS, *UI_DOCS, *(links_as_objects(d) for d in UI_DOCS)]
    out += [prompt_body(api) for api in API_DOCS]
    out += [prompt_body(REAL["api_txt2img.json"], REAL["ui_txt2img.json"]),
            prompt_body(REAL["api_lora.json"], REAL["ui_lora.json"])]
    out += [api_chain(60), ui_chain(60, "Reroute"), ui_chain(40, "bypass"), ui_chain(30, "LoraLoaderModelOnly")]
    return out


def random_document(rng: random.Random, max_depth: int = 40) -> Any:
    return mutate(rng, rng.choice(SEEDS), max_depth=max_depth)


# -- deep graphs ---------------------------------------------------------------

def api_chain(length: int, kind: str = "LoraLoaderModelOnly") -> dict:
    """Checkpoint -> ``length`` model (or ControlNet) nodes in a row -> KSampler -> decode -> save."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "c"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
    }
    model, cond = ["1", 0], ["2", 0]
    for i in range(length):
        node_id = str(100 + i)
        if kind == "LoraLoaderModelOnly":
            prompt[node_id] = {"class_type": kind, "inputs": {"model": model, "lora_name": "l", "strength_model": 0.5}}
            model = [node_id, 0]
        elif kind == "ControlNetApply":
            prompt[node_id] = {"class_type": kind, "inputs": {"conditioning": cond, "control_net": ["4", 0],
                                                              "image": ["5", 0], "strength": 0.5}}
            cond = [node_id, 0]
        else:  # ModelSamplingDiscrete 'lcm' (what an lcm sampler expects): a chain of pass-throughs
            prompt[node_id] = {"class_type": kind, "inputs": {"model": model, "sampling": "lcm", "zsnr": False}}
            model = [node_id, 0]
    prompt["6"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": cond, "negative": ["2", 0], "latent_image": ["3", 0], "seed": 1, "steps": 4,
        "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform", "denoise": 1.0}}
    prompt["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}}
    return prompt


def ui_chain(length: int, kind: str = "Reroute") -> dict:
    """A UI-format checkpoint -> ``length`` reroutes (or bypassed LoRA loaders,
    or LoRA loaders) -> KSampler's model; the rest of txt2img around it."""
    doc = copy.deepcopy(REAL["ui_txt2img.json"])
    nodes = {n["id"]: n for n in doc["nodes"]}
    link_id = max(link[0] for link in doc["links"]) + 1
    node_id = max(nodes) + 1
    ckpt = nodes[4]
    first = next(link for link in doc["links"] if link[1] == 4 and link[2] == 0)  # checkpoint MODEL -> ...
    origin, slot = 4, 0
    for _ in range(length):
        doc["links"].append([link_id, origin, slot, node_id, 0, "MODEL"])
        if kind == "Reroute":
            node = {"id": node_id, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": link_id}],
                    "outputs": [{"name": "", "type": "MODEL", "links": [link_id + 1]}]}
        else:
            node = {"id": node_id, "type": "LoraLoaderModelOnly", "mode": 4 if kind == "bypass" else 0,
                    "inputs": [{"name": "model", "type": "MODEL", "link": link_id}],
                    "outputs": [{"name": "MODEL", "type": "MODEL", "links": [link_id + 1]}],
                    "widgets_values": ["l.safetensors", 0.5]}
        doc["nodes"].append(node)
        origin, slot = node_id, 0
        link_id, node_id = link_id + 1, node_id + 1
    first[1], first[2] = origin, slot  # the chain's end feeds what the checkpoint's MODEL fed
    ckpt["outputs"][0]["links"] = [link_id - length]
    doc["last_node_id"], doc["last_link_id"] = node_id, link_id
    return doc


SEEDS = seeds()
