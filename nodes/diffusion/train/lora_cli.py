"""``lcmgraph train-lcm-lora`` and ``lcmgraph train-lora``: LoRA trainers on a base model.

    lcmgraph train-lcm-lora --run train-runs/lcm-lora --steps 1500 --out lcm.safetensors
    lcmgraph train-lora --style outline --run train-runs/outline --steps 600 --out outline.safetensors

The base (``--base``) is a diffusers folder, SD1.5 or SDXL architecture; the
default is the embedded model. Interrupt at any time: the same command
resumes from ``--run``. The LoRA is written to ``--out`` (default
``RUN/lora.safetensors``) at the end, and whenever ``--minutes`` stops a run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _default_base() -> Path:
    from .cli import builtin_dir

    return builtin_dir() / "tiny-shapes"


def add_lora_parsers(subparsers) -> None:
    for name, kind, summary in (("train-lcm-lora", "lcm", "distil an LCM-LoRA (4-step sampling) from a base model"),
                                ("train-lora", "style", "fine-tune a plain (e.g. style) LoRA on a base model")):
        p = subparsers.add_parser(name, help=summary, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        configure(p, kind)
        p.set_defaults(handler=run_lora)


def configure(p: argparse.ArgumentParser, kind: str) -> None:
    from .lora import TARGET_SETS, LoraTrain

    d = LoraTrain(kind=kind)
    p.set_defaults(kind=kind)
    p.add_argument("--base", type=Path, default=None, help="base model, a diffusers folder (default: the embedded tiny-shapes)")
    p.add_argument("--run", type=Path, required=True, help="run folder: checkpoint, latents, log")
    p.add_argument("--out", type=Path, default=None, help="LoRA file to write (default RUN/lora.safetensors)")
    p.add_argument("--steps", type=int, default=d.steps, help="target steps, the lr schedule's length (default %(default)s)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock bound for this invocation")
    p.add_argument("--rank", type=int, default=d.rank, help="LoRA rank (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    p.add_argument("--data", default="shapes", help="'shapes' (the synthetic generator) or a folder of images + .txt captions")
    p.add_argument("--style", default="outline" if kind == "style" else "plain",
                   help="look of the shapes data: plain or outline (default %(default)s)")
    p.add_argument("--pool", type=int, default=d.pool, help="data items encoded once (default %(default)s)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="training resolution (default %(default)s)")
    if kind == "lcm":
        p.add_argument("--w-min", type=float, default=d.w_min, help="teacher guidance w range, CFG scale w + 1 (default %(default)s)")
        p.add_argument("--w-max", type=float, default=d.w_max, help="(default %(default)s)")
        p.add_argument("--target-ema", type=float, default=d.target_ema,
                       help="EMA decay of the target network's LoRA (0: the live student) (default %(default)s)")
        p.add_argument("--ddim-steps", type=int, default=d.ddim_steps, help="skipping-step schedule length, k = 1000 / this (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between prompt-accuracy checks on the shapes model (0: none)")
    p.add_argument("--keep-every", type=int, default=0,
                   help="also write RUN/lora-STEP.safetensors every N steps, to pick one on held-out prompts (0: none)")
    p.add_argument("--oversample", default=d.oversample, metavar="ATTR=VALUE:K[,...]",
                   help="draw shapes-data items with that attribute K times as often, "
                        "e.g. background=black:3 (default: uniform)")
    if kind == "style":
        p.add_argument("--pyramid-noise", type=float, default=None,
                       help="pyramid-noise discount of the epsilon loss (default: the base's, from its training.json)")
        p.add_argument("--fill-weight", type=float, default=d.fill_weight,
                       help="loss weight on the latent cells of the shape's fill, shapes data only (default %(default)s: uniform)")
        p.add_argument("--targets", choices=TARGET_SETS, default=d.targets,
                       help="layers to adapt: all, or no-text (not the cross-attention's key/value, "
                            "which read the prompt) (default %(default)s)")
        p.add_argument("--scales", default=d.scales, metavar="LO:HI",
                       help="train at a random LoRA weight in LO..HI each step, so the style looks whole "
                            "at any weight in that range, e.g. 0.6:1.0 (default: 1.0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1; env LCMGRAPH_TRAIN_THREADS)")


def run_lora(args) -> int:
    from .common import cli_threads
    from .lora import LoraTrain, save_lora, train_lora

    base = args.base or _default_base()
    extra = {k: getattr(args, k) for k in ("w_min", "w_max", "ddim_steps", "target_ema", "pyramid_noise", "fill_weight", "targets", "oversample", "scales")
             if hasattr(args, k)}
    tc = LoraTrain(kind=args.kind, rank=args.rank, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                   data=args.data, style=args.style, pool=args.pool, resolution=args.resolution,
                   eval_every=args.eval_every, **extra)
    evaluate = _shapes_evaluator(base, args.kind) if args.eval_every else None
    pipe, step = train_lora(args.run, base, tc, minutes=args.minutes, device=args.device, evaluate=evaluate,
                            threads=cli_threads(args.threads), keep_every=args.keep_every)
    out = save_lora(pipe, args.out or args.run / "lora.safetensors")
    print(json.dumps({"lora": str(out), "step": step, "kind": args.kind}))
    return 0


def _shapes_evaluator(base: Path, kind: str):
    """Prompt accuracy on 40 fixed prompts (LCMScheduler 4 steps for an LCM-LoRA, Euler 10
    otherwise), read by the evaluator shipped beside the base; None if there is none."""
    from . import dataset
    from .evaluator import load_evaluator
    from .generate import prompt_accuracy, set_scheduler

    path = base.parent / f"{base.name}-evaluator.safetensors"
    if not path.exists():
        return None
    prompts = dataset.eval_prompts(40)
    judge = load_evaluator(path)

    def evaluate(pipe, step):
        judge.to(pipe.unet.device)
        set_scheduler(pipe, "lcm" if kind == "lcm" else "euler")
        res = prompt_accuracy(pipe, judge, prompts, steps=4 if kind == "lcm" else 10, batch=40)
        return {f"eval_{k}": round(v, 3) for k, v in res.items() if k != "images"}

    return evaluate


def main(argv=None) -> int:
    """``python -m lcmgraph_nodes.diffusion.train.lora_cli train-lcm-lora ...``: the same
    commands without the ``lcmgraph`` front end (an uninstalled source tree)."""
    parser = argparse.ArgumentParser(prog="python -m lcmgraph_nodes.diffusion.train.lora_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_lora_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
