"""Export to ComfyUI's API format, and round trips: lcmgraph -> ComfyUI API ->
lcmgraph gives the same graph; ComfyUI -> lcmgraph -> ComfyUI -> lcmgraph too."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from lcmgraph.comfy import ComfyExportError, load_any, to_api

from .helpers import WORKFLOWS, image, link, load, native, node, normalized, txt2img

EXAMPLES = sorted((Path(__file__).parents[2] / "workflows").glob("*.json"))

#: ComfyUI's classes as its nodes.py / comfy_extras declare them: inputs, number of outputs.
COMFY = {
    "CheckpointLoaderSimple": ({"ckpt_name"}, 3),
    "CLIPTextEncode": ({"text", "clip"}, 1),
    "CLIPTextEncodeSDXL": ({"clip", "width", "height", "crop_w", "crop_h", "target_width", "target_height",
                            "text_g", "text_l"}, 1),
    "EmptyLatentImage": ({"width", "height", "batch_size"}, 1),
    "KSampler": ({"model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                  "latent_image", "denoise"}, 1),
    "KSamplerAdvanced": ({"model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                          "negative", "latent_image", "start_at_step", "end_at_step", "return_with_leftover_noise"}, 1),
    "ModelSamplingDiscrete": ({"model", "sampling", "zsnr"}, 1),
    "VAEDecode": ({"samples", "vae"}, 1),
    "VAEEncode": ({"pixels", "vae"}, 1),
    "VAEDecodeTiled": ({"samples", "vae", "tile_size", "overlap", "temporal_size", "temporal_overlap"}, 1),
    "LoadImage": ({"image"}, 2),
    "SaveImage": ({"images", "filename_prefix"}, 0),
    "PreviewImage": ({"images"}, 0),
    "LoraLoader": ({"model", "clip", "lora_name", "strength_model", "strength_clip"}, 2),
    "LoraLoaderModelOnly": ({"model", "lora_name", "strength_model"}, 1),
    "ControlNetLoader": ({"control_net_name"}, 1),
    "ControlNetApplyAdvanced": ({"positive", "negative", "control_net", "image", "strength", "start_percent",
                                 "end_percent"}, 2),
    "PrimitiveInt": ({"value"}, 1),
    "VAELoader": ({"vae_name"}, 1),
    "LatentUpscaleBy": ({"samples", "upscale_method", "scale_by"}, 1),
    "ImageScale": ({"image", "upscale_method", "width", "height", "crop"}, 1),
    "LoadImageMask": ({"image", "channel"}, 1),
    "VAEEncodeForInpaint": ({"pixels", "vae", "mask", "grow_mask_by"}, 1),
    "InpaintModelConditioning": ({"positive", "negative", "vae", "pixels", "mask", "noise_mask"}, 3),
    "ImagePadForOutpaint": ({"image", "left", "top", "right", "bottom", "feathering"}, 2),
    "ConditioningCombine": ({"conditioning_1", "conditioning_2"}, 1),
    "ConditioningSetArea": ({"conditioning", "width", "height", "x", "y", "strength"}, 1),
    "ConditioningSetAreaStrength": ({"conditioning", "strength"}, 1),
}


def _check_comfy(prompt: dict) -> None:
    """What ComfyUI's /prompt checks: known classes, their inputs, links to existing outputs."""
    for node_id, entry in prompt.items():
        inputs, _ = COMFY[entry["class_type"]]
        assert set(entry["inputs"]) == inputs, (node_id, entry)
        assert isinstance(entry["_meta"]["title"], str)
        for value in entry["inputs"].values():
            if isinstance(value, list):
                source, index = value
                assert index < COMFY[prompt[source]["class_type"]][1], (node_id, value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_round_trip_through_the_api_format(registry, path):
    doc = json.loads(path.read_text())
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    json.dumps(prompt)  # what a client POSTs
    back = load_any(json.loads(json.dumps(prompt)), registry)
    expected = normalized(doc, registry)
    if path.stem == "sdxl_lcm":
        # 0 ("the image size") is written out for CLIPTextEncodeSDXL: the 64x64 latent.
        expected["positive"]["inputs"].update(target_width=64, target_height=64)
    assert normalized(back, registry) == expected


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("api_*.json")))
def test_comfy_files_round_trip(registry, name):
    once = load_any(load(name), registry)
    twice = load_any(to_api(once, registry), registry)
    assert normalized(twice, registry) == normalized(once, registry)


def test_txt2img_export(registry):
    prompt = to_api(json.loads((EXAMPLES[0].parent / "txt2img_lcm.json").read_text()), registry)
    assert prompt["sampler"] == {"class_type": "KSampler", "_meta": {"title": "KSampler"}, "inputs": {
        "model": ["sampler.model_sampling", 0], "positive": ["positive", 0], "negative": ["sampler.negative", 0],
        "latent_image": ["latent", 0], "sampler_name": "lcm", "scheduler": "sgm_uniform", "denoise": 1.0,
        "seed": 42, "steps": 4, "cfg": 1.0}}
    # the default workflow's LCM-LoRA (on the UNet only) is ComfyUI's model-only LoRA loader
    assert prompt["lcm_lora"] == {
        "class_type": "LoraLoaderModelOnly", "_meta": {"title": "LoraLoaderModelOnly"},
        "inputs": {"model": ["ckpt", 0], "lora_name": "builtin:tiny-shapes-lcm-lora", "strength_model": 1.0}}
    assert prompt["sampler.model_sampling"] == {
        "class_type": "ModelSamplingDiscrete", "inputs": {"model": ["lcm_lora", 0], "sampling": "lcm", "zsnr": False},
        "_meta": {"title": "ModelSamplingDiscrete", "lcmgraph_added": True}}
    assert prompt["sampler.negative"] == {
        "class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]},
        "_meta": {"title": "empty negative (added by lcmgraph)", "lcmgraph_added": True}}


def test_an_edited_added_negative_is_kept(registry):
    prompt = to_api(json.loads((EXAMPLES[0].parent / "txt2img_lcm.json").read_text()), registry)
    prompt["sampler.negative"]["inputs"]["text"] = "blurry"
    doc = load_any(prompt, registry)
    assert doc["nodes"]["sampler"]["inputs"]["negative"] == link("sampler.negative", "conditioning")


def _sampler_doc(**inputs) -> dict:
    return txt2img(node("Sampler", **{"scheduler": "euler", "seed": 1, "steps": 20, "cfg": 7.0, **inputs}))


@pytest.mark.parametrize("inputs, class_type, comfy", [
    ({}, "KSampler", {"steps": 20, "denoise": 1.0}),
    ({"denoise": 0.6}, "KSampler", {"steps": 12, "denoise": 0.6}),
    ({"end_step": 15}, "KSamplerAdvanced", {"add_noise": "enable", "start_at_step": 0, "end_at_step": 15,
                                            "return_with_leftover_noise": "enable"}),
    ({"start_step": 15}, "KSamplerAdvanced", {"add_noise": "disable", "start_at_step": 15, "end_at_step": 10000,
                                              "return_with_leftover_noise": "disable"}),
    ({"scheduler": "lcm", "steps": 4}, "KSamplerAdvanced", {"add_noise": "enable", "start_at_step": 0, "steps": 4,
                                                            "sampler_name": "lcm", "scheduler": "sgm_uniform"}),
    ({"scheduler": "dpmpp_2m_karras"}, "KSampler", {"sampler_name": "dpmpp_2m", "scheduler": "karras"}),
    ({"add_noise": False}, "KSamplerAdvanced", {"add_noise": "disable", "start_at_step": 0, "end_at_step": 10000,
                                                "return_with_leftover_noise": "disable"}),
    ({"scheduler": "euler_cfg_pp", "cfg": 1.5}, "KSampler", {"sampler_name": "euler_cfg_pp", "cfg": 1.5}),
])
def test_sampler_exports_and_comes_back(registry, inputs, class_type, comfy):
    doc = _sampler_doc(**inputs)
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    assert prompt["sampler"]["class_type"] == class_type
    assert {k: prompt["sampler"]["inputs"][k] for k in comfy} == comfy
    assert normalized(load_any(prompt, registry), registry) == normalized(doc, registry)


def test_truncated_sampler_with_an_end_step_runs_the_same_steps(registry):
    prompt = to_api(_sampler_doc(denoise=0.5, end_step=6), registry)
    assert {k: prompt["sampler"]["inputs"][k] for k in ("add_noise", "steps", "start_at_step", "end_at_step")} == {
        "add_noise": "enable", "steps": 20, "start_at_step": 10, "end_at_step": 16}
    back = load_any(prompt, registry)["nodes"]["sampler"]["inputs"]
    assert {k: back[k] for k in ("steps", "denoise", "start_step", "end_step")} == {
        "steps": 20, "denoise": 0.5, "start_step": 0, "end_step": 6}


def test_controlnet_chain_hints_the_negative_as_lcmgraph_does(registry):
    doc = txt2img(node("LCMSampler", seed=3, guidance=1.5), positive=link("cn_b", "conditioning"))
    doc["nodes"].update(
        net=node("LoadControlNet", controlnet="cn"), hint=node("LoadImage", image="hint.png"),
        cn_a=node("ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("net", "control_net"),
                  image=link("hint", "image"), strength=0.5),
        cn_b=node("ApplyControlNet", conditioning=link("cn_a", "conditioning"), control_net=link("net", "control_net"),
                  image=link("hint", "image"), strength=0.7, end=0.5),
    )
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    assert prompt["cn_a"]["inputs"]["negative"] == ["neg", 0]
    assert prompt["cn_b"]["inputs"]["negative"] == ["cn_a", 1]
    assert prompt["cn_b"]["inputs"]["positive"] == ["cn_a", 0]
    assert prompt["sampler"]["inputs"]["negative"] == ["cn_b", 1]
    assert normalized(load_any(prompt, registry), registry) == normalized(doc, registry)


def test_one_controlnet_before_two_negatives_is_written_twice(registry):
    doc = txt2img(node("LCMSampler", seed=3, guidance=1.5), positive=link("cn", "conditioning"))
    doc["nodes"].update(
        net=node("LoadControlNet", controlnet="cn"), hint=node("LoadImage", image="hint.png"),
        cn=node("ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("net", "control_net"),
                image=link("hint", "image")),
        neg2=node("TextEncode", clip=link("ckpt", "clip"), text="dark"),
        sampler2=node("LCMSampler", model=link("ckpt", "model"), positive=link("cn", "conditioning"),
                      negative=link("neg2", "conditioning"), latent=link("latent", "latent"), guidance=1.5),
        decode2=node("VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler2", "latent")),
    )
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    negatives = {prompt[s]["inputs"]["negative"][0] for s in ("sampler", "sampler2")}
    assert negatives == {"cn", "cn.2"}
    assert {prompt[c]["inputs"]["negative"][0] for c in negatives} == {"neg", "neg2"}


def test_img2img_node_exports_as_its_two_node_form(registry):
    doc = json.loads((EXAMPLES[0].parent / "img2img_lcm.json").read_text())
    nodes = doc["nodes"]
    del nodes["encode"]
    nodes["sampler"] = node("Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
                            positive=link("positive", "conditioning"), image=link("image", "image"),
                            strength=0.6, seed=7)
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    assert prompt["sampler.encode"]["class_type"] == "VAEEncode"
    assert prompt["sampler"]["inputs"]["latent_image"] == ["sampler.encode", 0]
    assert prompt["sampler"]["inputs"]["denoise"] == 0.6
    back = load_any(prompt, registry)["nodes"]
    assert back["sampler"]["type"] == "LCMSampler"
    assert back["sampler"]["inputs"]["latent"] == link("sampler.encode", "latent")


def test_img2img_export_draws_the_same_image(engine):
    doc = native({
        "ckpt": node("LoadCheckpoint", checkpoint="tiny"),
        "pos": node("TextEncode", clip=link("ckpt", "clip"), text="a sun"),
        "hint": node("LoadImage", image="hint.png"),
        "sampler": node("Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
                        positive=link("pos", "conditioning"), image=link("hint", "image"), strength=0.7, seed=2),
        "decode": node("VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent")),
    })
    back = load_any(to_api(doc, engine.registry), engine.registry)
    assert np.array_equal(image(engine, back, "decode"), image(engine, doc, "decode"))


def test_ui_placeholders_do_not_export_but_api_ones_do(registry):
    doc = txt2img(node("LCMSampler", seed=1))
    doc["nodes"]["up"] = node("comfy:ImageScale", image=link("decode", "image"), widgets_values=["bilinear", 64])
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert err.value.problems == ["node 'up' (comfy:ImageScale): a placeholder read from ComfyUI's UI format keeps "
                                  "its widget values without names, which the API format needs"]
    doc["nodes"]["up"] = node("comfy:ImageScale", image=link("decode", "image"), upscale_method="bilinear")
    doc["nodes"]["save"] = node("SaveImage", image=link("up", "output_0"))
    prompt = to_api(doc, registry)
    assert prompt["up"]["inputs"] == {"image": ["decode", 0], "upscale_method": "bilinear"}
    assert prompt["save"]["inputs"]["images"] == ["up", 0]


def test_what_comfyui_cannot_express_is_refused_naming_it(registry):
    doc = txt2img(node("Sampler", scheduler="euler", timesteps="999,749", seed=1))
    doc["nodes"]["other"] = node("Sampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
                                 latent=link("latent", "latent"), scheduler="ddim", eta=0.3)
    doc["nodes"]["lcm"] = node("LCMSampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
                               latent=link("latent", "latent"), original_inference_steps=30, steps=2)
    doc["nodes"]["decode"]["inputs"]["tiled"] = True
    doc["nodes"]["pos"]["inputs"]["original_width"] = 1024
    doc["nodes"]["latent"]["inputs"]["width"] = link("w", "value")
    doc["nodes"]["w"] = node("Int", value=64)
    doc["nodes"]["mystery"] = node("Frobnicate")
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert str(err.value) == "\n".join([
        "the workflow cannot be exported to ComfyUI's API format (5 problems):",
        "  - node 'pos' (TextEncode): SDXL sizes of 0 mean the image size, which ComfyUI's CLIPTextEncodeSDXL "
        "needs written out and lcmgraph cannot tell here; set the original and target sizes",
        "  - node 'sampler' (Sampler): custom timesteps have no ComfyUI KSampler equivalent",
        "  - node 'other' (Sampler): eta 0.3: ComfyUI's ddim sampler is deterministic (eta 0)",
        "  - node 'lcm' (LCMSampler): original_inference_steps 30: ComfyUI's LCM schedule always uses 50",
        "  - node 'mystery' (Frobnicate): unknown node type 'Frobnicate' has no ComfyUI equivalent",
    ])


def test_tiled_vae_and_primitives_export(registry):
    doc = txt2img(node("LCMSampler", seed=link("seed", "value")))
    doc["nodes"]["seed"] = node("Int", value=5)
    doc["nodes"]["decode"]["inputs"]["tiled"] = True
    prompt = to_api(doc, registry)
    _check_comfy(prompt)
    assert prompt["decode"]["class_type"] == "VAEDecodeTiled"
    assert prompt["seed"] == {"class_type": "PrimitiveInt", "inputs": {"value": 5}, "_meta": {"title": "Int"}}
    assert prompt["sampler"]["inputs"]["seed"] == ["seed", 0]
    assert normalized(load_any(prompt, registry), registry) == normalized(doc, registry)


def test_titles_travel_both_ways(registry):
    doc = txt2img(node("LCMSampler", seed=1))
    doc["nodes"]["pos"]["title"] = "Prompt"
    prompt = to_api(copy.deepcopy(doc), registry)
    assert prompt["pos"]["_meta"]["title"] == "Prompt"
    assert prompt["neg"]["_meta"]["title"] == "CLIP Text Encode (Prompt)"
    back = load_any(prompt, registry)["nodes"]
    assert back["pos"]["title"] == "Prompt" and "title" not in back["neg"]


def test_plain_prompts_export_escaped(registry):
    doc = txt2img(node("LCMSampler", seed=1, steps=4), prompt="a (red) circle \\(x", negative="embedding:x")
    doc["nodes"]["pos"]["inputs"]["syntax"] = "plain"
    prompt = to_api(doc, registry)
    assert prompt["pos"]["inputs"]["text"] == "a \\(red\\) circle \\\\(x"
    assert prompt["neg"]["inputs"]["text"] == "embedding:x"  # "comfy": the same syntax as ComfyUI's
    back = load_any(prompt, registry)["nodes"]["pos"]["inputs"]
    assert back["text"] == "a \\(red\\) circle \\\\(x" and "syntax" not in back
    doc["nodes"]["neg"]["inputs"]["syntax"] = "plain"
    with pytest.raises(ComfyExportError, match="embedding"):
        to_api(doc, registry)
