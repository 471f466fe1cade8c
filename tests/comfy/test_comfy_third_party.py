"""Third-party ComfyUI nodes with an exact lcmgraph meaning: WAS Node Suite's
Seed (a value node), YANC's > Save Image (SaveImage) and IPAdapter_plus's
nodes (their own names here)."""

from __future__ import annotations

import pytest

from lcmgraph.comfy import ComfyImportError, load_any, to_api


def _api(**save) -> dict:
    """Enigmayc's shape (tests/comfy/corpus/api_enigmayc_sdxl_lightning.json), cut down."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": ["27", 3], "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "23": {"class_type": "> Save Image", "inputs": {
            "filename_prefix": "", "folder": "", "overwrite_warning": False, "include_metadata": True,
            "extension": "png", "quality": 100, "images": ["8", 0], **save}},
        "27": {"class_type": "Seed", "inputs": {"seed": 669794192449111}},
    }


def test_was_seed_is_a_value_node_feeding_the_seed(registry):
    doc = load_any(_api(), registry)
    assert doc["nodes"]["27"] == {"type": "Int", "inputs": {"value": 669794192449111}}
    assert doc["nodes"]["3"]["inputs"]["seed"] == {"link": ["27", "value"]}


def test_yanc_save_image_is_save_image_with_its_prefix(registry):
    doc = load_any(_api(filename_prefix="cats", folder="run1"), registry)
    assert doc["nodes"]["23"] == {"type": "SaveImage", "inputs": {
        "image": {"link": ["8", "image"]}, "filename_prefix": "run1/cats"}}
    empty = load_any(_api(), registry)
    assert empty["nodes"]["23"]["inputs"]["filename_prefix"] == ""
    assert any("empty filename_prefix" in n for n in empty["meta"]["comfy_import"]["notes"])


@pytest.mark.parametrize("save, message", [
    ({"extension": "webp"}, "extension 'webp': lcmgraph's SaveImage writes PNG files only"),
    ({"include_metadata": False}, "include_metadata false: lcmgraph's SaveImage always embeds the workflow"),
    ({"filename_opt": ["6", 0]}, "filename_opt names the file itself"),
    ({"filename_prefix": "img_%Y-%m-%d"}, "date placeholders"),
])
def test_yanc_save_image_settings_without_equivalent_are_refused(registry, save, message):
    with pytest.raises(ComfyImportError) as caught:
        load_any(_api(**save), registry)
    (problem,) = caught.value.problems
    assert problem.startswith("node 23 (> Save Image): ") and message in problem


def test_a_was_seed_output_without_lcmgraph_type_is_refused(registry):
    api = _api()
    api["3"]["inputs"]["seed"] = ["27", 2]  # the FLOAT output
    with pytest.raises(ComfyImportError) as caught:
        load_any(api, registry)
    assert "node 27 (Seed) has no output 2" in str(caught.value)


def test_ipadapter_plus_ui_workflow_imports_with_its_widget_order_and_exports_back(registry):
    """A UI-format graph as IPAdapter_plus's own examples wire it (unified loader -> prep -> advanced)."""
    node = lambda i, kind, widgets, inputs=(), outputs=(): {  # noqa: E731
        "id": i, "type": kind, "widgets_values": list(widgets), "mode": 0,
        "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
        "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs]}
    ui = {"version": 0.4, "links": [[1, 4, 0, 11, 0, "MODEL"], [2, 10, 0, 12, 0, "IMAGE"],
                                    [3, 11, 0, 14, 0, "MODEL"], [4, 11, 1, 14, 1, "IPADAPTER"],
                                    [5, 12, 0, 14, 2, "IMAGE"]],
          "nodes": [
              node(4, "CheckpointLoaderSimple", ["sd15.safetensors"], (), [("MODEL", "MODEL", [1])]),
              node(10, "LoadImage", ["ref.png", "image"], (), [("IMAGE", "IMAGE", [2])]),
              node(11, "IPAdapterUnifiedLoader", ["PLUS (high strength)"], [("model", "MODEL", 1),
                                                                             ("ipadapter", "IPADAPTER", None)],
                   [("MODEL", "MODEL", [3]), ("ipadapter", "IPADAPTER", [4])]),
              node(12, "PrepImageForClipVision", ["BICUBIC", "top", 0.15], [("image", "IMAGE", 2)],
                   [("IMAGE", "IMAGE", [5])]),
              node(14, "IPAdapterAdvanced", [0.8, "ease in", "average", 0.1, 0.9, "K+V"],
                   [("model", "MODEL", 3), ("ipadapter", "IPADAPTER", 4), ("image", "IMAGE", 5)],
                   [("MODEL", "MODEL", [])])]}
    nodes = load_any(ui, registry)["nodes"]
    assert nodes["11"] == {"type": "IPAdapterUnifiedLoader", "inputs": {"model": {"link": ["4", "model"]},
                                                                         "preset": "PLUS (high strength)"}}
    assert nodes["12"]["inputs"] == {"image": {"link": ["10", "image"]}, "interpolation": "BICUBIC",
                                     "crop_position": "top", "sharpening": 0.15}
    assert nodes["14"] == {"type": "IPAdapterAdvanced", "inputs": {
        "model": {"link": ["11", "model"]}, "ipadapter": {"link": ["11", "ipadapter"]},
        "image": {"link": ["12", "image"]}, "weight": 0.8, "weight_type": "ease in", "combine_embeds": "average",
        "start_at": 0.1, "end_at": 0.9, "embeds_scaling": "K+V"}}
    api = to_api({"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}, registry)
    assert api["14"] == {"class_type": "IPAdapterAdvanced", "inputs": {
        "model": ["11", 0], "ipadapter": ["11", 1], "image": ["12", 0], "weight": 0.8, "weight_type": "ease in",
        "combine_embeds": "average", "start_at": 0.1, "end_at": 0.9, "embeds_scaling": "K+V"},
        "_meta": {"title": "IPAdapter Advanced"}}
