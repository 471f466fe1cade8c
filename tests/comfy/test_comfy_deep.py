"""Deep graphs both ways: chains of thousands of nodes import and export
without recursion (every walk is iterative), and export as one recursive
walk would; cycles and values a pack's exporter trips over are named."""

from __future__ import annotations

import sys

import pytest

from lcmgraph.comfy import ComfyExportError, load_any, to_api
from lcmgraph.comfy.export import MAX_NESTING
from lcmgraph.comfy.graph import MAX_NODES

from .helpers import link, node, txt2img
from .mutations import api_chain, ui_chain

LONG = 3000


def _chain_of(prompt: dict, class_type: str, input_name: str) -> list[str]:
    """The ids of the ``class_type`` nodes, walked from sampler 6 up its ``input_name`` links."""
    ids, value = [], prompt["6"]["inputs"][input_name]
    if prompt[value[0]]["class_type"] == "ModelSamplingDiscrete":  # the one the export adds
        value = prompt[value[0]]["inputs"][input_name]
    while prompt[value[0]]["class_type"] == class_type:
        ids.append(value[0])
        value = prompt[value[0]]["inputs"][input_name]
    return ids


@pytest.mark.parametrize("kind", ["LoraLoaderModelOnly", "ModelSamplingDiscrete", "ControlNetApply"])
def test_api_chains_of_thousands_import_and_export(registry, kind):
    doc = load_any(api_chain(LONG, kind), registry)
    assert sys.getrecursionlimit() < LONG  # the walks cannot be recursive
    prompt = to_api(doc, registry)
    if kind == "ModelSamplingDiscrete":  # pass-throughs: no node of the chain remains
        assert doc["nodes"]["6"]["inputs"]["model"] == link("1", "model")
        return
    input_name = "model" if kind == "LoraLoaderModelOnly" else "positive"
    chain = _chain_of(prompt, "LoraLoaderModelOnly" if input_name == "model" else "ControlNetApplyAdvanced",
                      input_name)
    assert chain == [str(100 + i) for i in reversed(range(LONG))]  # every node once, in order: no duplicates
    assert len(prompt) == LONG + 9  # and the 8 others and the added ModelSamplingDiscrete: no ControlNet twice
    if input_name == "positive":  # every ControlNet hints the sampler's negative, as for a short chain
        assert prompt["6"]["inputs"]["negative"] == [str(100 + LONG - 1), 1]
        assert prompt["100"]["inputs"]["negative"] == ["2", 0]


@pytest.mark.parametrize("kind", ["Reroute", "bypass", "LoraLoaderModelOnly"])
def test_ui_chains_of_thousands_import(registry, kind):
    doc = load_any(ui_chain(LONG, kind), registry)
    model = doc["nodes"]["3"]["inputs"]["model"]  # the sampler's (ModelSamplingDiscrete passes it through)
    if kind == "LoraLoaderModelOnly":
        assert model == link(str(16 + LONG - 1), "model") and len(doc["nodes"]) == 7 + LONG
    else:  # reroutes and bypassed nodes are followed to the checkpoint
        assert model == link("4", "model") and len(doc["nodes"]) == 7
    to_api(doc, registry)


def test_a_chain_of_twenty_thousand(registry):
    prompt = to_api(load_any(api_chain(20_000), registry), registry)
    assert len(prompt) == 20_000 + 9  # the chain, the 8 others, the ModelSamplingDiscrete the export adds


def test_an_export_undone_and_retried_writes_each_node_once(registry):
    """The sampler's exporter threads 3000 ControlNets, then needs its model:
    3000 LoRAs deeper than MAX_NESTING. Its export is undone and retried
    until the LoRAs are done; the ControlNets are still written once each."""
    prompt = api_chain(LONG, "ControlNetApply")
    loras = api_chain(LONG)
    for i in range(LONG):
        lora = loras[str(100 + i)]
        lora["inputs"]["model"] = [str(100 + LONG + i - 1), 0] if i else ["1", 0]
        prompt[str(100 + LONG + i)] = lora
    prompt["6"]["inputs"]["model"] = [str(100 + 2 * LONG - 1), 0]
    exported = to_api(load_any(prompt, registry), registry)
    assert len(_chain_of(exported, "ControlNetApplyAdvanced", "positive")) == LONG
    assert len(_chain_of(exported, "LoraLoaderModelOnly", "model")) == LONG
    assert len(exported) == 2 * LONG + 9
    assert LONG > MAX_NESTING


def test_cycles_are_named_once_and_the_rest_is_exported(registry):
    doc = txt2img(node("LCMSampler", seed=1))
    doc["nodes"]["a"] = node("ApplyLoRA", model=link("b", "model"), lora="x")
    doc["nodes"]["b"] = node("ApplyLoRA", model=link("a", "model"), lora="y")
    doc["nodes"]["sampler"]["inputs"]["model"] = link("b", "model")
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert err.value.problems == ["node 'a' (ApplyLoRA): the graph has a cycle: a -> b -> a"]


def test_values_lcmgraph_would_refuse_are_named_before_any_exporter_sees_them(registry):
    """A Sampler steps of 1.5 kept the pack's comfy_denoise stepping through
    floats for ever (a request that blocked the server); validation's
    sentences name such values, node and input, and the rest still exports."""
    doc = txt2img(node("Sampler", scheduler="euler", steps=1.5, denoise=1.0, end_step=2))
    doc["nodes"]["pos"]["inputs"]["text"] = {"value": {"a": 1}}
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert err.value.problems == ["node 'pos' input 'text': expected a string, got an object",
                                  "node 'sampler' input 'steps': expected an integer, got 1.5"]


def test_list_literals_are_named_with_their_node(registry):
    doc = txt2img(node("LCMSampler", seed=1))
    doc["nodes"]["odd"] = node("comfy:Sharpen", image=link("decode", "image"), radius=[1, 2])
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert err.value.problems == [
        "node 'odd' (comfy:Sharpen): the list [1, 2] cannot be written in ComfyUI's API format (ComfyUI reads "
        "every list as a link)"]


def test_more_nodes_than_the_limit_are_refused(registry):
    doc = {"format": "lcmgraph.workflow", "version": 1,
           "nodes": {f"n{i}": {"type": "Int", "inputs": {}} for i in range(MAX_NODES + 1)}}
    with pytest.raises(ComfyExportError) as err:
        to_api(doc, registry)
    assert err.value.problems == [f"the workflow has {MAX_NODES + 1} nodes; lcmgraph exports at most {MAX_NODES}"]
