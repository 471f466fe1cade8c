"""The preprocessors import from ComfyUI files (API and UI format) and export
back under the same class names."""

from __future__ import annotations

import pytest

from lcmgraph.comfy import load_any, to_api
from tests.comfy.helpers import new_registry


@pytest.fixture(scope="module")
def registry():
    return new_registry()


def _api(class_type: str, **inputs) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "hint.png", "upload": "image"}},
        "2": {"class_type": class_type, "inputs": {"image": ["1", 0], **inputs}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


@pytest.mark.parametrize("class_type, comfy, ours", [
    ("Canny", {"low_threshold": 0.3, "high_threshold": 0.7}, {"low_threshold": 0.3, "high_threshold": 0.7}),
    ("CannyEdgePreprocessor", {"low_threshold": 80, "high_threshold": 250, "resolution": 1472},
     {"low_threshold": 80, "high_threshold": 250, "resolution": 1472}),
    ("TilePreprocessor", {"pyrUp_iters": 3, "resolution": 512}, {"pyrUp_iters": 3}),  # TileDetector ignores it
    ("BinaryPreprocessor", {"bin_threshold": 90, "resolution": 640}, {"bin_threshold": 90, "resolution": 640}),
    ("ColorPreprocessor", {"resolution": 512}, {"resolution": 512}),
    ("LineartStandardPreprocessor", {"guassian_sigma": 6.0, "intensity_threshold": 8, "resolution": 512},
     {"guassian_sigma": 6.0, "intensity_threshold": 8, "resolution": 512}),
    ("LineArtPreprocessor", {"coarse": "disable", "resolution": 512}, {"coarse": "disable", "resolution": 512}),
    ("DepthAnythingPreprocessor", {"ckpt_name": "depth_anything_vitb14.pth", "resolution": 768},
     {"ckpt_name": "depth_anything_vitb14.pth", "resolution": 768}),
    ("DepthAnythingV2Preprocessor", {"ckpt_name": "depth_anything_v2_vits.pth", "resolution": 512},
     {"ckpt_name": "depth_anything_v2_vits.pth", "resolution": 512}),
])
def test_preprocessors_import_and_export_under_their_names(registry, class_type, comfy, ours):
    doc = load_any(_api(class_type, **comfy), registry)
    assert doc["nodes"]["2"] == {"type": class_type, "inputs": {"image": {"link": ["1", "image"]}, **ours}}
    back = to_api(doc, registry)
    assert back["2"]["class_type"] == class_type and back["2"]["inputs"]["image"] == ["1", 0]
    assert {k: back["2"]["inputs"][k] for k in ours} == ours


def test_ui_widgets_put_resolution_last(registry):
    ui = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"]], "nodes": [
        {"id": 1, "type": "LoadImage", "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
         "widgets_values": ["hint.png", "image"]},
        {"id": 2, "type": "CannyEdgePreprocessor", "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}], "widgets_values": [100, 200, 768]},
    ]}
    inputs = load_any(ui, registry)["nodes"]["2"]["inputs"]
    assert (inputs["low_threshold"], inputs["high_threshold"], inputs["resolution"]) == (100, 200, 768)


def test_model_preprocessors_stay_refused_by_name(registry):
    api = _api("MiDaS-DepthMapPreprocessor", a=6.28, bg_threshold=0.1, resolution=512)
    with pytest.raises(Exception) as caught:
        load_any(api, registry)
    assert "node 2: ComfyUI node type 'MiDaS-DepthMapPreprocessor' has no lcmgraph equivalent" in str(caught.value)
