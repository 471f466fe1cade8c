"""Prompt accuracy and speed of the embedded model ``builtin:tiny-shapes``.

For a fixed set of prompts (``dataset.eval_prompts``, every shape and colour)
and seeds (prompt i uses seed i), generate one 128px image per prompt with the
base model and a standard scheduler, read each image back with the evaluator
(a classifier trained on the data set generator, not on the model), and print
per-attribute accuracy and seconds/image. ``colour+shape`` counts an image
right when both its colour and its shape match the prompt.

With the shipped LoRAs it adds the LCM-LoRA rows (LCMScheduler, guidance 1.0,
1 / 2 / 4 / 8 steps), the same LCM-LoRA under the other few-step recipes
(TCD at eta 0 and 0.3, Euler and DDIM on trailing timesteps, 2 / 4 / 8 steps),
and LCM-LoRA 1.0 + the outline style LoRA 0.8 at 4 steps,
whose ``style`` column is the fraction of images the style judge (a second
classifier trained on plain and outlined renders) reads as outlined.

    .venv/bin/python bench/quality.py [--prompts 64] [--grid docs/img/tiny-shapes-grid.png]
                                      [--steps-grid docs/img/lcm-lora-steps.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes"
BUILTIN = ROOT / "nodes" / "diffusion" / "builtin"
EVALUATOR = BUILTIN / "tiny-shapes-evaluator.safetensors"
STYLE_JUDGE = BUILTIN / "tiny-shapes-style-judge.safetensors"
LCM_LORA = BUILTIN / "tiny-shapes-lcm-lora.safetensors"
STYLE_LORA = BUILTIN / "tiny-shapes-outline-lora.safetensors"

#: (label, scheduler, steps, guidance, {adapter: weight}[, schedule, eta]); the scheduler is the
#: Sampler's (lcmgraph's sampler / schedule names onto diffusers, models/schedules.py).
RUNS = [
    ("base", "euler", 25, 1.0, {}),
    ("base", "euler", 4, 1.0, {}),
    ("base", "lcm", 4, 1.0, {}),
    ("base", "euler", 25, 3.0, {}),
    ("base", "dpmpp_2m", 25, 3.0, {}, "karras"),
    ("base", "uni_pc", 25, 3.0, {}),
    ("base", "dpmpp_sde", 25, 3.0, {}, "karras"),
    ("lcm-lora", "lcm", 1, 1.0, {"lcm": 1.0}),
    ("lcm-lora", "lcm", 2, 1.0, {"lcm": 1.0}),
    ("lcm-lora", "lcm", 4, 1.0, {"lcm": 1.0}),
    ("lcm-lora", "lcm", 8, 1.0, {"lcm": 1.0}),
    *[("lcm-lora", sampler, steps, 1.0, {"lcm": 1.0}, schedule, eta)
      for sampler, schedule, eta in (("tcd", "auto", 0.0), ("tcd", "auto", 0.3), ("euler", "sgm_uniform", 0.0),
                                     ("ddim", "sgm_uniform", 0.0))
      for steps in (2, 4, 8)],
    ("lcm+style", "lcm", 4, 1.0, {"lcm": 1.0, "style": 0.8}),
    ("base+style", "euler", 25, 1.0, {"style": 0.8}),
]
GRID_STEPS = (1, 2, 4, 8)


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
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import accuracy, predict

    scenes = [s for _, s in prompts]
    x = torch.stack([torch.from_numpy(dataset.render(s)).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    x = x.to(pipe.device)
    with torch.no_grad():
        y = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    x, y = x.cpu(), y.cpu()
    mse = ((y - x) / 2).pow(2).flatten(1).mean(1)
    db = float((-10 * torch.log10(mse)).mean())
    r = accuracy(predict(judge, y), scenes)
    clean = accuracy(predict(judge, x), scenes)["colour_shape"]
    print(f"{'VAE recon':<21}{'-':>6}{'-':>5}{r['colour_shape']:>14.3f}{r['colour']:>8.3f}{r['shape']:>7.3f}"
          f"{r['background']:>6.3f}{r['position']:>6.3f}{r['size']:>6.3f}{'':>9}  PSNR {db:.1f} dB; clean renders {clean:.3f}")


def main(argv=None) -> int:
    import torch
    from diffusers import StableDiffusionPipeline
    from lcmgraph_nodes.diffusion.models.manager import pick_device
    from lcmgraph_nodes.diffusion.models.schedules import make_scheduler
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import (
        colour_shape_by,
        format_by,
        load_evaluator,
        load_style_judge,
        predict,
        style_score,
    )
    from lcmgraph_nodes.diffusion.train.generate import SCHEDULER_CONFIG, prompt_accuracy

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--evaluator", type=Path, default=EVALUATOR)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--grid", type=Path, default=None, help="save one row's first 16 images as a PNG grid (2 rows of 8)")
    p.add_argument("--grid-row", default="base:euler:25:3.0", help="the row --grid saves (default %(default)s)")
    p.add_argument("--only", default=None, help="run only rows whose label:scheduler:steps:cfg contains this, e.g. lcm-lora")
    p.add_argument("--style-grid", type=Path, default=None,
                   help="save a prompts x (base Euler 25 CFG 3, LCM-LoRA 4 steps, + outline 0.8) grid")
    p.add_argument("--style-grid-background", choices=list(dataset.BG_NAMES), default=None,
                   help="--style-grid shows the first 6 prompts with this background (seed = row)")
    p.add_argument("--lcm-lora", type=Path, default=LCM_LORA)
    p.add_argument("--style-lora", type=Path, default=STYLE_LORA)
    p.add_argument("--style-judge", type=Path, default=STYLE_JUDGE)
    p.add_argument("--device", default="cpu", help="cpu (the README's numbers), cuda, auto")
    p.add_argument("--by", choices=list(dataset.ATTRIBUTES), default=None,
                   help="under each row, colour+shape right per value of this prompt attribute")
    p.add_argument("--steps-grid", type=Path, default=None,
                   help="save a prompts x (LCM-LoRA 1/2/4/8 steps, base Euler 4 and 25) grid")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = StableDiffusionPipeline.from_pretrained(args.model, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    device = pick_device(args.device)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    judge = load_evaluator(args.evaluator, device)
    style_judge = load_style_judge(args.style_judge, device) if args.style_judge.exists() else None
    adapters = {}
    for name, path in (("lcm", args.lcm_lora), ("style", args.style_lora)):
        if path.exists():
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            adapters[name] = path
    prompts = dataset.eval_prompts(args.prompts)
    runs = [r for r in RUNS if set(r[4]) <= set(adapters)]
    if args.only:
        runs = [r for r in runs if args.only in ":".join(map(str, (*r[:4], *r[5:])))]
    print(f"model {args.model.name}: {args.prompts} prompts, seeds 0..{args.prompts - 1}, 128x128, "
          f"torch threads {args.threads}, device {device}; LoRAs: "
          + (", ".join(f"{k}={v.name}" for k, v in adapters.items()) or "none found"))
    header = (f"{'model':<11}{'scheduler':<21}{'steps':>6}{'cfg':>5}{'colour+shape':>14}{'colour':>8}{'shape':>7}"
              f"{'bg':>6}{'pos':>6}{'size':>6}{'style':>7}{'s/image':>9}")
    print(header)
    start = time.perf_counter()
    _reconstruction_row(pipe, judge, prompts)
    for label, name, steps, guidance, weights, *rest in runs:
        schedule, eta = [*rest, *["auto", 0.0][len(rest):]]
        _set_adapters(pipe, weights)
        pipe.scheduler = make_scheduler(name, SCHEDULER_CONFIG, schedule, steps=steps, seed=0)
        call = {"eta": eta} if name in ("tcd", "ddim") else {}
        r = prompt_accuracy(pipe, judge, prompts, steps, guidance, batch=args.batch, **call)
        style = f"{float(style_score(style_judge, r['images']).mean()):>7.3f}" if style_judge else f"{'-':>7}"
        shown = name + ("" if schedule == "auto" else f" {schedule}") + (f" eta {eta:g}" if name == "tcd" else "")
        print(f"{label:<11}{shown:<21}{steps:>6}{guidance:>5.1f}{r['colour_shape']:>14.3f}{r['colour']:>8.3f}"
              f"{r['shape']:>7.3f}{r['background']:>6.3f}{r['position']:>6.3f}{r['size']:>6.3f}{style}"
              f"{r['seconds_per_image']:>9.4f}", flush=True)
        if args.by:
            by = colour_shape_by(predict(judge, r["images"]), [sc for _, sc in prompts], args.by)
            print(f"{'':<11}colour+shape by {args.by}: {format_by(by)}", flush=True)
        if args.grid and f"{label}:{name}:{steps}:{guidance}" == args.grid_row:
            save_grid(r["images"][:16], args.grid)
    if args.steps_grid and "lcm" in adapters:
        steps_grid(pipe, prompts[:6], args.steps_grid)
    if args.style_grid and {"lcm", "style"} <= set(adapters):
        shown = [p for p in prompts if p[1].background == args.style_grid_background] if args.style_grid_background else prompts
        style_grid(pipe, shown[:6], args.style_grid)
    print(f"chance: colour+shape {1 / (len(dataset.SHAPES) * len(dataset.FG_NAMES)):.3f}, "
          f"colour {1 / len(dataset.FG_NAMES):.3f}, shape {1 / len(dataset.SHAPES):.3f}; total {time.perf_counter() - start:.0f} s")
    return 0


def _set_adapters(pipe, weights: dict) -> None:
    if not weights:
        if getattr(pipe.unet, "peft_config", None):
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters(list(weights), list(weights.values()))


def steps_grid(pipe, prompts, path: Path) -> None:
    """Rows: prompts; columns: LCM-LoRA at 1, 2, 4, 8 steps, then the base model with Euler
    at 4 and 25 steps; same seed per row; column labels on top."""
    columns = [(f"LCM-LoRA {steps} step{'s' if steps > 1 else ''}", {"lcm": 1.0}, "lcm", steps, 1.0)
               for steps in GRID_STEPS]
    columns += [(f"base Euler {steps}", {}, "euler", steps, 1.0) for steps in (4, 25)]
    labelled_grid(pipe, prompts, columns, path)


def style_grid(pipe, prompts, path: Path) -> None:
    """Rows: prompts; columns: the base (Euler 25, CFG 3), the LCM-LoRA at 4 steps, and the
    LCM-LoRA with the outline style LoRA at 0.8 (4 steps)."""
    labelled_grid(pipe, prompts, [("base Euler 25 CFG 3", {}, "euler", 25, 3.0),
                                  ("LCM-LoRA 4 steps", {"lcm": 1.0}, "lcm", 4, 1.0),
                                  ("+ outline LoRA 0.8", {"lcm": 1.0, "style": 0.8}, "lcm", 4, 1.0)], path)


def labelled_grid(pipe, prompts, columns, path: Path) -> None:
    """``columns``: (label, adapters, scheduler, steps, guidance); same seed per row."""
    import torch
    from lcmgraph_nodes.diffusion.train.generate import generate, set_scheduler
    from PIL import Image, ImageDraw

    texts = [p for p, _ in prompts]
    seeds = list(range(len(texts)))
    images = []
    for _, adapters, scheduler, steps, guidance in columns:
        _set_adapters(pipe, adapters)
        set_scheduler(pipe, scheduler)
        images.append(generate(pipe, texts, seeds, steps, guidance))
    images = torch.stack(images, 1).flatten(0, 1)  # row-major: prompt, then column
    tmp = path.with_suffix(".tmp.png")
    save_grid(images, tmp, columns=len(columns))
    grid = Image.open(tmp)
    side = images.shape[-1]
    out = Image.new("RGB", (grid.width, grid.height + 18), "white")
    out.paste(grid, (0, 18))
    draw = ImageDraw.Draw(out)
    for c, (label, *_) in enumerate(columns):
        draw.text((c * side + 4, 3), label, fill="black")
    out.save(path, optimize=True)
    tmp.unlink()


if __name__ == "__main__":
    sys.exit(main())
