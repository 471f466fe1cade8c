"""The shipped model loads through LoadCheckpoint and draws what it is asked for.

Runs the real node graph (LoadCheckpoint -> TextEncode -> EmptyLatent ->
LCMSampler, 4 steps -> VAEDecode) on the weights in
nodes/diffusion/builtin/tiny-shapes, reads the images back with the shipped
evaluator and checks the prompt accuracy against a floor set from the
measurement in docs/embedded-model.md, so a broken loader, tokenizer or
scheduler fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.train import dataset
from lcmgraph_nodes.diffusion.train.evaluator import accuracy, load_evaluator

from lcmgraph import Engine, EngineConfig

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "nodes" / "diffusion" / "builtin"
MODEL = BUILTIN / "tiny-shapes"
PACKS = ROOT / "tests" / "diffusion" / "packs"

#: 4-step LCMSampler (guidance 1.0) accuracy over the 16 prompts below must reach these.
#: Measured with the shipped weights (sitting 7, 2026-11-30): 16/16 on colour+shape, colour,
#: background and position (chance: 0.025, 0.125, 0.09, 0.11). Sitting 2's weights scored
#: colour+shape 0.8125, colour 0.875, background 1.0 and position at chance; the first
#: weights (step 3456, no offset noise) 0.31 / 0.62 / near chance on background.
FLOOR_COLOUR_SHAPE = 0.75
FLOOR_COLOUR = 0.8
FLOOR_BACKGROUND = 0.8
FLOOR_POSITION = 0.75
PROMPTS = 16



def _engine(tmp_path: Path) -> Engine:
    return Engine(EngineConfig(
        folders={"checkpoints": [BUILTIN]}, home=tmp_path / "home", models_dir=tmp_path / "models",
        output_dir=tmp_path / "out", plugins_from_env=False, plugin_dirs=[PACKS], device="cpu",
    ))


def _flow(checkpoint: str, prompt: str, seed: int, steps: int = 4) -> dict:
    def link(node, out):
        return {"link": [node, out]}

    nodes = {
        "ckpt": ("LoadCheckpoint", {"checkpoint": checkpoint}),
        "pos": ("TextEncode", {"clip": link("ckpt", "clip"), "text": prompt}),
        "empty": ("EmptyLatent", {"width": 128, "height": 128, "batch": 1}),
        "sampler": ("LCMSampler", {"model": link("ckpt", "model"), "positive": link("pos", "conditioning"),
                                   "latent": link("empty", "latent"), "seed": seed, "steps": steps, "guidance": 1.0}),
        "decode": ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}),
        "capture": ("Capture", {"value": link("decode", "image")}),
    }
    return {"format": "lcmgraph.workflow", "version": 1, "outputs": ["capture"],
            "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}


def _image(engine: Engine, checkpoint: str, prompt: str, seed: int):
    image = engine.run(_flow(checkpoint, prompt, seed)).values["decode"]["image"]
    return torch.as_tensor(image).float().permute(0, 3, 1, 2) * 2 - 1  # [1, 3, H, W] in [-1, 1]


def test_loads_through_load_checkpoint_and_reaches_the_accuracy_floor(tmp_path):
    torch.set_num_threads(1)
    engine = _engine(tmp_path)
    prompts = dataset.eval_prompts(PROMPTS, seed=99)
    images = torch.cat([_image(engine, "tiny-shapes", p, seed) for seed, (p, _) in enumerate(prompts)])
    assert images.shape == (PROMPTS, 3, 128, 128)
    judge = load_evaluator(BUILTIN / "tiny-shapes-evaluator.safetensors")
    from lcmgraph_nodes.diffusion.train.evaluator import predict

    acc = accuracy(predict(judge, images), [s for _, s in prompts])
    assert acc["colour_shape"] >= FLOOR_COLOUR_SHAPE, acc
    assert acc["colour"] >= FLOOR_COLOUR, acc
    assert acc["background"] >= FLOOR_BACKGROUND, acc
    assert acc["position"] >= FLOOR_POSITION, acc


def test_builtin_name(tmp_path):
    engine = _engine(tmp_path)
    assert "tiny-shapes" in engine.registry.builtin_files("checkpoints")
    assert engine.files.resolve("checkpoints", "builtin:tiny-shapes").resolve() == MODEL.resolve()
    image = _image(engine, "builtin:tiny-shapes", "a red circle on a blue background", 0)
    assert image.shape == (1, 3, 128, 128)


def test_evaluator_reads_clean_renders():
    judge = load_evaluator(BUILTIN / "tiny-shapes-evaluator.safetensors")
    from lcmgraph_nodes.diffusion.train.evaluator import predict

    images, scenes = dataset.batch(123, 0, 32)
    acc = accuracy(predict(judge, images), scenes)
    assert acc["colour_shape"] >= 0.9, acc
    # ... and the same scenes drawn in the outline style (the style LoRA's look): the judge of
    # content must not depend on the look (trained on half outlined renders since sitting 7).
    outlined, _ = dataset.batch(123, 0, 32, style="outline")
    acc = accuracy(predict(judge, outlined), scenes)
    assert acc["colour_shape"] >= 0.9, acc


def test_colour_shape_by_an_attribute_counts_each_value_of_the_prompts():
    from lcmgraph_nodes.diffusion.train.evaluator import colour_shape_by, format_by, predict

    judge = load_evaluator(BUILTIN / "tiny-shapes-evaluator.safetensors")
    images, scenes = dataset.batch(123, 0, 32)
    pred = predict(judge, images)
    before = colour_shape_by(pred, scenes, "background")
    wrong = [i for i, s in enumerate(scenes) if s.background == "black"][:1]
    for i in wrong:  # one black-background image misread: that count drops, no other
        pred["shape"][i] = (pred["shape"][i] + 1) % len(dataset.SHAPES)
    by = colour_shape_by(pred, scenes, "background")
    assert {k: v for k, v in by.items() if k != "black"} == {k: v for k, v in before.items() if k != "black"}
    assert by["black"] == (before["black"][0] - 1, before["black"][1])
    assert sum(n for _, n in by.values()) == 32
    assert list(by) == [b for b in dataset.BG_NAMES if any(s.background == b for s in scenes)]
    right = accuracy(pred, scenes)["colour_shape"] * 32
    assert sum(r for r, _ in by.values()) == round(right)
    assert wrong
    assert format_by({"black": (1, 3), "white": (2, 2)}) == "black 1/3, white 2/2"
    with pytest.raises(ValueError, match="unknown attribute 'bg'; one of shape, colour, background, position, size"):
        colour_shape_by(pred, scenes, "bg")


def _shape_centre(image, colour) -> tuple[float, float]:
    """Centroid (x, y in 0..1) of the pixels within a tolerance of ``colour`` (RGB 0..255)."""
    rgb = (image[0].permute(1, 2, 0) + 1) * 127.5
    near = (rgb - torch.tensor(colour, dtype=rgb.dtype)).abs().amax(-1) < 60
    assert near.sum() > 100, "the shape's colour is not in the image"
    ys, xs = near.nonzero(as_tuple=True)
    side = image.shape[-1]
    return float(xs.float().mean()) / side, float(ys.float().mean()) / side


def test_the_bundled_workflow_draws_the_shape_where_the_prompt_says(tmp_path):
    """`make run`'s workflow asks for "a large red circle on a blue background, center": the
    circle must be in the centre, and moving the word moves the circle (the embedded model
    ignored position words until sitting 6: docs/embedded-model.md)."""
    import json

    torch.set_num_threads(1)
    engine = _engine(tmp_path)
    doc = json.loads((ROOT / "workflows" / "txt2img_lcm.json").read_text())
    doc["outputs"] = ["capture"]
    doc["nodes"]["capture"] = {"type": "Capture", "inputs": {"value": {"link": ["decode", "image"]}}}
    prompt = doc["nodes"]["positive"]["inputs"]["text"]
    assert prompt.endswith(", center")
    where = {}
    for position in ("center", "top left", "bottom right"):
        doc["nodes"]["positive"]["inputs"]["text"] = prompt.replace("center", position)
        image = torch.as_tensor(engine.run(doc).values["decode"]["image"]).float().permute(0, 3, 1, 2) * 2 - 1
        where[position] = _shape_centre(image, dataset.COLOURS["red"])
    (cx, cy), (lx, ly), (rx, ry) = where["center"], where["top left"], where["bottom right"]
    assert abs(cx - 0.5) < 0.12 and abs(cy - 0.5) < 0.12, where
    assert lx < 0.4 and ly < 0.4 and rx > 0.6 and ry > 0.6, where
