"""What ComfyUI writes, read from ComfyUI's own widget declarations
(lcmgraph.comfy.widgets): seed controls as words, booleans or absent, upload
buttons, group nodes and subgraphs expanded into the graph they stand for."""

from __future__ import annotations

import copy

import pytest

from lcmgraph.comfy import ComfyImportError, load_any
from lcmgraph.comfy.mapping import SEED_CONTROL
from lcmgraph.comfy.widgets import UPLOAD, widget_layout

from .helpers import load


def _sampler(doc: dict) -> dict:
    return next(n for n in doc["nodes"] if n["type"] == "KSampler")


@pytest.mark.parametrize("control", ["randomize", True, False, None])
def test_seed_control_as_word_boolean_or_absent(registry, control):
    doc = load("ui_controlnet.json")
    values = _sampler(doc)["widgets_values"]
    expected = load_any(copy.deepcopy(doc), registry)["nodes"]["3"]
    values[1:2] = [] if control is None else [control]
    assert load_any(doc, registry)["nodes"]["3"] == expected


def test_every_mapped_core_class_agrees_with_comfyuis_declaration(registry):
    """A pack's ``widgets`` for a core class must be ComfyUI's order (the table wins when they differ)."""
    for class_type, mapping in registry.comfy_mappings().items():
        layout = widget_layout(class_type)
        if layout is None or not mapping.widgets:
            continue
        assert [w for w in mapping.widgets if w not in ("upload", SEED_CONTROL)] == \
            [w for w in layout if w not in (UPLOAD, SEED_CONTROL)], class_type


def test_api_upload_and_control_inputs_are_dropped(registry):
    api = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png", "choose file to upload": "image"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png", "upload": "image"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    nodes = load_any(api, registry)["nodes"]
    assert nodes["1"]["inputs"] == {"image": "a.png"} and nodes["2"]["inputs"] == {"image": "b.png"}


def _group_doc() -> dict:
    """The default graph as a legacy group node around everything but the latent."""
    inner = [
        {"type": "CheckpointLoaderSimple", "outputs": [{"name": "MODEL"}, {"name": "CLIP"}, {"name": "VAE"}],
         "widgets_values": ["v1-5.safetensors"], "index": 0},
        {"type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": None}], "outputs": [{"name": "CONDITIONING"}],
         "widgets_values": ["a cat"], "index": 1},
        {"type": "KSampler", "inputs": [{"name": "model", "link": None}, {"name": "positive", "link": None},
                                        {"name": "negative", "link": None}, {"name": "latent_image", "link": None}],
         "outputs": [{"name": "LATENT"}], "widgets_values": [1, "fixed", 20, 8, "euler", "normal", 1], "index": 2},
        {"type": "VAEDecode", "inputs": [{"name": "samples", "link": None}, {"name": "vae", "link": None}],
         "outputs": [{"name": "IMAGE"}], "index": 3},
    ]
    links = [[0, 1, 1, 0, 4, "CLIP"], [0, 0, 2, 0, 4, "MODEL"], [1, 0, 2, 1, 6, "CONDITIONING"],
             [2, 0, 3, 0, 3, "LATENT"], [0, 2, 3, 1, 4, "VAE"]]
    return {
        "last_node_id": 12, "last_link_id": 3, "version": 0.4,
        "nodes": [
            {"id": 5, "type": "EmptyLatentImage", "outputs": [{"name": "LATENT", "links": [1]}],
             "widgets_values": [64, 64, 1]},
            {"id": 10, "type": "workflow>txt2img", "inputs": [{"name": "negative", "link": 2},
                                                             {"name": "latent_image", "link": 1}],
             "outputs": [{"name": "IMAGE", "links": [3]}],
             "widgets_values": ["tiny", "a red circle", 42, "randomize", 4, 1.5, "euler", "normal", 1]},
            {"id": 11, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": None}],
             "outputs": [{"name": "CONDITIONING", "links": [2]}], "widgets_values": ["blurry"]},
            {"id": 12, "type": "SaveImage", "inputs": [{"name": "images", "link": 3}], "widgets_values": ["x"]},
        ],
        "links": [[1, 5, 0, 10, 1, "LATENT"], [2, 11, 0, 10, 0, "CONDITIONING"], [3, 10, 0, 12, 0, "IMAGE"]],
        "extra": {"groupNodes": {"txt2img": {"nodes": inner, "links": links, "external": []}}},
    }


def test_group_node_values_links_and_outputs(registry):
    nodes = load_any(_group_doc(), registry)["nodes"]
    assert nodes["10:0"]["inputs"] == {"checkpoint": "tiny"}
    assert nodes["10:1"]["inputs"]["text"] == "a red circle"
    sampler = nodes["10:2"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 4, 1.5)
    assert sampler["latent"] == {"link": ["5", "latent"]} and sampler["negative"] == {"link": ["11", "conditioning"]}
    assert nodes["12"]["inputs"]["image"] == {"link": ["10:3", "image"]}


def _subgraph_doc() -> dict:
    """A KSampler inside a subgraph whose seed and text are shown as the instance's widgets."""
    definition = {
        "id": "sub-1", "name": "Sampler", "inputNode": {"id": -10}, "outputNode": {"id": -20},
        "inputs": [{"name": "text", "type": "STRING"}, {"name": "clip", "type": "CLIP"},
                   {"name": "model", "type": "MODEL"}, {"name": "latent_image", "type": "LATENT"},
                   {"name": "seed", "type": "INT"}],
        "outputs": [{"name": "LATENT", "type": "LATENT"}],
        "nodes": [
            {"id": 1, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 11},
                                                           {"name": "text", "widget": {"name": "text"}, "link": 10}],
             "outputs": [{"name": "CONDITIONING"}], "widgets_values": [""]},
            {"id": 2, "type": "KSampler", "inputs": [{"name": "seed", "widget": {"name": "seed"}, "link": 14},
                                                     {"name": "model", "link": 12}, {"name": "positive", "link": 15},
                                                     {"name": "negative", "link": None},
                                                     {"name": "latent_image", "link": 13}],
             "outputs": [{"name": "LATENT"}], "widgets_values": [0, "randomize", 3, 1.0, "euler", "normal", 1]},
        ],
        "links": [
            {"id": 10, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 1, "type": "STRING"},
            {"id": 11, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 0, "type": "CLIP"},
            {"id": 12, "origin_id": -10, "origin_slot": 2, "target_id": 2, "target_slot": 1, "type": "MODEL"},
            {"id": 13, "origin_id": -10, "origin_slot": 3, "target_id": 2, "target_slot": 4, "type": "LATENT"},
            {"id": 14, "origin_id": -10, "origin_slot": 4, "target_id": 2, "target_slot": 0, "type": "INT"},
            {"id": 15, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 2, "type": "CONDITIONING"},
            {"id": 16, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"},
        ],
    }
    return {
        "last_node_id": 9, "last_link_id": 5, "version": 0.4,
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "outputs": [{"name": "MODEL"}, {"name": "CLIP"}, {"name": "VAE"}],
             "widgets_values": ["tiny"]},
            {"id": 5, "type": "EmptyLatentImage", "outputs": [{"name": "LATENT"}], "widgets_values": [64, 64, 1]},
            {"id": 7, "type": "sub-1", "inputs": [{"name": "clip", "link": 1}, {"name": "model", "link": 2},
                                                  {"name": "latent_image", "link": 3}],
             "outputs": [{"name": "LATENT", "links": [4]}], "widgets_values": ["a red circle", 42]},
            {"id": 8, "type": "VAEDecode", "inputs": [{"name": "samples", "link": 4}, {"name": "vae", "link": 5}],
             "outputs": [{"name": "IMAGE"}]},
        ],
        "links": [[1, 4, 1, 7, 0, "CLIP"], [2, 4, 0, 7, 1, "MODEL"], [3, 5, 0, 7, 2, "LATENT"],
                  [4, 7, 0, 8, 0, "LATENT"], [5, 4, 2, 8, 1, "VAE"]],
        "definitions": {"subgraphs": [definition]},
    }


def test_subgraphs_expand_with_their_inputs_widgets_and_outputs(registry):
    nodes = load_any(_subgraph_doc(), registry)["nodes"]
    assert nodes["7:1"]["inputs"] == {"clip": {"link": ["4", "clip"]}, "text": "a red circle"}
    sampler = nodes["7:2"]["inputs"]
    assert sampler["seed"] == 42 and sampler["model"] == {"link": ["4", "model"]}
    assert sampler["positive"] == {"link": ["7:1", "conditioning"]} and sampler["latent"] == {"link": ["5", "latent"]}
    assert nodes["8"]["inputs"]["latent"] == {"link": ["7:2", "latent"]}


def test_nested_subgraphs_and_promoted_widgets(registry):
    doc = _subgraph_doc()
    outer = copy.deepcopy(doc["definitions"]["subgraphs"][0])
    # An outer subgraph whose only node is an instance of the first one, with the sampler's steps promoted.
    wrapper = {**outer, "id": "sub-2", "nodes": [{**doc["nodes"][2], "id": 3}],
               "links": [{"id": 20 + k, "origin_id": -10, "origin_slot": k, "target_id": 3, "target_slot": k,
                          "type": t} for k, t in enumerate(("CLIP", "MODEL", "LATENT"))]
               + [{"id": 30, "origin_id": 3, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"}],
               "inputs": [{"name": "clip"}, {"name": "model"}, {"name": "latent_image"}]}
    doc["definitions"]["subgraphs"].append(wrapper)
    doc["nodes"][2]["type"] = "sub-2"
    doc["nodes"][2]["widgets_values"] = []
    nodes = load_any(doc, registry)["nodes"]
    assert nodes["7:3:2"]["inputs"]["seed"] == 42 and nodes["8"]["inputs"]["latent"] == {"link": ["7:3:2", "latent"]}
    doc["definitions"]["subgraphs"][0]["nodes"][1]["inputs"][0]["link"] = None  # seed back to a widget
    doc["nodes"][2]["properties"] = {"proxyWidgets": [["2", "steps"]]}
    doc["nodes"][2]["type"] = "sub-1"
    doc["nodes"][2]["widgets_values"] = [7]
    assert load_any(doc, registry)["nodes"]["7:2"]["inputs"]["steps"] == 7


def test_unsupported_nodes_are_named_all_at_once(registry):
    doc = _subgraph_doc()
    doc["definitions"]["subgraphs"][0]["nodes"][0]["type"] = "SomePackTextEncode"
    doc["nodes"][1]["type"] = "EmptySD3LatentImage"
    with pytest.raises(ComfyImportError) as err:
        load_any(doc, registry)
    assert err.value.problems == ["node 5: ComfyUI node type 'EmptySD3LatentImage' has no lcmgraph equivalent",
                                  "node 7:1: ComfyUI node type 'SomePackTextEncode' has no lcmgraph equivalent"]
