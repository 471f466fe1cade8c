"""The generation parameters a saved PNG records: the literal inputs of the
node classes flagged ``record_parameters``."""

from __future__ import annotations

from lcmgraph_nodes.diffusion.formats.image_files import parameters

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.plugins import load_entry_point_packs
from lcmgraph.registry import NodeRegistry


def _registry() -> NodeRegistry:
    registry = NodeRegistry()
    load_entry_point_packs(registry)
    return registry


def test_the_generation_nodes_are_the_recorded_ones():
    registry = _registry()
    recorded = {name for name in registry.names() if registry.get(name).record_parameters}
    assert recorded == {"LCMSampler", "Sampler", "FewStepSampler", "TextEncode", "LoadCheckpoint", "ApplyLoRA",
                        "LoadUNet", "EmptyLatent"}


def test_parameters_keep_literals_and_follow_one_hop_to_a_primitive():
    registry = _registry()
    workflow = {"nodes": {
        "seed": {"type": "Int", "inputs": {"value": 42}},
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": {"link": ["ckpt", "clip"]}, "text": "a red circle"}},
        "sampler": {"type": "LCMSampler", "inputs": {"seed": {"link": ["seed", "value"]}, "steps": 4,
                                                      "model": {"link": ["ckpt", "model"]}}},
        "decode": {"type": "VAEDecode", "inputs": {"tiled": False}},
        "odd": {"type": ["not", "a", "name"], "inputs": {}},
        "unknown": {"type": "NoSuchNode", "inputs": {"x": 1}},
        "broken": "not a node",
    }}
    assert parameters(workflow, registry) == {
        "ckpt": {"type": "LoadCheckpoint", "checkpoint": "builtin:tiny-shapes"},
        "pos": {"type": "TextEncode", "text": "a red circle"},
        "sampler": {"type": "LCMSampler", "seed": 42, "steps": 4},
    }
    assert parameters(None, registry) == {}


def test_a_pack_node_can_ask_to_be_recorded():
    class Upscale(Node):
        record_parameters = True
        inputs = (Input("factor", T.FLOAT, default=2.0),)
        outputs = (Output("factor", T.FLOAT),)

        def execute(self, ctx, factor):
            return {"factor": factor}

    registry = _registry()
    registry.register_pack("upscalers", [Upscale])
    workflow = {"nodes": {"up": {"type": "Upscale", "inputs": {"factor": 4.0}}}}
    assert parameters(workflow, registry) == {"up": {"type": "Upscale", "factor": 4.0}}
