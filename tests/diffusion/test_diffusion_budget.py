"""Job budgets on the diffusion nodes: a job that would exhaust the machine is
refused at validation, naming the node, the input and the limit, before any
model is loaded; input images are opened only as image formats, under pixel
limits."""

from __future__ import annotations

import argparse

import pytest
from PIL import Image

from lcmgraph import Engine, EngineConfig, WorkflowInvalid
from lcmgraph.server.job_limits import budget_from_args

from .diffusion_helpers import PACKS, Flow, link, txt2img

GiB = 2**30


def budget_engine(models, tmp_path, memory_gb=4.0, **options):
    args = argparse.Namespace(device="cpu", max_pixels=None, max_batch=None, max_steps=150, max_memory=memory_gb)
    return Engine(EngineConfig(home=tmp_path / "home", models_dir=models, output_dir=tmp_path / "out",
                               plugins_from_env=False, plugin_dirs=[PACKS], device="cpu", options=options,
                               budget=budget_from_args(args)))


def saved(flow: Flow) -> dict:
    flow.add("save", "SaveImage", image=link("decode", "image"))
    return flow.doc("save")


def test_the_attack_job_is_refused_before_anything_loads(models, tmp_path):
    engine = budget_engine(models, tmp_path)
    attack = saved(txt2img(size=8192, batch=64))
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(attack)
    problems = [str(p) for p in info.value.problems]
    assert problems[:2] == [
        "node 'empty' input 'width': an image of 8192x8192 needs 67,108,864 pixels, above this server's limit "
        "of 4,194,304 pixels (--max-pixels)",
        "node 'empty' input 'batch': a batch of 64 images needs 64 images, above this server's limit of 8 "
        "images (--max-batch)",
    ]
    assert any(p.startswith("node 'sampler' input 'latent': sampling 8192x8192, batch 64 needs ")
               and p.endswith("(--max-memory)") for p in problems)
    assert any(p.startswith("node 'decode' input 'tiled': decoding 8192x8192, batch 64 in one piece "
                            "(tiled=true needs far less) needs ") for p in problems)
    assert all(p.code == "over_budget" for p in info.value.problems)
    assert "diffusion.models" not in engine.runtime._services  # no model manager, no weights


def test_a_normal_job_passes_and_tiling_brings_a_big_decode_under_the_limit(models, tmp_path):
    engine = budget_engine(models, tmp_path, memory_gb=4.0)
    assert engine.validate(saved(txt2img(size=64))) == []
    big = txt2img(size=2048)
    assert [(p.node, p.input) for p in engine.validate(saved(big))] == [("decode", "tiled")]
    big.nodes["decode"]["inputs"]["tiled"] = True
    assert engine.validate(saved(big)) == []


def test_steps_are_limited(models, tmp_path):
    engine = budget_engine(models, tmp_path)
    flow = txt2img(sampler="Sampler", steps=400)
    assert [str(p) for p in engine.validate(saved(flow))] == [
        "node 'sampler' input 'steps': 400 sampling steps needs 400 steps, above this server's limit of 150 "
        "steps (--max-steps)"]


def test_a_loaded_image_is_sized_from_its_header(models, tmp_path):
    engine = budget_engine(models, tmp_path)
    Image.new("RGB", (3000, 2000), "white").save(models / "input" / "wide.png")
    flow = Flow()
    flow.add("load", "LoadImage", image="wide.png")
    flow.add("save", "SaveImage", image=link("load", "image"))
    assert [str(p) for p in engine.validate(flow.doc("save"))] == [
        "node 'load' input 'image': an input image of 3000x2000 needs 6,000,000 pixels, above this server's "
        "limit of 4,194,304 pixels (--max-pixels)"]


def test_load_image_opens_only_image_formats_under_the_pixel_limit(models, fresh_engine, make_engine):
    (models / "input" / "notes.png").write_text("not an image at all")
    Image.new("RGB", (8, 8)).save(models / "input" / "scan.tif")
    Image.new("RGB", (300, 200)).save(models / "input" / "medium.png")

    def load(engine, name):
        flow = Flow()
        flow.add("load", "LoadImage", image=name)
        flow.add("capture", "Capture", value=link("load", "image"))
        return engine.run(flow.doc("capture"))

    from lcmgraph import NodeFailed

    with pytest.raises(NodeFailed, match=r"'notes.png' is not a PNG, JPEG, WEBP, GIF, BMP image"):
        load(fresh_engine, "notes.png")
    with pytest.raises(NodeFailed, match=r"'scan.tif' is not a PNG, JPEG, WEBP, GIF, BMP image"):
        load(fresh_engine, "scan.tif")
    assert tuple(load(fresh_engine, "medium.png").values["load"]["image"].shape) == (1, 200, 300, 3)
    small = make_engine(max_image_pixels=10_000)
    with pytest.raises(NodeFailed, match=r"'medium.png' is 300x200, larger than the 10,000-pixel "
                                         r"\(at most 16384 per side\) limit for input images"):
        load(small, "medium.png")


@pytest.mark.parametrize("node, extra", [
    ("VAEEncode", {"tiled": False}),
    ("VAEEncodeForInpaint", {"mask": link("mask", "mask")}),
])
def test_encoding_a_huge_image_is_refused_by_its_memory(models, tmp_path, node, extra):
    """The encoders share one estimate (costs.vae_encoding): the encoder's activations
    for the whole image at once."""
    engine = budget_engine(models, tmp_path, memory_gb=0.25)
    flow = Flow()
    flow.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    flow.add("image", "EmptyImage", width=2048, height=2048, batch=1)
    flow.add("mask", "SolidMask", value=1.0, width=2048, height=2048)
    flow.add("encode", node, vae=link("ckpt", "vae"), image=link("image", "image"), **extra)
    flow.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("encode", "latent"), tiled=True)
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(saved(flow))
    encode = [str(p) for p in info.value.problems if p.node == "encode"]
    where, advice = ("tiled", " (tiled=true needs far less)") if node == "VAEEncode" else ("image", "")
    assert encode == [f"node 'encode' input '{where}': encoding 2048x2048 in one piece{advice} needs 8.0 GiB, "
                      "above this server's limit of 0.2 GiB (--max-memory)"]
