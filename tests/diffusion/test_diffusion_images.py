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
    assert recorded == {"LCMSampler", "Sampler", "FewStepSampler", "TextEncode", "LoadCheckpoint", "LoadVAE",
                        "CLIPSetLastLayer", "ApplyLoRA", "LoadUNet", "EmptyLatent", "ImageOnlyCheckpointLoader",
                        "SVDImg2VidConditioning"}


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


class _Ctx:
    """What write_pngs reads of a node context."""

    def __init__(self):
        self.workflow_json = {"format": "lcmgraph.workflow", "version": 1, "nodes": {}}
        self.runtime = type("R", (), {"registry": _registry()})()


def test_a_png_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    import pytest
    import torch
    from lcmgraph_nodes.diffusion.formats import image_files
    from PIL import Image

    image = torch.rand(2, 8, 8, 3)
    written = image_files.write_pngs(_Ctx(), image, tmp_path, "shot", "output")
    assert [r["filename"] for r in written] == ["shot_00001.png", "shot_00002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot_00001.png", "shot_00002.png"]

    # The encoder dies half-way (as a kill would leave it): no file under a PNG name, no leftover.
    real_save = Image.Image.save

    def dies_half_way(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        image_files.write_pngs(_Ctx(), image[:1], tmp_path, "shot", "output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot_00001.png", "shot_00002.png"]
    monkeypatch.setattr(Image.Image, "save", real_save)
    # and the numbering goes on without overwriting anything
    again = image_files.write_pngs(_Ctx(), image[:1], tmp_path, "shot", "output")
    assert [r["filename"] for r in again] == ["shot_00003.png"]
    with Image.open(tmp_path / "shot_00003.png") as png:
        png.load()
        assert png.size == (8, 8)
