"""ComfyUI's model-merging, FreeU and RescaleCFG classes convert both ways (API and UI format), and
the model kinds lcmgraph does not load are refused by name, all at once."""

from __future__ import annotations

import pytest

from lcmgraph.comfy import ComfyImportError, load_any, to_api

from .helpers import link, native, node


def _api(extra: dict) -> dict:
    api = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
    }
    api.update(extra)
    return api


MERGES = [
    ("ModelMergeSimple", {"model1": ["4", 0], "model2": ["5", 0], "ratio": 0.3}, "ModelMergeSimple",
     {"model1": link("4", "model"), "model2": link("5", "model"), "ratio": 0.3}),
    ("ModelMergeBlocks", {"model1": ["4", 0], "model2": ["5", 0], "input": 0.1, "middle": 0.2, "out": 0.3},
     "ModelMergeBlocks", {"model1": link("4", "model"), "model2": link("5", "model"), "input": 0.1, "middle": 0.2,
                          "out": 0.3}),
    ("ModelMergeAdd", {"model1": ["4", 0], "model2": ["5", 0]}, "ModelMergeAdd",
     {"model1": link("4", "model"), "model2": link("5", "model")}),
    ("ModelMergeSubtract", {"model1": ["4", 0], "model2": ["5", 0], "multiplier": -2.0}, "ModelMergeSubtract",
     {"model1": link("4", "model"), "model2": link("5", "model"), "multiplier": -2.0}),
    ("CLIPMergeSimple", {"clip1": ["4", 1], "clip2": ["5", 1], "ratio": 0.5}, "CLIPMergeSimple",
     {"clip1": link("4", "clip"), "clip2": link("5", "clip"), "ratio": 0.5}),
    ("CLIPMergeAdd", {"clip1": ["4", 1], "clip2": ["5", 1]}, "CLIPMergeAdd",
     {"clip1": link("4", "clip"), "clip2": link("5", "clip")}),
    ("CLIPMergeSubtract", {"clip1": ["4", 1], "clip2": ["5", 1], "multiplier": 0.5}, "CLIPMergeSubtract",
     {"clip1": link("4", "clip"), "clip2": link("5", "clip"), "multiplier": 0.5}),
    ("FreeU", {"model": ["4", 0], "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}, "FreeU",
     {"model": link("4", "model"), "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}),
    ("FreeU_V2", {"model": ["4", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}, "FreeU_V2",
     {"model": link("4", "model"), "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}),
    ("RescaleCFG", {"model": ["4", 0], "multiplier": 0.7}, "RescaleCFG", {"model": link("4", "model"), "multiplier": 0.7}),
    ("UpscaleModelLoader", {"model_name": "4x.pth"}, "UpscaleModelLoader", {"model_name": "4x.pth"}),
    ("CheckpointSave", {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2], "filename_prefix": "checkpoints/ComfyUI"},
     "CheckpointSave", {"model": link("4", "model"), "clip": link("4", "clip"), "vae": link("4", "vae"),
                        "filename_prefix": "checkpoints/ComfyUI"}),
]


@pytest.mark.parametrize("comfy, inputs, ours, expected", MERGES, ids=[m[0] for m in MERGES])
def test_merges_import_and_export(registry, comfy, inputs, ours, expected):
    nodes = load_any(_api({"9": {"class_type": comfy, "inputs": inputs}}), registry)["nodes"]
    assert nodes["9"] == {"type": ours, "inputs": expected}
    prompt = to_api(native({"4": node("LoadCheckpoint", checkpoint="a.safetensors"),
                            "5": node("LoadCheckpoint", checkpoint="b.safetensors"),
                            "9": node(ours, **expected)}), registry)
    assert prompt["9"]["class_type"] == comfy and prompt["9"]["inputs"] == inputs


def test_per_block_merges_use_comfyuis_input_names(registry):
    sdxl = {"model1": ["4", 0], "model2": ["5", 0], "time_embed.": 0.5, "label_emb.": 0.25,
            **{f"input_blocks.{i}": 1.0 for i in range(9)}, **{f"middle_block.{i}": 1.0 for i in range(3)},
            **{f"output_blocks.{i}": 0.0 for i in range(9)}, "out.": 0.75}
    nodes = load_any(_api({"9": {"class_type": "ModelMergeSDXL", "inputs": sdxl}}), registry)["nodes"]
    assert nodes["9"]["inputs"]["label_emb"] == 0.25 and nodes["9"]["inputs"]["output_blocks_8"] == 0.0
    assert nodes["9"]["inputs"]["out"] == 0.75
    assert to_api(load_any(_api({"9": {"class_type": "ModelMergeSDXL", "inputs": sdxl}}), registry),
                  registry)["9"]["inputs"] == sdxl
    sd1 = {"model1": ["4", 0], "model2": ["5", 0], "time_embed.": 1.0, "label_emb.": 1.0,
           **{f"input_blocks.{i}.": 0.5 for i in range(12)}, **{f"middle_block.{i}.": 1.0 for i in range(3)},
           **{f"output_blocks.{i}.": 1.0 for i in range(12)}, "out.": 1.0}
    for kind in ("ModelMergeSD1", "ModelMergeSD2"):
        nodes = load_any(_api({"9": {"class_type": kind, "inputs": sd1}}), registry)["nodes"]
        assert nodes["9"]["type"] == "ModelMergeSD1" and nodes["9"]["inputs"]["input_blocks_11"] == 0.5


def test_ui_format_widget_order(registry):
    ui = {"last_node_id": 9, "last_link_id": 2, "version": 0.4, "links": [
        [1, 4, 0, 9, 0, "MODEL"], [2, 5, 0, 9, 1, "MODEL"]], "nodes": [
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["a.safetensors"], "outputs": [], "inputs": []},
        {"id": 5, "type": "CheckpointLoaderSimple", "widgets_values": ["b.safetensors"], "outputs": [], "inputs": []},
        {"id": 9, "type": "ModelMergeBlocks", "widgets_values": [0.1, 0.2, 0.3], "outputs": [],
         "inputs": [{"name": "model1", "link": 1}, {"name": "model2", "link": 2}]}]}
    nodes = load_any(ui, registry)["nodes"]
    assert nodes["9"]["inputs"] == {"model1": link("4", "model"), "model2": link("5", "model"), "input": 0.1,
                                    "middle": 0.2, "out": 0.3}


def test_unsupported_model_kinds_are_named_all_at_once(registry):
    api = _api({
        "10": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": "unclip.safetensors"}},
        "11": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["4", 0], "image": ["4", 0],
                                                        "crop": "center"}},
        "12": {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "g.safetensors"}},
        "13": {"class_type": "HypernetworkLoader", "inputs": {"model": ["4", 0], "hypernetwork_name": "h.pt",
                                                              "strength": 1.0}},
        "14": {"class_type": "ModelSamplingContinuousEDM", "inputs": {"model": ["4", 0], "sampling": "v_prediction",
                                                                      "sigma_max": 120.0, "sigma_min": 0.002}},
        "15": {"class_type": "SomethingElse", "inputs": {}},
    })
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    problems = err.value.problems
    assert problems[:5] == [
        "node 10 (unCLIPCheckpointLoader): unCLIP checkpoints (SD2.1 unCLIP) are not supported yet in lcmgraph",
        "node 11 (CLIPVisionEncode): CLIP vision outputs (for unCLIP and style models) are not supported yet in "
        "lcmgraph",
        "node 12 (GLIGENLoader): GLIGEN models are not supported yet in lcmgraph",
        "node 13 (HypernetworkLoader): hypernetworks are not supported yet in lcmgraph",
        "node 14 (ModelSamplingContinuousEDM): continuous EDM model sampling (Playground v2.5, CosXL...) is not "
        "supported yet in lcmgraph"]
    assert "SomethingElse" in problems[5]
    face = _api({"20": {"class_type": "IPAdapterUnifiedLoaderFaceID", "inputs": {"model": ["4", 0], "preset": "FACEID",
                                                                                 "lora_strength": 0.6, "provider": "CPU"}}})
    with pytest.raises(ComfyImportError) as err:
        load_any(face, registry)
    assert err.value.problems == ["node 20 (IPAdapterUnifiedLoaderFaceID): IP-Adapter FaceID (it needs insightface's "
                                  "face analysis) is not supported yet in lcmgraph"]
    # The UI format reaches the same message whatever widgets the class has in this ComfyUI version.
    ui = {"version": 0.4, "links": [], "nodes": [
        {"id": 3, "type": "GLIGENTextBoxApply", "widgets_values": ["a cat", 64, 64, 0, 0, "extra"], "outputs": [],
         "inputs": []}]}
    with pytest.raises(ComfyImportError) as err:
        load_any(ui, registry)
    assert err.value.problems == ["node 3 (GLIGENTextBoxApply): GLIGEN models are not supported yet in lcmgraph"]


def test_upscale_with_model_imports_and_exports(registry):
    api = _api({"8": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
                "9": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                "10": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["8", 0], "image": ["9", 0]}}})
    converted = load_any(api, registry)
    assert converted["nodes"]["10"] == {"type": "ImageUpscaleWithModel", "inputs": {
        "upscale_model": link("8", "upscale_model"), "image": link("9", "image")}}
    assert to_api(converted, registry)["10"]["inputs"] == api["10"]["inputs"]
