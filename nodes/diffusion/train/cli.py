"""``lcmgraph train STAGE --run DIR``: the training stages, each resumable.

``all`` runs vae -> latents -> evaluator -> unet -> export, each continuing
from its checkpoint in ``--run`` (a finished stage is skipped). Interrupt at
any time; the same command resumes. ``--minutes`` bounds the vae / unet
stages of one invocation (they checkpoint and return when it passes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_RUN = Path("train-runs/tiny-shapes")


def builtin_dir() -> Path:
    """nodes/diffusion/builtin: where the shipped weights live (installed or source tree)."""
    return Path(__file__).resolve().parents[1] / "builtin"


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train the embedded tiny-shapes model (resumable)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    p.set_defaults(handler=run_train)
    return p


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=["seed", "vae", "latents", "evaluator", "unet", "decoder", "export", "style-judge",
                                     "install-decoder", "all"],
                   help="seed: start --run from the shipped VAE and evaluator (then `train unet` retrains the "
                        "UNet from scratch); style-judge: the plain / outline classifier bench/quality.py scores "
                        "style LoRAs with, written beside the export as NAME-style-judge.safetensors; "
                        "install-decoder: put --run's fine-tuned decoder (train decoder) into the exported folder "
                        "--out (its encoder must be the run's); "
                        "all: vae -> latents -> evaluator -> unet -> decoder -> export")
    p.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run folder: checkpoints and logs (default %(default)s)")
    p.add_argument("--vae-steps", type=int, default=None, help="VAE steps target (default: 2400)")
    p.add_argument("--unet-steps", type=int, default=None, help="UNet steps target, the lr schedule's length (default: 20000)")
    p.add_argument("--decoder-steps", type=int, default=None,
                   help="decoder fine-tune steps target (default: 3000; encoder frozen, latents stay valid)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock bound for each of the vae / unet stages")
    p.add_argument("--latents", type=int, default=4096, help="data set items to encode (default %(default)s)")
    p.add_argument("--outline", type=float, default=0.5,
                   help="evaluator / decoder: fraction of the data drawn in the outline style (a judge that reads "
                        "colour and shape under the style; a decoder that draws it; a resumed run keeps its own) "
                        "(default %(default)s, as shipped)")
    p.add_argument("--workers", type=int, default=1,
                   help="latents: processes drawing the data set's images (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=500, help="UNet steps between prompt-accuracy checks (0: none)")
    p.add_argument("--offset-noise", type=float, default=0.3,
                   help="UNet training: per-channel constant noise added to epsilon (default %(default)s)")
    p.add_argument("--pyramid-noise", type=float, default=None,
                   help="UNet training: multi-resolution noise with this per-level discount instead of white + "
                        "offset noise (0: off; 0.8: the shipped model's; default: a resumed run's own, else the "
                        "--init-from export's, else 0)")
    p.add_argument("--snr-floor", type=float, default=0.1,
                   help="UNet training: weigh high-t losses as if SNR were at least this (0: off; default %(default)s)")
    p.add_argument("--text-lr-scale", type=float, default=1.0,
                   help="UNet training: the text encoder's learning rate as a fraction of the UNet's "
                        "(0: frozen; the shipped model: 0 from scratch, then 0.1 in its fine-tune; default %(default)s)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="UNet training, new run: start from an exported model folder's UNet and text encoder "
                        "(fine-tune an export; needs the same architecture) instead of random weights")
    p.add_argument("--batch", type=int, default=None, help="UNet training: batch size (default 32; a new run only)")
    p.add_argument("--lr", type=float, default=None,
                   help="UNet training: peak learning rate (default 1e-3; a new run only)")
    p.add_argument("--out", type=Path, default=None, help="export / install-decoder / style-judge: the model folder (default: the shipped "
                        "nodes/diffusion/builtin/tiny-shapes); evaluator: given, the evaluator is also written "
                        "beside it as NAME-evaluator.safetensors")
    p.add_argument("--no-ema", action="store_true", help="export the live weights instead of the EMA")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1; env LCMGRAPH_TRAIN_THREADS)")


def run_train(args) -> int:
    from .common import cli_threads

    args = argparse.Namespace(**{**vars(args), "threads": cli_threads(args.threads)})  # the caller's stays as given
    stages = ["vae", "latents", "evaluator", "unet", "decoder", "export"] if args.stage == "all" else [args.stage]
    vae = None
    for stage in stages:
        print(f"== {stage}", flush=True)
        if stage == "seed":
            from .seed import seed_from_shipped

            print(json.dumps({"seeded": str(seed_from_shipped(args.run, builtin_dir()))}))
        elif stage == "vae":
            vae = _vae(args)
        elif stage == "latents":
            _latents(args, vae or _vae(args, train=False))
        elif stage == "evaluator":
            from .evaluator import EvalTrain, train_evaluator

            net = train_evaluator(args.run, tc=EvalTrain(outline=args.outline), device=args.device, threads=args.threads)
            if args.out is not None and args.stage == "evaluator":  # trained beside the UNet's run: into its export
                from .evaluator import save_evaluator

                path = save_evaluator(net, args.out.parent / f"{args.out.name}-evaluator.safetensors")
                print(json.dumps({"evaluator": str(path)}))
        elif stage == "unet":
            _unet(args, vae or _vae(args, train=False))
        elif stage == "decoder":
            from .vae import DecoderTrain, train_decoder

            tc = DecoderTrain(**({"steps": args.decoder_steps} if args.decoder_steps else {}), outline=args.outline)
            train_decoder(args.run, tc=tc, minutes=args.minutes, device=args.device, threads=args.threads)
        elif stage == "export":
            _export(args)
        elif stage == "style-judge":
            _style_judge(args)
        elif stage == "install-decoder":
            from .export import install_decoder

            target = install_decoder(args.run, args.out or builtin_dir() / "tiny-shapes")
            print(json.dumps({"decoder_installed": str(target)}))
    return 0


def _vae(args, train: bool = True):
    from . import vae as V

    tc = V.VaeTrain(**({"steps": args.vae_steps} if args.vae_steps else {}))
    if not train:
        tc.steps = 0  # load only
    return V.train_vae(args.run, tc=tc, minutes=args.minutes if train else None, device=args.device,
                       quiet=False, threads=args.threads).to("cpu")


def _latents(args, vae):
    from .common import setup_torch
    from .unet import cache_latents

    vae.to(setup_torch(args.threads, args.device))
    try:
        return cache_latents(args.run, vae, count=args.latents, workers=args.workers)
    finally:
        vae.to("cpu")


def _unet(args, vae):
    from . import dataset
    from .common import load_state
    from .evaluator import _net
    from .generate import make_pipeline, prompt_accuracy
    from .unet import UnetTrain, train_unet

    latents, scale = _latents(args, vae)
    evaluate = None
    state = load_state(args.run / "evaluator.pt")
    if state is not None and args.eval_every:
        judge = _net()
        judge.load_state_dict(state["model"])
        judge.eval()
        vae.register_to_config(scaling_factor=scale)
        prompts = dataset.eval_prompts(40)

        def evaluate(models, step):
            pipe = make_pipeline(models.ema_unet, vae.to(models.unet.device), models.ema_text, models.tokenizer, "euler")
            pipe.set_progress_bar_config(disable=True)
            res = prompt_accuracy(pipe, judge.to(models.unet.device), prompts, steps=10, batch=40)
            return {f"eval10_{k}": round(v, 3) for k, v in res.items() if k != "images"}

    given = {k: v for k, v in (("steps", args.unet_steps), ("batch", args.batch), ("lr", args.lr)) if v}
    if args.init_from:
        given["init_from"] = str(args.init_from)
    _refuse_new_run_options(args.run, given)
    tc = UnetTrain(**given, eval_every=args.eval_every,
                   offset_noise=args.offset_noise, snr_floor=args.snr_floor, text_lr_scale=args.text_lr_scale,
                   pyramid_noise=args.pyramid_noise)  # None: keep a resumed run's
    return train_unet(args.run, latents, scale, tc=tc, minutes=args.minutes, device=args.device, evaluate=evaluate,
                      threads=args.threads)


def _refuse_new_run_options(run: Path, given: dict) -> None:
    """--init-from / --batch / --lr shape a new run; on a run folder with a checkpoint its stored
    recipe wins, so a different value would be silently ignored: say so instead."""
    from .common import load_state

    new_only = {k: v for k, v in given.items() if k in ("init_from", "batch", "lr")}
    if not new_only or not (Path(run) / "unet.pt").is_file():
        return
    stored = load_state(Path(run) / "unet.pt")["train"]
    differ = [f"--{k.replace('_', '-')} {v} (the run has {stored.get(k)!r})" for k, v in new_only.items()
              if stored.get(k) != v]
    if differ:
        raise SystemExit(f"{run}/unet.pt exists and resumes with its own recipe; " + ", ".join(differ)
                         + " would be ignored: use a new --run folder")


def _export(args):
    from .common import load_state
    from .evaluator import _net, save_evaluator
    from .export import export

    target = export(args.run, args.out or builtin_dir() / "tiny-shapes", ema=not args.no_ema)
    state = load_state(args.run / "evaluator.pt")
    if state is not None:
        judge = _net()
        judge.load_state_dict(state["model"])
        save_evaluator(judge, target.parent / f"{target.name}-evaluator.safetensors")
    print(json.dumps({"exported": str(target)}))


def _style_judge(args):
    from .evaluator import STYLE_HEADS, save_evaluator, train_style_judge

    target = args.out or builtin_dir() / "tiny-shapes"
    judge = train_style_judge(args.run, device=args.device, threads=args.threads)
    path = save_evaluator(judge, target.parent / f"{target.name}-style-judge.safetensors", STYLE_HEADS)
    print(json.dumps({"style_judge": str(path)}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lcmgraph_nodes.diffusion.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    return run_train(parser.parse_args(argv))
