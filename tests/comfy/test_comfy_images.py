"""Hand-written ComfyUI workflows (API and UI format) imported and run on the
tiny test models: each image equals the one of the native lcmgraph workflow
with the same parameters."""

from __future__ import annotations

import numpy as np
import pytest

from lcmgraph.comfy import load_any

from .helpers import image, link, load, native, node, txt2img


def _img2img_euler():
    return native({
        "ckpt": node("LoadCheckpoint", checkpoint="tiny"),
        "pos": node("TextEncode", clip=link("ckpt", "clip"), text="a painting of a sun"),
        "neg": node("TextEncode", clip=link("ckpt", "clip"), text=""),
        "hint": node("LoadImage", image="hint.png"),
        "encode": node("VAEEncode", vae=link("ckpt", "vae"), image=link("hint", "image")),
        # ComfyUI's steps 4 at denoise 0.5: the last 4 steps of an 8-step schedule.
        "sampler": node("Sampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
                        negative=link("neg", "conditioning"), latent=link("encode", "latent"),
                        scheduler="euler", schedule="normal", seed=7, steps=8, cfg=1.0, denoise=0.5),
        "decode": node("VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent")),
    })


def _img2img_lcm():
    # The one-node form of VAEEncode -> LCMSampler(denoise 0.6).
    return native({
        "ckpt": node("LoadCheckpoint", checkpoint="tiny"),
        "pos": node("TextEncode", clip=link("ckpt", "clip"), text="a painting of a sun over a city"),
        "neg": node("TextEncode", clip=link("ckpt", "clip"), text="ugly"),
        "hint": node("LoadImage", image="hint.png"),
        "sampler": node("Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
                        positive=link("pos", "conditioning"), negative=link("neg", "conditioning"),
                        image=link("hint", "image"), strength=0.6, seed=7, steps=4, guidance=1.0),
        "decode": node("VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent")),
    })


def _lora():
    doc = txt2img(node("LCMSampler", seed=3, steps=4, guidance=1.0), prompt="a portrait of a cat", negative="",
                  model=link("lora2", "model"), clip=link("lora1", "clip"))
    doc["nodes"]["lora1"] = node("ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"),
                                 lora="a.safetensors", weight=0.8, clip_weight=0.7)
    doc["nodes"]["lora2"] = node("ApplyLoRA", model=link("lora1", "model"), lora="b_peft.safetensors", weight=0.5)
    return doc


def _controlnet(end: float):
    doc = txt2img(node("LCMSampler", seed=3, steps=4, guidance=1.5), prompt="a photo of a house",
                  negative="blurry, low quality", positive=link("control", "conditioning"))
    doc["nodes"].update(
        cn=node("LoadControlNet", controlnet="cn"),
        hint=node("LoadImage", image="hint.png"),
        control=node("ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("cn", "control_net"),
                     image=link("hint", "image"), strength=0.8, start=0.0, end=end),
    )
    return doc


def _refiner():
    doc = txt2img(node("Sampler", scheduler="euler", schedule="normal", seed=5, steps=4, cfg=1.0, start_step=2),
                  prompt="a lighthouse", negative="")
    nodes = doc["nodes"]
    nodes["base"] = node("Sampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
                         negative=link("neg", "conditioning"), latent=link("latent", "latent"),
                         scheduler="euler", schedule="normal", seed=5, steps=4, cfg=1.0, end_step=2)
    nodes["sampler"]["inputs"]["latent"] = link("base", "latent")
    return doc


CASES = {
    "api_txt2img.json": lambda: txt2img(node("LCMSampler", seed=42, steps=4, guidance=1.0)),
    "ui_txt2img.json": lambda: txt2img(node("LCMSampler", seed=42, steps=4, guidance=1.0)),
    "api_img2img.json": _img2img_euler,
    "ui_img2img.json": _img2img_lcm,
    "api_lora.json": _lora,
    "ui_lora.json": _lora,
    "api_controlnet.json": lambda: _controlnet(end=0.75),
    "ui_controlnet.json": lambda: _controlnet(end=1.0),
    "api_refiner.json": _refiner,
}


@pytest.mark.parametrize("name", CASES)
def test_imported_workflow_draws_the_native_image(engine, name):
    doc = load_any(load(name), engine.registry)
    assert engine.validate(doc) == []
    got = image(engine, doc, "8")  # every file decodes in its node 8
    want = image(engine, CASES[name](), "decode")
    assert got.shape == (1, 64, 64, 3)
    assert np.array_equal(got, want)


def test_comfy_denoise_runs_all_its_steps(engine):
    """ComfyUI's KSampler at denoise 0.5 runs all 4 of its steps, not 2."""
    doc = load_any(load("api_img2img.json"), engine.registry)
    doc["nodes"]["3"]["inputs"]["seed"] = 8  # not cached by the test above
    events = []
    engine.run(doc, sink=events.append, outputs=["13"])
    steps = [e.data.get("step") for e in events if e.kind == "node_progress" and e.node == "3"]
    assert steps == [1, 2, 3, 4]


def test_controlnet_changes_the_imported_image(engine):
    """The ControlNet import is not a no-op: without the hint the image differs."""
    doc = load_any(load("api_controlnet.json"), engine.registry)
    plain = load_any(load("api_controlnet.json"), engine.registry)
    plain["nodes"]["3"]["inputs"]["positive"] = link("6", "conditioning")
    assert not np.array_equal(image(engine, doc, "8"), image(engine, plain, "8"))
