"""Malformed ComfyUI files: every shape that is not what ComfyUI writes is a
ComfyImportError naming the node or link and the field, never a crash; what
is only decoration (layout) is left out; links that lead nowhere are left
unconnected, as ComfyUI does, and noted. No model runs here."""

from __future__ import annotations

import copy

import pytest

from lcmgraph.comfy import ComfyImportError, load_any
from lcmgraph.comfy.errors import MAX_LISTED
from lcmgraph.comfy.graph import MAX_NODES, id_order
from lcmgraph.comfy.png import document_from_text
from lcmgraph.workflow import WorkflowFileError

from .helpers import load


def _problems(doc, registry) -> list[str]:
    with pytest.raises(ComfyImportError) as err:
        load_any(doc, registry)
    return err.value.problems


def _ui(**changes) -> dict:
    doc = load("ui_txt2img.json")
    doc.update(changes)
    return doc


def _node(doc: dict, node_id: int) -> dict:
    return next(n for n in doc["nodes"] if n["id"] == node_id)


# -- the shapes of issue #13 -----------------------------------------------------
def test_group_nodes_that_are_not_an_object(registry):
    assert _problems({"nodes": [], "links": [], "extra": {"groupNodes": 5}}, registry) == [
        "extra.groupNodes must be an object mapping group node names to their definitions, got an integer 5"]


def test_link_with_a_string_slot(registry):
    assert _problems({"nodes": [], "links": [[1, 2, "x", 4, 5, "T"]]}, registry) == [
        "link 1: origin_slot must be an output index (0 or more), got a string 'x'"]


def test_input_slot_whose_link_is_an_object(registry):
    doc = {"nodes": [{"id": 1, "type": "VAEDecode", "inputs": [{"name": "vae", "link": {}}]}], "links": []}
    assert _problems(doc, registry) == [
        "node 1 (VAEDecode) input 'vae': \"link\" must be a link id (an integer) or null, got an object {}"]


# -- nodes -------------------------------------------------------------------------
@pytest.mark.parametrize("change, problem", [
    ({"id": None}, 'nodes[5]: "id" must be an integer or a string, got null'),
    ({"id": 1.5}, 'nodes[5]: "id" must be an integer or a string, got a number 1.5'),
    ({"id": True}, 'nodes[5]: "id" must be an integer or a string, got a boolean (true)'),
    ({"type": 7}, 'node 5: "type" must be the node\'s class name (a string), got an integer 7'),
    ({"mode": "2"}, "node 5 (EmptyLatentImage): \"mode\" must be an integer, got a string '2'"),
    ({"inputs": {"a": 1}}, 'node 5 (EmptyLatentImage): "inputs" must be an array of input slots, got an object'),
    ({"inputs": [3]}, "node 5 (EmptyLatentImage): inputs[0] must be an object (an input slot), got an integer"),
    ({"outputs": "LATENT"}, 'node 5 (EmptyLatentImage): "outputs" must be an array of output slots, got a string'),
    ({"widgets_values": "64"}, "node 5 (EmptyLatentImage): \"widgets_values\" must be an array, got a string '64'"),
])
def test_malformed_node_fields_are_named(registry, change, problem):
    doc = load("ui_txt2img.json")
    _node(doc, 5).update(change)
    assert _problems(doc, registry) == [problem]


def test_a_node_that_is_not_an_object(registry):
    doc = load("ui_txt2img.json")
    doc["nodes"].append("KSampler")
    assert _problems(doc, registry) == [
        "nodes[11]: not a node (a UI-format node is an object with an id and a type), got a string"]


def test_two_nodes_with_one_id_are_refused_not_merged(registry):
    doc = load("ui_txt2img.json")
    twin = copy.deepcopy(_node(doc, 5))
    twin["widgets_values"] = [512, 512, 1]
    doc["nodes"].append(twin)  # before: the second silently replaced the first
    assert _problems(doc, registry) == ["node 5 (EmptyLatentImage): the id 5 is used by more than one node"]


def test_a_linked_input_without_a_name(registry):
    doc = load("ui_txt2img.json")
    _node(doc, 8)["inputs"][0]["name"] = 3
    assert _problems(doc, registry) == ["node 8 (VAEDecode): inputs[0] is linked (link 9) but has no name"]


# -- links -------------------------------------------------------------------------
@pytest.mark.parametrize("link, problem", [
    (7, "links[12]: not a link (an array [id, origin_id, origin_slot, target_id, target_slot, type] or an object "
        "with those keys), got an integer 7"),
    ([1, 2, 3], "links[12]: not a link (an array [id, origin_id, origin_slot, target_id, target_slot, type] or an "
                "object with those keys), got an array [1, 2, 3]"),
    ([[1], 4, 0, 3, 0, "MODEL"], "links[12]: the link id must be an integer, got an array [1]"),
    ([20, None, 0, 3, 0, "MODEL"], "link 20: origin_id must be a node id, got null"),
    ([20, 4, -1, 3, 0, "MODEL"], "link 20: origin_slot must be an output index (0 or more), got an integer -1"),
    ({"id": 20, "origin_id": 4, "origin_slot": 1.0}, "link 20: origin_slot must be an output index (0 or more), "
                                                     "got a number 1.0"),
    ([1, 5, 0, 3, 0, "MODEL"], "link 1: listed twice, with different ends"),
])
def test_malformed_links_are_named(registry, link, problem):
    doc = load("ui_txt2img.json")
    doc["links"].append(link)
    assert _problems(doc, registry) == [problem]


def test_links_that_are_not_an_array(registry):
    assert _problems({"nodes": [], "links": {"1": [1, 2, 0, 3, 0, "X"]}}, registry) == [
        '"links" must be an array of links, got an object']


def test_the_same_link_listed_twice_and_removed_links_are_read(registry):
    doc = load("ui_txt2img.json")
    doc["links"] += [copy.deepcopy(doc["links"][0]), None]
    assert load_any(doc, registry) == load_any(load("ui_txt2img.json"), registry)


def test_dangling_links_leave_the_input_unconnected_and_are_noted(registry):
    doc = load("ui_txt2img.json")
    _node(doc, 8)["inputs"][1]["link"] = 99  # vae: no such link
    doc["links"][6][1] = 77  # latent: from a node that is not there
    converted = load_any(doc, registry)
    assert "vae" not in converted["nodes"]["8"]["inputs"]
    assert "latent" not in converted["nodes"]["3"]["inputs"]
    assert converted["meta"]["comfy_import"]["notes"] == [
        "node 3 input 'latent_image': link 7 comes from node 77, which is not in the workflow; the input is left "
        "unconnected, as in ComfyUI",
        "node 8 input 'vae': link 99 is not in the workflow's links; the input is left unconnected, as in ComfyUI"]


def test_reroutes_in_a_loop_are_named_once(registry):
    doc = load("ui_txt2img.json")
    doc["nodes"].append({"id": 16, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 13}],
                         "outputs": [{"name": "", "type": "MODEL", "links": [1]}]})
    doc["links"][0][1] = 16  # checkpoint -> reroute 15 becomes 16 -> 15 ...
    doc["links"].append([13, 15, 0, 16, 0, "MODEL"])  # ... and 15 -> 16
    assert _problems(doc, registry) == ["node 15 (Reroute): reroutes or bypassed nodes form a loop through it"]


def test_pass_through_nodes_in_a_loop_are_named(registry):
    api = load("api_txt2img.json")
    api["11"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["10", 0], "sampling": "lcm",
                                                                   "zsnr": False}}
    api["10"]["inputs"]["model"] = ["11", 0]
    assert _problems(api, registry) == ["node 3 input 'model': pass-through nodes form a loop (10 -> 11 -> 10)"]


# -- values a pack's converter trips over ------------------------------------------
def test_values_of_the_wrong_type_are_named_with_their_node(registry):
    api = load("api_txt2img.json")
    api["3"]["inputs"].update(sampler_name="euler", scheduler="normal", denoise="0.5", model=["4", 0])
    assert _problems(api, registry) == [
        "node 3 (KSampler): its values cannot be converted (TypeError: '<' not supported between instances of "
        "'str' and 'int')"]


# -- decoration and the rest ---------------------------------------------------------
def test_malformed_layout_is_left_out(registry):
    doc = load("ui_txt2img.json")
    _node(doc, 3).update(pos=[2**1100, 0], size="big", flags=[], color=7)
    doc["groups"] = [5, {"bounding": [1, 2, "x", 4]}, {"bounding": [2**1100, 0, 0, 0]}, {"title": {}, "bounding": [0, 0, 1, 1]}]
    doc["extra"]["ds"] = {"scale": "x", "offset": [1, 2]}
    converted = load_any(doc, registry)
    assert "3" not in converted["ui"]["nodes"]
    assert converted["ui"]["groups"] == [{"title": "Group", "bounding": [0.0, 0.0, 1.0, 1.0]}]
    assert "view" not in converted["ui"]


def test_malformed_subgraph_definitions(registry):
    doc = _ui(definitions={"subgraphs": [{"id": {}}, 7]})
    assert _problems(doc, registry) == [
        'definitions.subgraphs[0]: a subgraph is an object with an "id" string, got an object {\'id\': {}}',
        'definitions.subgraphs[1]: a subgraph is an object with an "id" string, got an integer 7']
    assert _problems(_ui(definitions=[]), registry) == ['"definitions" must be an object with a "subgraphs" array']


def test_prompt_values_of_odd_shapes_are_ignored(registry):
    prompt = load("api_txt2img.json")
    prompt["3"]["inputs"] = [1, 2]
    prompt["5"] = "x"
    body = {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": load("ui_txt2img.json")}}}
    assert load_any(body, registry)["nodes"] == load_any(load("ui_txt2img.json"), registry)["nodes"]


def test_node_ids_sort_without_int_conversion():
    assert sorted(["10", "2", "²", "9" * 5000, "3:10", "3:2"], key=id_order) == ["2", "3:2", "3:10", "10",
                                                                                 "9" * 5000, "²"]


def test_a_long_list_of_problems_is_cut_short_in_the_message(registry):
    api = {str(i): {"class_type": "Nope", "inputs": {}} for i in range(MAX_LISTED + 10)}
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    assert len(err.value.problems) == MAX_LISTED + 10
    assert "(and 10 more; .problems lists them all)" in str(err.value)


def test_more_nodes_than_the_limit_are_refused(registry):
    api = dict.fromkeys(map(str, range(MAX_NODES + 1)), {"class_type": "Nope", "inputs": {}})
    assert _problems(api, registry) == [f"the workflow has {MAX_NODES + 1} nodes; lcmgraph imports at most {MAX_NODES}"]
    ui = {"nodes": [{}] * (MAX_NODES + 1), "links": []}
    assert _problems(ui, registry) == [f"the workflow has {MAX_NODES + 1} nodes and 0 links; lcmgraph imports at most "
                                       f"{MAX_NODES} nodes and {4 * MAX_NODES} links"]


@pytest.mark.parametrize("text, message", [
    ("1" * 5000, "has an unreadable number"),
    ("[" * 100_000 + "]" * 100_000, "is JSON nested too deeply to read"),
    ("{oops", "is not JSON"),
])
def test_png_text_that_is_not_readable_json(text, message):
    with pytest.raises(WorkflowFileError, match=f"a.png: the PNG's 'prompt' text {message}"):
        document_from_text({"prompt": text}, "a.png")
