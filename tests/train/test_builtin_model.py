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

import torch
from lcmgraph_nodes.diffusion.train import dataset
from lcmgraph_nodes.diffusion.train.evaluator import accuracy, load_evaluator

from lcmgraph import Engine, EngineConfig

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "nodes" / "diffusion" / "builtin"
MODEL = BUILTIN / "tiny-shapes"
PACKS = ROOT / "tests" / "diffusion" / "packs"

#: 4-step LCMSampler (guidance 1.0) accuracy over the 16 prompts below must reach these.
#: Measured with the shipped weights (UNet step 8000, offset noise; 2026-11-26): colour+shape
#: 0.8125 (13/16), colour 0.875, background 1.0 (chance: 0.025, 0.125, 0.09). The first
#: weights (step 3456, no offset noise) scored 0.31 / 0.62 / near chance on background.
FLOOR_COLOUR_SHAPE = 0.6
FLOOR_COLOUR = 0.7
FLOOR_BACKGROUND = 0.8
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
