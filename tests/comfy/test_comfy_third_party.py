"""Single third-party ComfyUI nodes with an exact lcmgraph meaning: WAS Node
Suite's Seed (a value node) and YANC's > Save Image (SaveImage)."""

from __future__ import annotations

import pytest

from lcmgraph.comfy import ComfyImportError, load_any


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
