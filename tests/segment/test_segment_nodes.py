"""The segment pack in workflows: comfyui_segment_anything's nodes import from
ComfyUI files, run on tiny files under the released names, keep the models
between runs, and name what is missing or wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lcmgraph_nodes.segment import grounding_dino as G
from lcmgraph_nodes.segment import sam as S
from PIL import Image

from lcmgraph import Engine, EngineConfig
from lcmgraph.comfy import load_any, to_api
from lcmgraph.results import NodeFailed

from ..comfy.helpers import new_registry
from .tiny_files import save_segment_models

CAPTURE = Path(__file__).parents[1] / "diffusion" / "packs"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    (root / "input").mkdir()
    y, x = np.mgrid[0:48, 0:64]
    picture = np.stack([x * 4, y * 5, np.full_like(x, 90)], -1).astype(np.uint8)
    picture[10:30, 20:44] = (230, 30, 30)
    Image.fromarray(picture).save(root / "input" / "photo.png")
    folders = {**save_segment_models(root / "models"), "input": [root / "input"]}
    return Engine(EngineConfig(home=root / "home", models_dir=root / "models", output_dir=root / "out",
                               plugins_from_env=False, plugin_dirs=[CAPTURE], device="cpu", folders=folders))


def workflow(prompt="red block", threshold=0.3, sam="sam_vit_b (375MB)"):
    return {"format": "lcmgraph.workflow", "version": 1, "outputs": ["image_out", "mask_out"], "nodes": {
        "img": {"type": "LoadImage", "inputs": {"image": "photo.png"}},
        "sam": {"type": "SAMModelLoader", "inputs": {"model_name": sam}},
        "dino": {"type": "GroundingDinoModelLoader", "inputs": {"model_name": "GroundingDINO_SwinT_OGC (694MB)"}},
        "seg": {"type": "GroundingDinoSAMSegment", "inputs": {
            "sam_model": {"link": ["sam", "sam_model"]}, "grounding_dino_model": {"link": ["dino", "grounding_dino_model"]},
            "image": {"link": ["img", "image"]}, "prompt": prompt, "threshold": threshold}},
        "image_out": {"type": "Capture", "inputs": {"value": {"link": ["seg", "image"]}}},
        "mask_out": {"type": "Capture", "inputs": {"value": {"link": ["seg", "mask"]}}},
    }}


def test_segment_gives_the_union_of_sams_masks_in_dinos_boxes(engine):
    result = engine.run(workflow())
    image, mask = result.values["seg"]["image"], result.values["seg"]["mask"]
    pixels = np.asarray(result.values["img"]["image"][0].numpy() * 255.0, dtype=np.uint8)
    runtime = engine.runtime
    service = runtime.service("segment_models")
    sam = S.load_model(runtime.files.resolve("sams", "sam_vit_b_01ec64.pth"))
    dino = G.load_model(runtime.files.resolve("grounding-dino", "groundingdino_swint_ogc.pth"))
    tokenizer = G.load_tokenizer(runtime.files.resolve("bert-base-uncased", "vocab.txt").parent)
    boxes = G.detect(dino, tokenizer, pixels, "red block", 0.3)
    expected = S.segment(sam, pixels, boxes).float()
    assert len(boxes) > 0 and mask.shape == (1, 48, 64) and torch.equal(mask[0], expected)
    assert 0 < float(mask.mean()) < 1
    assert torch.equal(image, torch.from_numpy(pixels).float()[None] / 255.0 * mask[..., None])  # black outside
    loads = service.loads
    engine.run(workflow(prompt="face"))  # another prompt: the models stay loaded
    assert service.loads == loads


def test_nothing_found_is_an_empty_mask(engine):
    result = engine.run(workflow(threshold=1.0))
    assert result.values["seg"]["mask"].shape == (1, 48, 64) and not result.values["seg"]["mask"].any()
    assert not result.values["seg"]["image"].any()


def test_missing_and_wrong_files_are_named(engine):
    with pytest.raises(NodeFailed, match=r"SAMModelLoader needs sam_hq_vit_b.pth \(dl.fbaipublicfiles.com"):
        engine.run(workflow(sam="sam_hq_vit_b (379MB)"))
    with pytest.raises(NodeFailed, match="prompt is empty"):
        engine.run(workflow(prompt="  "))


def test_comfyui_files_import_and_export_under_the_packs_names():
    registry = new_registry()
    ui = {"last_node_id": 5, "last_link_id": 4, "version": 0.4, "links": [
        [1, 1, 0, 3, 0, "SAM_MODEL"], [2, 2, 0, 3, 1, "GROUNDING_DINO_MODEL"], [3, 4, 0, 3, 2, "IMAGE"],
        [4, 3, 1, 5, 0, "MASK"]], "nodes": [
        {"id": 1, "type": "SAMModelLoader (segment anything)", "inputs": [], "widgets_values": ["sam_vit_h (2.56GB)"],
         "outputs": [{"name": "SAM_MODEL", "type": "SAM_MODEL", "links": [1]}]},
        {"id": 2, "type": "GroundingDinoModelLoader (segment anything)", "inputs": [],
         "widgets_values": ["GroundingDINO_SwinT_OGC (694MB)"],
         "outputs": [{"name": "GROUNDING_DINO_MODEL", "type": "GROUNDING_DINO_MODEL", "links": [2]}]},
        {"id": 4, "type": "LoadImage", "inputs": [], "widgets_values": ["photo.png", "image"],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}]},
        {"id": 3, "type": "GroundingDinoSAMSegment (segment anything)",
         "inputs": [{"name": "sam_model", "type": "SAM_MODEL", "link": 1},
                    {"name": "grounding_dino_model", "type": "GROUNDING_DINO_MODEL", "link": 2},
                    {"name": "image", "type": "IMAGE", "link": 3}],
         "widgets_values": ["face", 0.35],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}, {"name": "MASK", "type": "MASK", "links": [4]}]},
        {"id": 5, "type": "InvertMask (segment anything)", "inputs": [{"name": "mask", "type": "MASK", "link": 4}],
         "outputs": [{"name": "MASK", "type": "MASK", "links": []}]},
    ]}
    doc = load_any(ui, registry)
    seg = doc["nodes"]["3"]
    assert seg["type"] == "GroundingDinoSAMSegment" and (seg["inputs"]["prompt"], seg["inputs"]["threshold"]) == ("face", 0.35)
    assert doc["nodes"]["5"] == {"type": "InvertMask", "inputs": {"mask": {"link": ["3", "mask"]}}}
    api = to_api(doc, registry)
    assert api["3"]["class_type"] == "GroundingDinoSAMSegment (segment anything)"
    assert api["1"]["inputs"] == {"model_name": "sam_vit_h (2.56GB)"}
    assert api["5"]["class_type"] == "InvertMask" and api["5"]["inputs"]["mask"] == ["3", 1]
