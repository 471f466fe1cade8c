"""Pick a LoRA checkpoint of the embedded model on held-out prompts.

``train-lcm-lora`` / ``train-lora --keep-every N`` write ``RUN/lora-STEP.safetensors``
snapshots; the last one is not the best (the shipped LCM-LoRA's run peaked at
step 900 of 2,400). This scores each snapshot on prompts the bench does not use
(``dataset.eval_prompts(N, seed=777)``; bench/quality.py uses seed 1234) and
prints one row per file. A weak hold-out by default: both lists cycle through
shapes and colours by index and both use noise seeds 0..N-1; only background,
position and size differ (62 of 64 captions). ``--noise-seed S`` draws prompt
i's noise from seed S + i instead; with S >= 192 (the most prompts the README's
bench rows use) no image shares its noise with the bench's.

- ``--kind lcm``: the LoRA alone at weight 1.0, LCMScheduler, 4 steps, guidance 1;
  picked by colour+shape.
- ``--kind style``: the LoRA at ``--weight`` (0.8) stacked on ``--lcm-lora`` at 1.0,
  LCM 4 steps; the style judge's outlined fraction next to colour+shape; picked as
  the best colour+shape among those read as styled >= ``--style-goal`` (0.8), else
  the most styled.

    python bench/pick_lora.py --base MODEL --kind lcm RUN/lora-*.safetensors [--copy-best OUT]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import EVALUATOR, LCM_LORA, MODEL, STYLE_JUDGE  # noqa: E402

HELD_OUT_SEED = 777


def score(pipe, judge, style_judge, prompts, loras: dict[str, tuple[Path, float]], batch: int,
          noise_seed: int = 0, keep_predictions: bool = False) -> dict:
    from lcmgraph_nodes.diffusion.train.evaluator import predict, style_score
    from lcmgraph_nodes.diffusion.train.generate import prompt_accuracy, set_scheduler

    pipe.unload_lora_weights()
    for name, (path, _) in loras.items():
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    pipe.set_adapters(list(loras), [w for _, w in loras.values()])
    set_scheduler(pipe, "lcm")
    r = prompt_accuracy(pipe, judge, prompts, steps=4, batch=batch, seed=noise_seed)
    if keep_predictions:  # for --by: the judge's reading of each image
        r["pred"] = predict(judge, r["images"])
    r["style"] = float(style_score(style_judge, r.pop("images")).mean()) if style_judge is not None else float("nan")
    return r


def pick(rows: list[tuple[Path, dict]], kind: str, style_goal: float) -> Path:
    if kind == "lcm":
        return max(rows, key=lambda r: r[1]["colour_shape"])[0]
    styled = [r for r in rows if r[1]["style"] >= style_goal]
    if styled:
        return max(styled, key=lambda r: (r[1]["colour_shape"], r[1]["style"]))[0]  # a tie: the more styled
    return max(rows, key=lambda r: r[1]["style"])[0]


def main(argv=None) -> int:
    import torch
    from diffusers import StableDiffusionPipeline
    from lcmgraph_nodes.diffusion.models.manager import pick_device
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import (
        colour_shape_by,
        format_by,
        load_evaluator,
        load_style_judge,
    )

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("loras", type=Path, nargs="+", help="the snapshots to score")
    p.add_argument("--kind", choices=["lcm", "style"], default="lcm")
    p.add_argument("--base", type=Path, default=MODEL)
    p.add_argument("--evaluator", type=Path, default=None, help="default: BASE-evaluator.safetensors beside the base, "
                                                                  "else the shipped one")
    p.add_argument("--style-judge", type=Path, default=STYLE_JUDGE)
    p.add_argument("--lcm-lora", type=Path, default=LCM_LORA, help="--kind style: the LCM-LoRA it is stacked on")
    p.add_argument("--weight", type=float, default=0.8, help="--kind style: the style LoRA's weight")
    p.add_argument("--style-goal", type=float, default=0.8)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--noise-seed", type=int, default=0,
                   help="prompt i's noise comes from seed NOISE_SEED + i (default 0, as bench/quality.py; "
                        ">= 192 makes the hold-out share no noise with the bench)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--by", choices=list(dataset.ATTRIBUTES), default=None,
                   help="under each row, colour+shape right per value of this prompt attribute")
    p.add_argument("--copy-best", type=Path, default=None, help="copy the picked file here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    pipe = StableDiffusionPipeline.from_pretrained(args.base, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    beside = args.base.parent / f"{args.base.name}-evaluator.safetensors"
    evaluator = args.evaluator or (beside if beside.exists() else EVALUATOR)
    judge = load_evaluator(evaluator, device)
    if args.kind == "style" and not args.style_judge.exists():
        p.error(f"--kind style needs the style judge; {args.style_judge} does not exist")
    style_judge = load_style_judge(args.style_judge, device) if args.style_judge.exists() else None
    prompts = dataset.eval_prompts(args.prompts, seed=HELD_OUT_SEED)
    print(f"base {args.base}, {args.kind} LoRAs on {args.prompts} held-out prompts (seed {HELD_OUT_SEED}, "
          f"noise seeds {args.noise_seed}..{args.noise_seed + args.prompts - 1}), "
          f"LCM 4 steps, device {device}, evaluator {evaluator}"
          + (f", stacked at {args.weight} on {args.lcm_lora.name}" if args.kind == "style" else ""))
    print(f"{'file':<28}{'colour+shape':>14}{'colour':>8}{'shape':>7}{'bg':>6}{'pos':>6}{'size':>6}{'style':>7}")
    rows = []
    start = time.perf_counter()
    for path in sorted(args.loras):
        loras = {"it": (path, 1.0)} if args.kind == "lcm" else {"lcm": (args.lcm_lora, 1.0), "it": (path, args.weight)}
        r = score(pipe, judge, style_judge, prompts, loras, args.batch, args.noise_seed, keep_predictions=bool(args.by))
        rows.append((path, r))
        print(f"{path.name:<28}{r['colour_shape']:>14.3f}{r['colour']:>8.3f}{r['shape']:>7.3f}{r['background']:>6.3f}"
              f"{r['position']:>6.3f}{r['size']:>6.3f}{r['style']:>7.3f}", flush=True)
        if args.by:
            by = colour_shape_by(r["pred"], [sc for _, sc in prompts], args.by)
            print(f"  colour+shape by {args.by}: {format_by(by)}", flush=True)
    best = pick(rows, args.kind, args.style_goal)
    print(f"picked {best} ({time.perf_counter() - start:.0f} s)")
    if args.copy_best:
        args.copy_best.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.copy_best.with_name(args.copy_best.name + ".tmp")
        shutil.copyfile(best, tmp)  # then renamed: an interrupted copy never replaces a shipped LoRA
        tmp.replace(args.copy_best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
