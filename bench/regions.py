"""Two-region prompts on the embedded model ``builtin:tiny-shapes``, read back by its evaluator.

Each image puts one prompt on the left half and another on the right
(ConditioningSetArea + ConditioningCombine through lcmgraph's own sampler),
with the LCM-LoRA in 4 steps. Every half is cropped and classified by the
evaluator (a classifier trained on the data set's renders, not on the
model); a half counts right when its colour and shape are its own prompt's.
Two layouts: a 256x128 canvas with two 128x128 areas (the size the model
was trained at) and a 128x128 canvas with two 64x128 halves. For scale, the
same prompts sampled alone at 128x128 (the "alone" row) give the model's
own accuracy on them. Each layout also runs with a weak whole-image prompt
("a white background", ConditioningSetAreaStrength 0.2), which covers the
seam where the areas meet (alone, each area's prediction at its cut edge
shows there as a line) — the grid shows that variant.

    .venv/bin/python bench/regions.py [--pairs 32] [--grid docs/img/regions-grid.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from lcmgraph import Engine, EngineConfig

SHAPES_COLOURS = [("circle", "red"), ("square", "blue"), ("triangle", "yellow"), ("star", "green"),
                  ("cross", "purple"), ("circle", "orange"), ("square", "pink"), ("star", "cyan")]


def prompt(shape: str, colour: str) -> str:
    return f"a large {colour} {shape} on a white background, center"


def pairs(n: int) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """n (left, right) pairs of different shapes and colours, cycling through the list."""
    out = []
    for i in range(n):
        left = SHAPES_COLOURS[i % len(SHAPES_COLOURS)]
        right = SHAPES_COLOURS[(i * 3 + 1) % len(SHAPES_COLOURS)]
        if left[0] == right[0] or left[1] == right[1]:
            right = SHAPES_COLOURS[(i + 4) % len(SHAPES_COLOURS)]
        out.append((left, right))
    return out


def workflow(left: str, right: str, seed: int, width: int, height: int, base: float = 0.0) -> dict:
    half = width // 2
    link = lambda node, out: {"link": [node, out]}  # noqa: E731
    nodes = {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}},
        "lora": {"type": "ApplyLoRA", "inputs": {"model": link("ckpt", "model"), "lora": "builtin:tiny-shapes-lcm-lora",
                                                 "weight": 1.0}},
        "left": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": left}},
        "right": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": right}},
        "left_area": {"type": "ConditioningSetArea", "inputs": {"conditioning": link("left", "conditioning"),
                                                                "width": half, "height": height, "x": 0, "y": 0,
                                                                "strength": 1.0}},
        "right_area": {"type": "ConditioningSetArea", "inputs": {"conditioning": link("right", "conditioning"),
                                                                 "width": half, "height": height, "x": half, "y": 0,
                                                                 "strength": 1.0}},
        "both": {"type": "ConditioningCombine", "inputs": {"conditioning_1": link("left_area", "conditioning"),
                                                           "conditioning_2": link("right_area", "conditioning")}},
        "whole": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": "a white background"}},
        "weak": {"type": "ConditioningSetAreaStrength", "inputs": {"conditioning": link("whole", "conditioning"),
                                                                   "strength": base}},
        "with_base": {"type": "ConditioningCombine", "inputs": {"conditioning_1": link("both", "conditioning"),
                                                                "conditioning_2": link("weak", "conditioning")}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": width, "height": height, "batch": 1}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("lora", "model"),
                                                     "positive": link("both", "conditioning"),
                                                     "latent": link("latent", "latent"), "seed": seed, "steps": 4,
                                                     "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "out": {"type": "BenchImage", "inputs": {"image": link("decode", "image")}},
    }
    if base > 0:
        nodes["sampler"]["inputs"]["positive"] = link("with_base", "conditioning")
    else:
        for name in ("whole", "weak", "with_base"):
            del nodes[name]
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes, "outputs": ["out"]}


def alone(text: str, seed: int) -> dict:
    doc = workflow(text, text, seed, 128, 128)
    doc["nodes"]["sampler"]["inputs"]["positive"] = {"link": ["left", "conditioning"]}
    for name in ("right", "left_area", "right_area", "both"):
        del doc["nodes"][name]
    return doc


def main(argv=None) -> int:
    import torch
    import torch.nn.functional as F
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import load_evaluator, predict

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--grid", type=Path, default=None, help="save the first 8 wide images (256x128, with the whole-image prompt) as a PNG grid")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    home = Path(tempfile.mkdtemp(prefix="lcmgraph-regions-"))
    engine = Engine(EngineConfig(device="cpu", home=home, output_dir=home / "out",
                                 plugin_dirs=[Path(__file__).parent / "packs"], plugins_from_env=False))
    judge = load_evaluator(Path(__file__).resolve().parents[1] / "nodes/diffusion/builtin/tiny-shapes-evaluator.safetensors")

    def image(doc):
        return engine.run(doc).values["decode"]["image"].permute(0, 3, 1, 2) * 2 - 1  # [1, 3, H, W] in -1..1

    def right(crops, wanted):
        pred = predict(judge, F.interpolate(torch.cat(crops), size=(128, 128), mode="bilinear", antialias=True))
        shape = torch.tensor([dataset.SHAPES.index(s) for s, _ in wanted])
        colour = torch.tensor([dataset.FG_NAMES.index(c) for _, c in wanted])
        return (pred["shape"] == shape).float(), (pred["colour"] == colour).float()

    print(f"{args.pairs} left/right prompt pairs, seeds 0..{args.pairs - 1}, LCM-LoRA 4 steps, guidance 1.0, CPU")
    print(f"{'layout':<34}{'colour+shape':>13}{'colour':>8}{'shape':>7}{'both halves':>13}{'s/image':>9}")
    grid = []
    image(workflow(prompt("circle", "red"), prompt("square", "blue"), 0, 128, 128))  # load the models first
    layouts = (("256x128, two 128x128 areas", 256, 128, 0.0), ("  + whole image at strength 0.2", 256, 128, 0.2),
               ("128x128, two 64x128 halves", 128, 128, 0.0), ("  + whole image at strength 0.2", 128, 128, 0.2))
    for label, width, height, base in layouts:
        crops, wanted, start = [], [], time.perf_counter()
        for seed, (left, right_) in enumerate(pairs(args.pairs)):
            x = image(workflow(prompt(*left), prompt(*right_), seed, width, height, base))
            if width == 256 and base > 0 and len(grid) < 8:
                grid.append(x)
            crops += [x[..., : width // 2], x[..., width // 2:]]
            wanted += [left, right_]
        seconds = (time.perf_counter() - start) / args.pairs
        shape, colour = right(crops, wanted)
        both = shape * colour
        halves = both.view(-1, 2).prod(1)
        print(f"{label:<34}{float(both.mean()):>13.3f}{float(colour.mean()):>8.3f}{float(shape.mean()):>7.3f}"
              f"{float(halves.mean()):>13.3f}{seconds:>9.3f}", flush=True)
    images, wanted = [], []
    for seed, pair in enumerate(pairs(args.pairs)):
        for scene in pair:
            images.append(image(alone(prompt(*scene), seed)))
            wanted.append(scene)
    shape, colour = right(images, wanted)
    print(f"{'alone, 128x128 (one prompt)':<34}{float((shape * colour).mean()):>13.3f}{float(colour.mean()):>8.3f}"
          f"{float(shape.mean()):>7.3f}{'-':>13}{'-':>9}")
    print(f"chance: colour+shape {1 / (len(dataset.SHAPES) * len(dataset.FG_NAMES)):.3f}")
    if args.grid:
        sys.path.insert(0, str(Path(__file__).parent))
        from quality import save_grid

        save_grid(torch.cat(grid), args.grid, columns=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
