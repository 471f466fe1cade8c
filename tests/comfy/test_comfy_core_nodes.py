"""ComfyUI's core latent, VAE-file, CLIP-skip and conditioning nodes: a
hires-fix workflow in ComfyUI's API format imports and draws the native
workflow's image; every class converts both ways, with the widget order of
ComfyUI's UI format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcmgraph.comfy import ComfyImportError, load_any, to_api

from .helpers import image, link, load, native, node, normalized


@pytest.fixture(scope="module")
def comfy_vae(models):
    from lcmgraph_nodes.diffusion.builtin import tiny
    from lcmgraph_nodes.diffusion.formats.vae_files import save_ldm_vae

    return save_ldm_vae(models / "vae" / "comfy-vae.safetensors", tiny.make_vae("sd15", seed=41))


def _hires_native():
    return native({
        "4": node("LoadCheckpoint", checkpoint="tiny"),
        "11": node("CLIPSetLastLayer", clip=link("4", "clip"), stop_at_clip_layer=-2),
        "6": node("TextEncode", clip=link("11", "clip"), text="a red circle"),
        "7": node("TextEncode", clip=link("11", "clip"), text="blurry"),
        "5": node("EmptyLatent", width=64, height=64, batch=2),
        "3": node("LCMSampler", model=link("4", "model"), positive=link("6", "conditioning"),
                  negative=link("7", "conditioning"), latent=link("5", "latent"), seed=42, steps=4, guidance=1.0),
        "12": node("LatentFromBatch", latent=link("3", "latent"), batch_index=1, length=1),
        "13": node("LatentUpscaleBy", latent=link("12", "latent"), upscale_method="bislerp", scale_by=1.5),
        "14": node("ConditioningZeroOut", conditioning=link("7", "conditioning")),
        "15": node("LCMSampler", model=link("4", "model"), positive=link("6", "conditioning"),
                   negative=link("14", "conditioning"), latent=link("13", "latent"), seed=43, steps=3, guidance=1.5,
                   denoise=0.5),
        "16": node("LoadVAE", vae="comfy-vae.safetensors"),
        "8": node("VAEDecode", vae=link("16", "vae"), latent=link("15", "latent")),
    })


def test_hires_fix_imports_node_for_node(registry):
    expected = _hires_native()
    expected["nodes"]["9"] = node("SaveImage", image=link("8", "image"), filename_prefix="ComfyUI")
    expected["nodes"]["6"]["title"] = "Positive"
    expected["nodes"]["15"]["title"] = "Hires pass"
    assert normalized(load_any(load("api_hires.json"), registry), registry) == normalized(expected, registry)


def test_hires_fix_draws_the_native_image(engine, comfy_vae):
    imported = load_any(load("api_hires.json"), engine.registry)
    ours = image(engine, imported, "8")
    assert ours.shape == (1, 96, 96, 3)
    assert np.array_equal(ours, image(engine, _hires_native(), "8"))


def test_core_nodes_round_trip_through_the_api_format(registry):
    once = load_any(load("api_hires.json"), registry)
    prompt = to_api(once, registry)
    for node_id in ("11", "12", "13", "14", "16"):
        assert prompt[node_id]["class_type"] == load("api_hires.json")[node_id]["class_type"]
        assert prompt[node_id]["inputs"] == load("api_hires.json")[node_id]["inputs"]
    assert normalized(load_any(json.loads(json.dumps(prompt)), registry), registry) == normalized(once, registry)


LATENT_API = {
    "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "2": {"class_type": "LatentUpscale", "inputs": {"samples": ["1", 0], "upscale_method": "area", "width": 0,
                                                   "height": 96, "crop": "center"}},
    "3": {"class_type": "LatentComposite", "inputs": {"samples_to": ["2", 0], "samples_from": ["1", 0], "x": 8, "y": 16,
                                                     "feather": 8}},
    "4": {"class_type": "LatentBlend", "inputs": {"samples1": ["3", 0], "samples2": ["1", 0], "blend_factor": 0.25}},
    "5": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["4", 0], "amount": 3}},
    "6": {"class_type": "LatentFlip", "inputs": {"samples": ["5", 0], "flip_method": "y-axis: horizontally"}},
    "7": {"class_type": "LatentRotate", "inputs": {"samples": ["6", 0], "rotation": "270 degrees"}},
    "8": {"class_type": "LatentCrop", "inputs": {"samples": ["7", 0], "width": 64, "height": 64, "x": 0, "y": 8}},
    "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny"}},
    "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["9", 1]}},
    "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "b", "clip": ["9", 1]}},
    "12": {"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["10", 0], "conditioning_from": ["11", 0],
                                                          "conditioning_to_strength": 0.7}},
    "13": {"class_type": "ConditioningConcat", "inputs": {"conditioning_to": ["12", 0], "conditioning_from": ["11", 0]}},
    "14": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 1.0, "sampler_name": "lcm",
                                               "scheduler": "sgm_uniform", "denoise": 0.6, "model": ["9", 0],
                                               "positive": ["13", 0], "negative": ["11", 0], "latent_image": ["8", 0]}},
    "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["9", 2]}},
    "16": {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}},
}


def test_latent_and_conditioning_classes_convert_both_ways(registry):
    nodes = load_any(LATENT_API, registry)["nodes"]
    assert nodes["3"] == node("LatentComposite", latent_to=link("2", "latent"), latent_from=link("1", "latent"), x=8,
                              y=16, feather=8)
    assert nodes["4"] == node("LatentBlend", latent1=link("3", "latent"), latent2=link("1", "latent"), blend_factor=0.25)
    assert nodes["13"] == node("ConditioningConcat", conditioning_to=link("12", "conditioning"),
                               conditioning_from=link("11", "conditioning"))
    prompt = to_api({"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}, registry)
    for node_id in [str(i) for i in range(2, 9)] + ["12", "13"]:
        assert prompt[node_id] | {"_meta": None} == LATENT_API[node_id] | {"_meta": None}, node_id


def test_latent_chain_runs(engine):
    imported = load_any(LATENT_API, engine.registry)
    assert image(engine, imported, "15").shape == (3, 64, 64, 3)


def _ui(widgets: dict[str, list]) -> dict:
    nodes = [{"id": i, "type": kind, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": 0,
              "inputs": [], "outputs": [], "properties": {}, "widgets_values": values}
             for i, (kind, values) in enumerate(widgets.items(), start=1)]
    return {"last_node_id": len(nodes), "last_link_id": 0, "nodes": nodes, "links": [], "version": 0.4}


def test_ui_widget_orders(registry):
    nodes = load_any(_ui({
        "LatentUpscale": ["bicubic", 640, 0, "disabled"], "LatentUpscaleBy": ["bislerp", 2.0],
        "LatentComposite": [8, 16, 24], "LatentBlend": [0.4], "LatentFromBatch": [2, 3], "RepeatLatentBatch": [4],
        "LatentFlip": ["x-axis: vertically"], "LatentRotate": ["90 degrees"], "LatentCrop": [256, 128, 8, 16],
        "VAELoader": ["vae-ft-mse-840000-ema-pruned.safetensors"], "CLIPSetLastLayer": [-2],
        "ConditioningAverage": [0.3],
    }), registry, allow_missing=True)["nodes"]
    got = {n["type"]: {k: v for k, v in n["inputs"].items()} for n in nodes.values()}
    assert got["LatentUpscale"] == {"upscale_method": "bicubic", "width": 640, "height": 0, "crop": "disabled"}
    assert got["LatentUpscaleBy"] == {"upscale_method": "bislerp", "scale_by": 2.0}
    assert got["LatentComposite"] == {"x": 8, "y": 16, "feather": 24}
    assert got["LatentFromBatch"] == {"batch_index": 2, "length": 3}
    assert got["LatentCrop"] == {"width": 256, "height": 128, "x": 8, "y": 16}
    assert got["LoadVAE"] == {"vae": "vae-ft-mse-840000-ema-pruned.safetensors"}
    assert got["CLIPSetLastLayer"] == {"stop_at_clip_layer": -2}
    assert got["ConditioningAverage"] == {"conditioning_to_strength": 0.3}


def test_taesd_is_refused_and_the_latent_format_is_not_exported(registry):
    api = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "taesdxl"}}}
    with pytest.raises(ComfyImportError) as info:
        load_any(api, registry)
    assert info.value.problems == [
        "node 1 (VAELoader): vae_name 'taesdxl' (a TAESD approximation) has no lcmgraph equivalent; name a VAE file"]
    doc = native({"v": node("LoadVAE", vae="sdxl_vae.safetensors", latent_format="sdxl"),
                  "d": node("VAEDecode", vae=link("v", "vae"), latent=link("e", "latent")),
                  "e": node("EmptyLatent", width=64, height=64, batch=1),
                  "p": node("PreviewImage", image=link("d", "image"))})
    assert to_api(doc, registry)["v"]["inputs"] == {"vae_name": "sdxl_vae.safetensors"}
