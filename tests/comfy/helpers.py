"""Helpers for the ComfyUI tests: the hand-written ComfyUI files, engines,
and native lcmgraph workflows to compare their images with."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from lcmgraph import Engine, EngineConfig, plugins
from lcmgraph.registry import NodeRegistry

HERE = Path(__file__).parent
WORKFLOWS = HERE / "workflows"
PACKS = [HERE.parent / "diffusion" / "packs"]


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def new_registry() -> NodeRegistry:
    registry = NodeRegistry()
    plugins.load_all(registry, PACKS, env=False)
    return registry


def new_engine(models: Path, tmp: Path) -> Engine:
    return Engine(EngineConfig(home=tmp / "home", models_dir=models, output_dir=tmp / "out",
                               plugins_from_env=False, plugin_dirs=PACKS, device="cpu"))


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}


def image(engine: Engine, doc: dict, node: str):
    """Run ``doc`` up to ``node`` (nothing is saved) and return its IMAGE as numpy."""
    doc = copy.deepcopy(doc)
    doc["nodes"]["capture"] = {"type": "Capture", "inputs": {"value": link(node, "image")}}
    doc["outputs"] = ["capture"]
    return engine.run(doc).values[node]["image"].numpy()


def native(nodes: dict) -> dict:
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}


def node(node_type: str, **inputs) -> dict:
    return {"type": node_type, "inputs": inputs}


def txt2img(sampler: dict, ckpt="tiny", prompt="a red circle", negative="blurry", size=64, model=None, clip=None,
            positive=None) -> dict:
    """ckpt -> pos/neg -> latent -> ``sampler`` (its model/conditioning/latent filled in) -> decode."""
    nodes = {
        "ckpt": node("LoadCheckpoint", checkpoint=ckpt),
        "pos": node("TextEncode", clip=clip or link("ckpt", "clip"), text=prompt),
        "neg": node("TextEncode", clip=clip or link("ckpt", "clip"), text=negative),
        "latent": node("EmptyLatent", width=size, height=size, batch=1),
        "decode": node("VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent")),
    }
    sampler["inputs"] = {"model": model or link("ckpt", "model"), "positive": positive or link("pos", "conditioning"),
                         "negative": link("neg", "conditioning"), "latent": link("latent", "latent"),
                         **sampler["inputs"]}
    nodes["sampler"] = sampler
    return native(nodes)


def normalized(doc: dict, registry: NodeRegistry) -> dict:
    """Nodes with every declared default written out, titles kept: two graphs
    that mean the same compare equal, whichever defaults they spelled out."""
    out = {}
    for node_id, raw in doc["nodes"].items():
        cls = registry.get(raw["type"])
        inputs = {}
        for declared in getattr(cls, "inputs", ()):
            if declared.name in raw["inputs"]:
                value = raw["inputs"][declared.name]
                inputs[declared.name] = declared.coerce(value) if declared.is_literal and not isinstance(value, dict) else value
            elif not declared.required and not declared.optional:
                inputs[declared.name] = declared.default
        for name, value in raw["inputs"].items():
            inputs.setdefault(name, value)
        out[node_id] = {"type": raw["type"], "inputs": inputs, **({"title": raw["title"]} if "title" in raw else {})}
    return out
