"""Reading ComfyUI's formats: detection, the API and UI formats (reroutes,
primitive nodes, notes, muted and bypassed nodes, widget quirks, layout),
PNGs saved by ComfyUI, unknown node types. No model runs here."""

from __future__ import annotations

import copy
import json

import pytest

from lcmgraph.comfy import ComfyImportError, detect, load_any, read_any
from lcmgraph.validation import validate
from lcmgraph.workflow import WorkflowFileError, parse

from .helpers import load

TXT2IMG_NODES = {
    "3": {"type": "LCMSampler", "inputs": {
        "model": {"link": ["4", "model"]}, "positive": {"link": ["6", "conditioning"]},
        "negative": {"link": ["7", "conditioning"]}, "latent": {"link": ["5", "latent"]},
        "seed": 42, "steps": 4, "guidance": 1.0, "denoise": 1.0}},
    "4": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "tiny"}},
    "5": {"type": "EmptyLatent", "inputs": {"width": 64, "height": 64, "batch": 1}},
    "6": {"type": "TextEncode", "inputs": {"clip": {"link": ["4", "clip"]}, "text": "a red circle"}, "title": "Positive"},
    "7": {"type": "TextEncode", "inputs": {"clip": {"link": ["4", "clip"]}, "text": "blurry"}},
    "8": {"type": "VAEDecode", "inputs": {"latent": {"link": ["3", "latent"]}, "vae": {"link": ["4", "vae"]}}},
    "9": {"type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "image": {"link": ["8", "image"]}}},
}


def _links_as_objects(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    doc["links"] = [dict(zip(keys, link, strict=True)) for link in doc["links"]]
    return doc


@pytest.mark.parametrize("document, kind", [
    (load("api_txt2img.json"), "comfy_api"),
    ({"prompt": load("api_txt2img.json"), "client_id": "abc"}, "comfy_api"),
    (load("ui_txt2img.json"), "comfy_ui"),
    (load("ui_lora.json"), "comfy_ui"),
    ({"format": "lcmgraph.workflow", "version": 1, "nodes": {}}, "lcmgraph"),
    ({"nodes": {"a": {"type": "Int"}}}, "lcmgraph"),
    ({"format": "other"}, None),
    ([1, 2], None),
    ({"3": {"inputs": {}}}, None),
])
def test_detect_by_shape(document, kind):
    assert detect(document) == kind


def test_api_format_converts_node_for_node(registry):
    doc = load_any(load("api_txt2img.json"), registry)
    assert doc == {"format": "lcmgraph.workflow", "version": 1, "nodes": TXT2IMG_NODES,
                   "meta": {"comfy_import": {"from": "ComfyUI API format"}}}
    assert parse(doc)[1] == []


def test_prompt_request_body_is_read_as_its_prompt(registry):
    doc = load_any({"prompt": load("api_txt2img.json"), "client_id": "abc"}, registry)
    assert doc["nodes"] == TXT2IMG_NODES


def test_lcmgraph_and_unknown_documents_pass_through(registry):
    native = {"format": "lcmgraph.workflow", "version": 1, "nodes": {}}
    assert load_any(native, registry) is native
    assert load_any({"format": "other"}, registry) == {"format": "other"}


def test_ui_format_resolves_reroutes_primitives_and_notes(registry):
    doc = load_any(load("ui_txt2img.json"), registry)
    # The primitive node's 42 feeds the seed, not the KSampler's own widget (999).
    assert doc["nodes"] == TXT2IMG_NODES
    assert doc["meta"] == {"comfy_import": {"from": "ComfyUI UI format",
                                            "note_nodes": {"13": "4-step LCM: cfg 1 skips the negative"}}}
    ui = doc["ui"]
    assert set(ui["nodes"]) == set(TXT2IMG_NODES)  # no reroute, primitive, note or model-sampling node
    assert ui["nodes"]["3"] == {"pos": [863.0, 186.0], "size": [315.0, 262.0]}
    assert ui["nodes"]["7"] == {"pos": [413.0, 389.0], "size": [425.0, 180.0], "collapsed": True, "color": "#322"}
    assert ui["groups"] == [{"title": "Prompts", "bounding": [400.0, 110.0, 460.0, 480.0]}]
    assert ui["view"] == {"offset": [120.5, -40.0], "scale": 0.8}


def test_link_arrays_and_link_objects_read_alike(registry):
    arrays = load("ui_txt2img.json")
    assert load_any(_links_as_objects(arrays), registry) == load_any(arrays, registry)


def test_newer_ui_files_with_widget_inputs_read_like_the_api_format(registry):
    ui, api = load_any(load("ui_lora.json"), registry), load_any(load("api_lora.json"), registry)
    assert ui["nodes"] == api["nodes"]
    assert ui["ui"]["view"] == {"offset": [10.0, 20.0], "scale": 1.1}  # {"0": x, "1": y} offsets


def test_bypassed_nodes_pass_their_input_on_and_muted_nodes_vanish(registry):
    nodes = load_any(load("ui_img2img.json"), registry)["nodes"]
    assert "11" not in nodes and "18" not in nodes  # the bypassed LoRA, the muted preview
    assert nodes["6"]["inputs"]["clip"] == {"link": ["4", "clip"]}
    assert nodes["3"]["inputs"]["model"] == {"link": ["4", "model"]}
    assert nodes["3"]["inputs"]["denoise"] == 0.6


def test_seed_widgets_with_or_without_control_after_generate(registry):
    doc = load("ui_controlnet.json")
    sampler = next(n for n in doc["nodes"] if n["type"] == "KSampler")
    with_control = load_any(doc, registry)["nodes"]["3"]
    sampler["widgets_values"] = [3, 4, 1.5, "lcm", "sgm_uniform", 1]  # files from before the control widget
    assert load_any(doc, registry)["nodes"]["3"] == with_control


def test_more_widget_values_than_widgets_is_refused(registry):
    doc = load("ui_controlnet.json")
    next(n for n in doc["nodes"] if n["type"] == "EmptyLatentImage")["widgets_values"] = [64, 64, 1, "extra"]
    with pytest.raises(ComfyImportError) as err:
        load_any(doc, registry)
    assert str(err.value) == (
        "the ComfyUI workflow cannot be imported (1 problem):\n"
        "  - node 5 (EmptyLatentImage): 4 widget values [64, 64, 1, 'extra'] do not fit its widgets "
        "(width, height, batch_size)")


def test_unknown_node_types_are_all_named(registry):
    api = load("api_txt2img.json")
    api["20"] = {"class_type": "IPAdapterApply", "inputs": {"weight": 0.7, "model": ["4", 0]}}
    api["12"] = {"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}}
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    assert str(err.value) == (
        "the ComfyUI workflow cannot be imported (2 problems):\n"
        "  - node 12: ComfyUI node type 'UltimateSDUpscale' has no lcmgraph equivalent\n"
        "  - node 20: ComfyUI node type 'IPAdapterApply' has no lcmgraph equivalent\n"
        "(lcmgraph import-comfy --allow-missing keeps unknown node types as placeholders for the editor)")
    assert isinstance(err.value, WorkflowFileError)  # the CLI's exit code 2


def test_allow_missing_keeps_placeholders_that_do_not_validate(registry):
    api = load("api_txt2img.json")
    api["20"] = {"class_type": "IPAdapterApply", "inputs": {"weight": 0.7, "model": ["4", 0]}}
    api["3"]["inputs"]["model"] = ["20", 0]
    doc = load_any(api, registry, allow_missing=True)
    assert doc["nodes"]["20"] == {"type": "comfy:IPAdapterApply",
                                  "inputs": {"weight": 0.7, "model": {"link": ["4", "model"]}}}
    assert doc["nodes"]["3"]["inputs"]["model"] == {"link": ["20", "output_0"]}
    assert doc["meta"]["comfy_import"]["notes"] == [
        # The placeholder hides the ModelSamplingDiscrete 'lcm' the sampler had.
        "node 3 (KSampler): sampler 'lcm' on a model without ModelSamplingDiscrete 'lcm': ComfyUI then uses "
        "the model's plain noise schedule, lcmgraph always LCM's own (as ModelSamplingDiscrete 'lcm' does)",
        "node 20: ComfyUI node type 'IPAdapterApply' is kept as a placeholder; replace it before running"]
    workflow, problems = parse(doc)
    problems += validate(workflow, registry, None, lambda folder, name: None).problems
    assert [(p.node, p.message) for p in problems] == [
        ("20", "unknown node type 'comfy:IPAdapterApply'; did you mean 'IPAdapter'?")]  # IPAdapter_plus v1 -> v2


def test_ui_placeholders_keep_widget_values_and_output_names(registry):
    doc = load("ui_txt2img.json")
    doc["nodes"].append({"id": 30, "type": "ImageSharpen", "pos": [1300, 500], "size": [200, 100], "mode": 0,
                         "inputs": [{"name": "image", "type": "IMAGE", "link": 40}],
                         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [41]}],
                         "widgets_values": [1, 0.5, 0.5]})
    doc["links"] += [[40, 8, 0, 30, 0, "IMAGE"], [41, 30, 0, 9, 0, "IMAGE"]]
    save = next(n for n in doc["nodes"] if n["id"] == 9)
    save["inputs"][0]["link"] = 41
    nodes = load_any(doc, registry, allow_missing=True)["nodes"]
    assert nodes["30"] == {"type": "comfy:ImageSharpen",
                           "inputs": {"image": {"link": ["8", "image"]}, "widgets_values": [1, 0.5, 0.5]}}
    assert nodes["9"]["inputs"]["image"] == {"link": ["30", "IMAGE"]}


def test_subgraphs_and_group_nodes_without_nodes_are_named_as_such(registry):
    doc = load("ui_txt2img.json")
    doc["nodes"].append({"id": 40, "type": "a1b2c3", "mode": 0, "inputs": [], "outputs": []})
    doc["nodes"].append({"id": 41, "type": "workflow>Upscaler", "mode": 0, "inputs": [], "outputs": []})
    doc["definitions"] = {"subgraphs": [{"id": "a1b2c3", "name": "Face fix"}]}
    doc["extra"]["groupNodes"] = {"Upscaler": {}}
    with pytest.raises(ComfyImportError) as err:
        load_any(doc, registry)
    assert err.value.problems == [
        "node 40: a ComfyUI subgraph ('Face fix') whose definition has no nodes to expand",
        "node 41: a ComfyUI group node ('workflow>Upscaler') whose definition has no nodes to expand",
    ]


def test_malformed_api_nodes_and_links_are_named(registry):
    api = load("api_txt2img.json")
    api["11"] = {"inputs": {}}
    api["3"]["inputs"]["steps"] = [4, 5, 6]
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    assert err.value.problems == [
        "node 3 input 'steps': [4, 5, 6] is neither a literal nor a link [node_id, output_index]",
        'node 11: not a node (an API-format node is {"class_type": ..., "inputs": {...}})',
    ]


def test_links_to_missing_nodes_and_outputs_are_named(registry):
    api = load("api_txt2img.json")
    api["8"]["inputs"]["samples"] = ["99", 0]
    api["9"]["inputs"]["images"] = ["4", 5]
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    assert err.value.problems == [
        "node 8 input 'latent': links to node 99, which is not in the workflow",
        "node 9 input 'image': node 4 (CheckpointLoaderSimple) has no output 5",
    ]


# -- PNGs saved by ComfyUI ---------------------------------------------------------
def _png(path, **chunks):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_comfy_png_gives_the_ui_layout_and_the_values_that_ran(registry, tmp_path):
    prompt = load("api_txt2img.json")
    prompt["3"]["inputs"]["seed"] = 43  # the seed that ran; the UI's widgets hold the next one
    doc = read_any(_png(tmp_path / "ComfyUI_00001_.png", prompt=prompt, workflow=load("ui_txt2img.json")), registry)
    assert doc["nodes"]["3"]["inputs"]["seed"] == 43
    assert doc["ui"]["nodes"]["3"]["pos"] == [863.0, 186.0]
    assert doc["meta"]["comfy_import"]["from"] == "ComfyUI UI format"


def test_png_with_only_a_prompt_reads_the_api_format(registry, tmp_path):
    doc = read_any(_png(tmp_path / "a.png", prompt=load("api_txt2img.json")), registry)
    assert doc["nodes"] == TXT2IMG_NODES


def test_png_made_by_lcmgraph_is_read_as_before(registry, tmp_path):
    native = {"format": "lcmgraph.workflow", "version": 1, "nodes": {}}
    assert read_any(_png(tmp_path / "a.png", **{"lcmgraph.workflow": native}), registry) == native


def test_png_without_a_workflow_and_with_a_broken_one(registry, tmp_path):
    bare = _png(tmp_path / "bare.png")
    with pytest.raises(WorkflowFileError, match=r"bare.png: this PNG has no embedded workflow \(neither lcmgraph's nor ComfyUI's\)$"):
        read_any(bare, registry)
    broken = _png(tmp_path / "broken.png", prompt="{oops")
    with pytest.raises(WorkflowFileError, match=r"broken.png: the PNG's 'prompt' text is not JSON \(Expecting property name enclosed in double quotes at line 1\)$"):
        read_any(broken, registry)


def test_json_files_of_every_kind_are_read(registry, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(load("ui_txt2img.json")))
    assert read_any(path, registry)["nodes"] == TXT2IMG_NODES
    with pytest.raises(WorkflowFileError, match="no such file"):
        read_any(tmp_path / "missing.json", registry)
