"""The image pack in workflows: LoadImageMask reads input files under the
same format allow-list and pixel limits as LoadImage; sizes reach a
server's budget through resizes; ComfyUI files (API and UI format) import
and export every image and mask node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lcmgraph import Engine, EngineConfig, WorkflowInvalid
from lcmgraph.budget import Budget, Limit
from lcmgraph.comfy import load_any, to_api
from lcmgraph.registry import NodeRegistry
from lcmgraph.results import NodeFailed

CAPTURE = Path(__file__).parents[1] / "diffusion" / "packs"


def link(node, output):
    return {"link": [node, output]}


def doc(nodes, outputs=None):
    out = {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}
    if outputs:
        out["outputs"] = outputs
    return out


def engine_at(tmp_path, budget=None, **options) -> Engine:
    return Engine(EngineConfig(home=tmp_path / "home", models_dir=tmp_path / "models", output_dir=tmp_path / "out",
                               plugins_from_env=False, plugin_dirs=[CAPTURE], device="cpu", options=options,
                               budget=budget))


@pytest.fixture
def engine(tmp_path):
    (tmp_path / "models" / "input").mkdir(parents=True)
    return engine_at(tmp_path)


def value(engine, nodes, node, output):
    nodes = dict(nodes, capture={"type": "Capture", "inputs": {"value": link(node, output)}})
    return engine.run(doc(nodes, ["capture"])).values[node][output]


# -- LoadImageMask --------------------------------------------------------------------------
def test_load_image_mask_reads_each_channel(engine, tmp_path):
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 255, 128, 0, 64
    Image.fromarray(rgba, "RGBA").save(tmp_path / "models" / "input" / "m.png")
    Image.fromarray(np.full((3, 4), 200, dtype=np.uint8), "L").save(tmp_path / "models" / "input" / "grey.png")
    for channel, expected in (("red", 1.0), ("green", 128 / 255), ("blue", 0.0), ("alpha", 1.0 - 64 / 255)):
        mask = value(engine, {"m": {"type": "LoadImageMask", "inputs": {"image": "m.png", "channel": channel}}},
                     "m", "mask")
        assert mask.shape == (1, 3, 4)
        assert torch.allclose(mask, torch.full((1, 3, 4), expected))
    # Without alpha the picture is opaque: nothing to change.
    mask = value(engine, {"m": {"type": "LoadImageMask", "inputs": {"image": "grey.png", "channel": "alpha"}}}, "m", "mask")
    assert torch.all(mask == 0.0)
    mask = value(engine, {"m": {"type": "LoadImageMask", "inputs": {"image": "grey.png", "channel": "green"}}}, "m", "mask")
    assert torch.allclose(mask, torch.full((1, 3, 4), 200 / 255))


def test_load_image_mask_refuses_other_formats_and_huge_images(tmp_path):
    (tmp_path / "models" / "input").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "models" / "input" / "sneaky.png", format="TIFF")
    Image.new("RGB", (300, 300)).save(tmp_path / "models" / "input" / "big.png")
    engine = engine_at(tmp_path, max_image_pixels=10_000)
    for name, message in (("sneaky.png", "is not a PNG, JPEG, WEBP, GIF, BMP image"),
                          ("big.png", "is 300x300, larger than the 10,000-pixel")):
        with pytest.raises(NodeFailed) as info:
            value(engine, {"m": {"type": "LoadImageMask", "inputs": {"image": name}}}, "m", "mask")
        assert message in str(info.value)


# -- budgets ------------------------------------------------------------------------------------
def test_a_resize_beyond_the_pixel_budget_is_refused(tmp_path):
    budget = Budget({"pixels": Limit(4 * 1024 * 1024, "--max-pixels", lambda a: f"{a:,.0f} pixels")})
    engine = engine_at(tmp_path, budget=budget)
    nodes = {
        "empty": {"type": "EmptyImage", "inputs": {"width": 1024, "height": 1024}},
        "big": {"type": "ImageScaleBy", "inputs": {"image": link("empty", "image"), "scale_by": 8.0}},
        "grey": {"type": "ImageInvert", "inputs": {"image": link("big", "image")}},
        "cut": {"type": "ImageCrop", "inputs": {"image": link("grey", "image"), "width": 64, "height": 64}},
        "capture": {"type": "Capture", "inputs": {"value": link("cut", "image")}},
    }
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(doc(nodes, ["capture"]))
    assert [str(p) for p in info.value.problems] == [
        "node 'big' input 'scale_by': a resized image of 8192x8192 needs 67,108,864 pixels, above this server's "
        "limit of 4,194,304 pixels (--max-pixels)"]
    nodes["big"]["inputs"]["scale_by"] = 2.0
    assert engine.validate(doc(nodes, ["capture"])) == []


# -- ComfyUI ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry():
    from lcmgraph import plugins

    registry = NodeRegistry()
    plugins.load_all(registry, env=False)
    return registry


API = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png", "upload": "image"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bicubic", "width": 0,
                                                 "height": 512, "crop": "center"}},
    "3": {"class_type": "ImageScaleBy", "inputs": {"image": ["2", 0], "upscale_method": "lanczos", "scale_by": 0.5}},
    "4": {"class_type": "ImageScaleToTotalPixels", "inputs": {"image": ["3", 0], "upscale_method": "area",
                                                              "megapixels": 0.5, "resolution_steps": 8}},
    "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
    "6": {"class_type": "ImageCrop", "inputs": {"image": ["5", 0], "width": 64, "height": 32, "x": 4, "y": 8}},
    "7": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 2, "color": 255}},
    "8": {"class_type": "ImageBatch", "inputs": {"image1": ["6", 0], "image2": ["7", 0]}},
    "9": {"class_type": "ImagePadForOutpaint", "inputs": {"image": ["8", 0], "left": 8, "top": 0, "right": 16,
                                                          "bottom": 0, "feathering": 12}},
    "10": {"class_type": "LoadImageMask", "inputs": {"image": "mask.png", "channel": "red", "upload": "image"}},
    "11": {"class_type": "MaskComposite", "inputs": {"destination": ["9", 1], "source": ["10", 0], "x": 0, "y": 0,
                                                     "operation": "xor"}},
    "12": {"class_type": "GrowMask", "inputs": {"mask": ["11", 0], "expand": -2, "tapered_corners": False}},
    "13": {"class_type": "FeatherMask", "inputs": {"mask": ["12", 0], "left": 4, "top": 0, "right": 0, "bottom": 2}},
    "14": {"class_type": "InvertMask", "inputs": {"mask": ["13", 0]}},
    "15": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 88, "height": 32}},
    "16": {"class_type": "ImageToMask", "inputs": {"image": ["9", 0], "channel": "blue"}},
    "17": {"class_type": "MaskComposite", "inputs": {"destination": ["15", 0], "source": ["16", 0], "x": 0, "y": 0,
                                                     "operation": "multiply"}},
    "18": {"class_type": "MaskToImage", "inputs": {"mask": ["14", 0]}},
    "19": {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "masks"}},
    "20": {"class_type": "PreviewImage", "inputs": {"images": ["17", 0]}},
}


def test_every_image_and_mask_class_imports_from_the_api_format(registry):
    nodes = load_any(API, registry)["nodes"]
    assert nodes["2"] == {"type": "ImageScale", "inputs": {"image": link("1", "image"), "upscale_method": "bicubic",
                                                          "width": 0, "height": 512, "crop": "center"}}
    assert nodes["7"] == {"type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch": 2, "color": 255}}
    assert nodes["10"] == {"type": "LoadImageMask", "inputs": {"image": "mask.png", "channel": "red"}}
    assert nodes["11"]["inputs"]["destination"] == link("9", "mask")
    assert nodes["18"]["type"] == "MaskToImage"


def test_image_nodes_round_trip_through_the_api_format(registry):
    once = load_any(API, registry)
    prompt = to_api(once, registry)
    assert {k: v["class_type"] for k, v in prompt.items()} == {k: v["class_type"] for k, v in API.items()}
    for node_id, entry in API.items():
        expected = {k: v for k, v in entry["inputs"].items() if k != "upload"}
        assert prompt[node_id]["inputs"] == expected, node_id
    assert load_any(json.loads(json.dumps(prompt)), registry)["nodes"] == once["nodes"]


def _ui_node(node_id, kind, widgets, inputs=(), outputs=()):
    return {"id": node_id, "type": kind, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link_id} for n, t, link_id in inputs],
            "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
            "properties": {}, "widgets_values": widgets}


def test_ui_widget_orders(registry):
    ui = {"last_node_id": 4, "last_link_id": 2, "version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 3, 0, 4, 0, "MASK"]],
          "nodes": [
              _ui_node(1, "LoadImage", ["photo.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
              # An older ComfyUI: no resolution_steps widget.
              _ui_node(2, "ImageScaleToTotalPixels", ["bilinear", 1.5], inputs=[("image", "IMAGE", 1)],
                       outputs=[("IMAGE", "IMAGE", [])]),
              _ui_node(3, "LoadImageMask", ["mask.png", "green", "image"], outputs=[("MASK", "MASK", [2])]),
              _ui_node(4, "GrowMask", [3, False], inputs=[("mask", "MASK", 2)], outputs=[("MASK", "MASK", [])]),
          ]}
    nodes = load_any(ui, registry)["nodes"]
    assert nodes["2"]["inputs"] == {"image": link("1", "image"), "upscale_method": "bilinear", "megapixels": 1.5}
    assert nodes["3"]["inputs"] == {"image": "mask.png", "channel": "green"}
    assert nodes["4"]["inputs"] == {"mask": link("3", "mask"), "expand": 3, "tapered_corners": False}
