"""ComfyUI's area composition and noisy latent composition in its API format:
the regional conditioning classes import one to one (and export back), the
UI widget orders are ComfyUI's, and both workflows run on the tiny models."""

from __future__ import annotations

import numpy as np
import torch

from lcmgraph.comfy import load_any, to_api

from .helpers import image, link, node

AREA_API = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a landscape", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["1", 1]}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue square", "clip": ["1", 1]}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "6": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["3", 0], "width": 64, "height": 64, "x": 0,
                                                          "y": 0, "strength": 1.2}},
    "7": {"class_type": "ConditioningSetAreaPercentage", "inputs": {"conditioning": ["4", 0], "width": 0.5,
                                                                    "height": 1.0, "x": 0.5, "y": 0.0,
                                                                    "strength": 1.0}},
    "8": {"class_type": "ConditioningSetAreaStrength", "inputs": {"conditioning": ["2", 0], "strength": 0.5}},
    "9": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["7", 0], "start": 0.0,
                                                                   "end": 0.8}},
    "10": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["9", 0]}},
    "11": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["10", 0], "conditioning_2": ["8", 0]}},
    "12": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}},
    "13": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 2.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                               "positive": ["11", 0], "negative": ["5", 0], "latent_image": ["12", 0]}},
    "14": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["1", 2]}},
    "15": {"class_type": "PreviewImage", "inputs": {"images": ["14", 0]}},
}


def test_area_composition_imports_one_to_one_and_exports_back(registry):
    nodes = load_any(AREA_API, registry)["nodes"]
    assert nodes["6"] == node("ConditioningSetArea", conditioning=link("3", "conditioning"), width=64, height=64, x=0,
                              y=0, strength=1.2)
    assert nodes["9"] == node("ConditioningSetTimestepRange", conditioning=link("7", "conditioning"), start=0.0,
                              end=0.8)
    assert nodes["10"] == node("ConditioningCombine", conditioning_1=link("6", "conditioning"),
                               conditioning_2=link("9", "conditioning"))
    prompt = to_api({"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}, registry)
    for node_id in ("6", "7", "8", "9", "10", "11"):
        assert prompt[node_id] | {"_meta": None} == AREA_API[node_id] | {"_meta": None}, node_id


def test_area_composition_runs(engine):
    out = image(engine, load_any(AREA_API, engine.registry), "14")
    assert out.shape == (1, 64, 128, 3) and np.isfinite(out).all()


def test_mask_conditioning_widgets_in_the_ui_order(registry):
    ui = {"last_node_id": 2, "last_link_id": 0, "version": 0.4, "links": [], "nodes": [
        {"id": i, "type": kind, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": 0, "inputs": [],
         "outputs": [], "properties": {}, "widgets_values": values}
        for i, (kind, values) in enumerate([("ConditioningSetMask", [1.5, "mask bounds"]),
                                            ("ConditioningSetArea", [256, 512, 64, 0, 1.1])], start=1)]}
    nodes = load_any(ui, registry, allow_missing=True)["nodes"]
    assert nodes["1"]["inputs"] == {"strength": 1.5, "set_cond_area": "mask bounds"}
    assert nodes["2"]["inputs"] == {"width": 256, "height": 512, "x": 64, "y": 0, "strength": 1.1}


def _advanced(seed, latent, positive, **settings) -> dict:
    inputs = {"add_noise": "enable", "noise_seed": seed, "steps": 4, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable",
              "model": ["1", 0], "positive": [positive, 0], "negative": ["5", 0], "latent_image": [latent, 0]}
    return {"class_type": "KSamplerAdvanced", "inputs": inputs | settings}


#: ComfyUI's noisy latent composition: two subjects sampled halfway (their leftover
#: noise kept), pasted together, and finished by a sampler that adds no noise.
NOISY_API = {
    **{k: AREA_API[k] for k in ("1", "3", "4", "5")},
    "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "7": _advanced(1, "6", "3", end_at_step=2, return_with_leftover_noise="enable"),
    "8": _advanced(2, "6", "4", end_at_step=2, return_with_leftover_noise="enable"),
    "9": {"class_type": "LatentComposite", "inputs": {"samples_to": ["7", 0], "samples_from": ["8", 0], "x": 32,
                                                     "y": 0, "feather": 0}},
    "10": _advanced(1, "9", "3", add_noise="disable", start_at_step=2),
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
    "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
}


def test_noisy_latent_composition_pastes_halfway_latents_and_finishes_them(engine):
    doc = load_any(NOISY_API, engine.registry)
    nodes = doc["nodes"]
    assert (nodes["7"]["inputs"]["end_step"], nodes["10"]["inputs"]["start_step"]) == (2, 2)
    doc["nodes"]["capture"] = node("Capture", value={"link": ["9", "latent"]})
    doc["nodes"]["capture_first"] = node("Capture", value={"link": ["7", "latent"]})
    doc["nodes"]["capture_second"] = node("Capture", value={"link": ["8", "latent"]})
    values = engine.run(doc, outputs=["capture", "capture_first", "capture_second", "12"]).values
    first, second = values["7"]["latent"].samples, values["8"]["latent"].samples
    pasted = values["9"]["latent"].samples
    assert torch.equal(pasted[..., :4], first[..., :4]) and torch.equal(pasted[..., 4:], second[..., :4])
    assert np.isfinite(values["11"]["image"].numpy()).all()


def test_a_pasted_halfway_latent_resumes_exactly_where_it_stopped(engine):
    """Pasting a halfway latent into itself and finishing it is the uninterrupted run, bitwise."""
    api = {k: v for k, v in NOISY_API.items() if k in ("1", "3", "5", "6", "7")}
    api["9"] = {"class_type": "LatentComposite", "inputs": {"samples_to": ["7", 0], "samples_from": ["7", 0],
                                                            "x": 0, "y": 0, "feather": 16}}
    api["10"] = _advanced(1, "9", "3", add_noise="disable", start_at_step=2)
    api["20"] = _advanced(1, "6", "3")
    doc = load_any(api, engine.registry)
    doc["nodes"]["a"] = node("Capture", value={"link": ["10", "latent"]})
    doc["nodes"]["b"] = node("Capture", value={"link": ["20", "latent"]})
    values = engine.run(doc, outputs=["a", "b"]).values
    assert torch.equal(values["10"]["latent"].samples, values["20"]["latent"].samples)
