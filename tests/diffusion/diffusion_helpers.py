"""Helpers for the diffusion tests: engines over the session's models folder,
reference diffusers pipelines on the same files, and a workflow builder."""

from __future__ import annotations

from pathlib import Path

import torch

from lcmgraph import Engine, EngineConfig

PACKS = Path(__file__).parent / "packs"


def new_engine(models: Path, tmp: Path, folders: dict | None = None, **options) -> Engine:
    return Engine(EngineConfig(
        folders=folders or {},
        home=tmp / "home", models_dir=models, output_dir=tmp / "out", plugins_from_env=False,
        plugin_dirs=[PACKS],
        device="cpu", options=options,
    ))


def reference(models: Path, name: str = "tiny", cls=None):
    """A diffusers pipeline on the same checkpoint folder, fp32 on the CPU."""
    from diffusers import DiffusionPipeline

    cls = cls or DiffusionPipeline
    kwargs = {"safety_checker": None, "requires_safety_checker": False} if "xl" not in name else {}
    pipe = cls.from_pretrained(models / "checkpoints" / name, local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed: int):
    return torch.Generator("cpu").manual_seed(seed)


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}


class Flow:
    """Builds workflow documents: ``f.add("id", "Type", input=value...)``."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, node_id: str, node_type: str, **inputs) -> str:
        self.nodes[node_id] = {"type": node_type, "inputs": inputs}
        return node_id

    def doc(self, *outputs: str) -> dict:
        out = {"format": "lcmgraph.workflow", "version": 1, "nodes": self.nodes}
        if outputs:
            out["outputs"] = list(outputs)
        return out


def txt2img(ckpt="tiny", prompt="a red circle", negative=None, size=64, batch=1, sampler="LCMSampler",
            model=None, clip=None, **sampler_inputs) -> Flow:
    """ckpt -> text -> EmptyLatent -> sampler -> decode ("decode" holds the image)."""
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint=ckpt)
    f.add("pos", "TextEncode", clip=clip or link("ckpt", "clip"), text=prompt)
    inputs = dict(model=model or link("ckpt", "model"), positive=link("pos", "conditioning"),
                  latent=link("empty", "latent"))
    if negative is not None:
        f.add("neg", "TextEncode", clip=clip or link("ckpt", "clip"), text=negative)
        inputs["negative"] = link("neg", "conditioning")
    f.add("empty", "EmptyLatent", width=size, height=size, batch=batch)
    inputs.update(sampler_inputs)
    f.add("sampler", sampler, **inputs)
    f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent"))
    return f


def run_to(engine: Engine, flow: Flow, node: str, output: str, **kwargs):
    """Run ``flow`` as far as ``node`` (through a Capture output node); return the result."""
    flow.add("capture", "Capture", value=link(node, output))
    try:
        return engine.run(flow.doc("capture"), **kwargs)
    finally:
        del flow.nodes["capture"]


def value_of(engine: Engine, flow: Flow, node: str, output: str):
    return run_to(engine, flow, node, output).values[node][output]


def image_of(engine: Engine, flow: Flow, node: str = "decode"):
    """Run ``flow`` up to ``node`` and return its IMAGE as numpy [B,H,W,C]."""
    return value_of(engine, flow, node, "image").numpy()


def max_diff(a, b) -> float:
    import numpy as np

    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())
