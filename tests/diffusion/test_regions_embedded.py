"""Two-region prompts on the embedded model: each half of the image shows its
own prompt (issue #16), read back by the model's evaluator — a classifier
trained on the data set's renders, not on the model (bench/regions.py
measures more pairs and layouts; README "Masks and regions")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lcmgraph import Engine, EngineConfig

#: (shape, colour) pairs: the left and right prompts differ in both.
PAIRS = [(("circle", "red"), ("square", "blue")), (("triangle", "yellow"), ("star", "green")),
         (("cross", "purple"), ("circle", "orange")), (("square", "pink"), ("triangle", "red")),
         (("star", "cyan"), ("cross", "yellow")), (("circle", "blue"), ("star", "red")),
         (("square", "green"), ("circle", "purple")), (("triangle", "orange"), ("square", "cyan"))]


def prompt(shape: str, colour: str) -> str:
    return f"a large {colour} {shape} on a white background, center"


def two_regions(left: str, right: str, seed: int) -> dict:
    """256x128: the left prompt on the left 128x128, the right one on the right, and a weak
    whole-image prompt (strength 0.2) over the seam; the LCM-LoRA, 4 steps."""
    link = lambda node, out: {"link": [node, out]}  # noqa: E731
    area = lambda name, x: {"type": "ConditioningSetArea", "inputs": {  # noqa: E731
        "conditioning": link(name, "conditioning"), "width": 128, "height": 128, "x": x, "y": 0, "strength": 1.0}}
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}},
        "lora": {"type": "ApplyLoRA", "inputs": {"model": link("ckpt", "model"),
                                                 "lora": "builtin:tiny-shapes-lcm-lora", "weight": 1.0}},
        "left": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": left}},
        "right": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": right}},
        "whole": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": "a white background"}},
        "left_area": area("left", 0),
        "right_area": area("right", 128),
        "weak": {"type": "ConditioningSetAreaStrength", "inputs": {"conditioning": link("whole", "conditioning"),
                                                                   "strength": 0.2}},
        "halves": {"type": "ConditioningCombine", "inputs": {"conditioning_1": link("left_area", "conditioning"),
                                                             "conditioning_2": link("right_area", "conditioning")}},
        "all": {"type": "ConditioningCombine", "inputs": {"conditioning_1": link("halves", "conditioning"),
                                                          "conditioning_2": link("weak", "conditioning")}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": 256, "height": 128, "batch": 1}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("lora", "model"), "positive": link("all", "conditioning"),
                                                     "latent": link("latent", "latent"), "seed": seed, "steps": 4,
                                                     "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "show": {"type": "PreviewImage", "inputs": {"image": link("decode", "image")}},
    }}


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """The 16 halves of the 8 two-region images, and what each half's prompt asked for."""
    home = tmp_path_factory.mktemp("regions-embedded")
    engine = Engine(EngineConfig(device="cpu", home=home, output_dir=home / "out", plugins_from_env=False))
    crops, wanted = [], []
    for seed, (left, right) in enumerate(PAIRS):
        image = engine.run(two_regions(prompt(*left), prompt(*right), seed)).values["decode"]["image"]
        x = image.permute(0, 3, 1, 2) * 2 - 1  # [1, 3, 128, 256] in -1..1, as the evaluator reads
        crops += [x[..., :128], x[..., 128:]]
        wanted += [left, right]
    return torch.cat(crops), wanted


def test_each_half_shows_its_own_prompt(halves):
    from lcmgraph_nodes.diffusion.builtin import _SHIPPED
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import load_evaluator, predict

    crops, wanted = halves
    judge = load_evaluator(_SHIPPED / "tiny-shapes-evaluator.safetensors")
    pred = predict(judge, F.interpolate(crops, size=(128, 128), mode="bilinear", antialias=True))
    colour = [dataset.FG_NAMES[int(i)] for i in pred["colour"]]
    shape = [dataset.SHAPES[int(i)] for i in pred["shape"]]
    own_colour = sum(c == w[1] for c, w in zip(colour, wanted, strict=True))
    # the colour of the prompt on the *other* half: what a leak across the seam would show
    other = [wanted[i ^ 1] for i in range(len(wanted))]
    other_colour = sum(c == o[1] for c, o in zip(colour, other, strict=True))
    both = sum(c == w[1] and s == w[0] for c, s, w in zip(colour, shape, wanted, strict=True))
    print(f"\n16 halves: own colour {own_colour}, the other half's colour {other_colour}, "
          f"own colour and shape {both} (chance 1/40 each)")
    assert own_colour >= 11 and other_colour <= 2
    assert both >= 8
