"""Prompt accuracy and speed of the embedded model ``builtin:tiny-shapes``.

For a fixed set of prompts (``dataset.eval_prompts``, every shape and colour)
and seeds (prompt i uses seed i), generate one 128px image per prompt with the
base model and a standard scheduler, read each image back with the evaluator
(a classifier trained on the data set generator, not on the model), and print
per-attribute accuracy and seconds/image. ``colour+shape`` counts an image
right when both its colour and its shape match the prompt.

    .venv/bin/python bench/quality.py [--prompts 64] [--grid docs/img/tiny-shapes-grid.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes"
EVALUATOR = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes-evaluator.safetensors"

RUNS = [  # (scheduler, steps, guidance)
    ("euler", 25, 1.0),
    ("euler", 4, 1.0),
    ("lcm", 4, 1.0),
    ("euler", 25, 3.0),
]


def save_grid(images, path: Path, columns: int = 8, labels: list[str] | None = None) -> None:
    import numpy as np
    from PIL import Image

    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    rows = [np.concatenate(list(arr[i:i + columns]), axis=1) for i in range(0, len(arr), columns)]
    width = rows[0].shape[1]
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)


def _reconstruction_row(pipe, judge, prompts) -> None:
    """The prompts' own scenes, rendered, through the VAE and back: the ceiling the
    generated images can reach (what the VAE loses, the UNet cannot win back)."""
    import torch

    from lcmgraph.train import dataset
    from lcmgraph.train.evaluator import accuracy, predict

    scenes = [s for _, s in prompts]
    x = torch.stack([torch.from_numpy(dataset.render(s)).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    with torch.no_grad():
        y = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((y - x) / 2).pow(2).flatten(1).mean(1)
    db = float((-10 * torch.log10(mse)).mean())
    r = accuracy(predict(judge, y), scenes)
    clean = accuracy(predict(judge, x), scenes)["colour_shape"]
    print(f"{'VAE recon':<10}{'-':>6}{'-':>5}{r['colour_shape']:>14.3f}{r['colour']:>8.3f}{r['shape']:>7.3f}"
          f"{r['background']:>6.3f}{r['position']:>6.3f}{r['size']:>6.3f}{'':>9}  PSNR {db:.1f} dB; clean renders {clean:.3f}")


def main(argv=None) -> int:
    import torch
    from diffusers import StableDiffusionPipeline

    from lcmgraph.train import dataset
    from lcmgraph.train.evaluator import load_evaluator
    from lcmgraph.train.generate import prompt_accuracy, set_scheduler

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--evaluator", type=Path, default=EVALUATOR)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--grid", type=Path, default=None, help="save the first run's first 16 images as a PNG grid (2 rows of 8)")
    p.add_argument("--only", default=None, help="run only SCHEDULER:STEPS[:GUIDANCE], e.g. euler:25")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = StableDiffusionPipeline.from_pretrained(args.model, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    judge = load_evaluator(args.evaluator)
    prompts = dataset.eval_prompts(args.prompts)
    runs = RUNS
    if args.only:
        parts = args.only.split(":")
        runs = [(parts[0], int(parts[1]), float(parts[2]) if len(parts) > 2 else 1.0)]
    print(f"model {args.model.name}: {args.prompts} prompts, seeds 0..{args.prompts - 1}, 128x128, "
          f"torch threads {args.threads}, device cpu")
    header = f"{'scheduler':<10}{'steps':>6}{'cfg':>5}{'colour+shape':>14}{'colour':>8}{'shape':>7}{'bg':>6}{'pos':>6}{'size':>6}{'s/image':>9}"
    print(header)
    start = time.perf_counter()
    _reconstruction_row(pipe, judge, prompts)
    for i, (name, steps, guidance) in enumerate(runs):
        set_scheduler(pipe, name)
        r = prompt_accuracy(pipe, judge, prompts, steps, guidance, batch=args.batch)
        print(f"{name:<10}{steps:>6}{guidance:>5.1f}{r['colour_shape']:>14.3f}{r['colour']:>8.3f}{r['shape']:>7.3f}"
              f"{r['background']:>6.3f}{r['position']:>6.3f}{r['size']:>6.3f}{r['seconds_per_image']:>9.4f}", flush=True)
        if i == 0 and args.grid:
            save_grid(r["images"][:16], args.grid)
    print(f"chance: colour+shape {1 / (len(dataset.SHAPES) * len(dataset.FG_NAMES)):.3f}, "
          f"colour {1 / len(dataset.FG_NAMES):.3f}, shape {1 / len(dataset.SHAPES):.3f}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
