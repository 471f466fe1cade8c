"""Does bfloat16 change what the embedded model draws? lcmgraph's own CPU path
(the engine, its model manager and dtype options), fp32 against bf16, on the
prompts and evaluator of bench/quality.py.

Each row is a workflow (LoadCheckpoint builtin:tiny-shapes [+ LoRAs] ->
TextEncode -> Sampler/LCMSampler -> VAEDecode) run once per prompt, prompt i
with seed i, 128x128, as bench/quality.py does with plain diffusers; each
dtype mode is a fresh Engine with that mode's options:

- ``fp32``: ``dtype=float32`` (bitwise diffusers' fp32, so its rows reproduce
  bench/quality.py's table);
- ``bf16``: ``dtype=bfloat16`` — what ``--dtype auto`` picks on a CPU with
  native bf16: UNet and VAE in bf16, the text encoders in fp32 (their
  ``text_dtype`` auto);
- ``bf16-all``: text encoders in bf16 too (``text_dtype=model``);
- ``bf16+vae32``: bf16 with the VAE kept in fp32 (``vae_dtype=float32``);
- ``bf16-nchw``: bf16 with the UNet and VAE in the default (NCHW) memory format
  (``channels_last=off``; auto turns it on for bf16 on the CPU).

Prints per-attribute accuracy and s/image per row and mode, then each bf16
mode's largest |difference| from fp32 over the accuracy columns and its
speed ratio. Speed only means something where the CPU has native bf16
(models/cpu.py; bf16 is emulated, slow, elsewhere).

    .venv/bin/python bench/quality_dtype.py [--prompts 64] [--threads 1] [--only lcm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "nodes" / "diffusion" / "builtin"
EVALUATOR = BUILTIN / "tiny-shapes-evaluator.safetensors"
STYLE_JUDGE = BUILTIN / "tiny-shapes-style-judge.safetensors"

#: (label, sampler, steps, cfg, {lora: weight})
ROWS = [
    ("base, euler 25, CFG 3", "euler", 25, 3.0, {}),
    ("base, lcm 4", "lcm", 4, 1.0, {}),
    ("LCM-LoRA, lcm 2", "lcm", 2, 1.0, {"builtin:tiny-shapes-lcm-lora": 1.0}),
    ("LCM-LoRA, lcm 4", "lcm", 4, 1.0, {"builtin:tiny-shapes-lcm-lora": 1.0}),
    ("LCM-LoRA + outline 0.8, lcm 4", "lcm", 4, 1.0,
     {"builtin:tiny-shapes-lcm-lora": 1.0, "builtin:tiny-shapes-outline-lora": 0.8}),
]
MODES = {
    "fp32": {"dtype": "float32"},
    "bf16": {"dtype": "bfloat16"},
    "bf16-all": {"dtype": "bfloat16", "text_dtype": "model"},
    "bf16+vae32": {"dtype": "bfloat16", "vae_dtype": "float32"},
    "bf16-nchw": {"dtype": "bfloat16", "channels_last": "off"},
}
COLUMNS = ("colour_shape", "colour", "shape", "background", "position", "size")


def workflow(prompt: str, seed: int, sampler: str, steps: int, cfg: float, loras: dict) -> dict:
    nodes: dict = {"ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}}}
    model = {"link": ["ckpt", "model"]}
    for i, (name, weight) in enumerate(loras.items()):
        nodes[f"lora{i}"] = {"type": "ApplyLoRA", "inputs": {"model": model, "lora": name, "weight": weight}}
        model = {"link": [f"lora{i}", "model"]}
    nodes["text"] = {"type": "TextEncode", "inputs": {"clip": {"link": ["ckpt", "clip"]}, "text": prompt}}
    nodes["latent"] = {"type": "EmptyLatent", "inputs": {"width": 128, "height": 128, "batch": 1}}
    nodes["sample"] = {"type": "Sampler", "inputs": {
        "model": model, "positive": {"link": ["text", "conditioning"]}, "latent": {"link": ["latent", "latent"]},
        "seed": seed, "scheduler": sampler, "steps": steps, "cfg": cfg}}
    nodes["decode"] = {"type": "VAEDecode", "inputs": {"vae": {"link": ["ckpt", "vae"]},
                                                       "latent": {"link": ["sample", "latent"]}}}
    nodes["show"] = {"type": "PreviewImage", "inputs": {"image": {"link": ["decode", "image"]}}}
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}


def run_row(engine, prompts, row) -> dict:
    import torch

    _, sampler, steps, cfg, loras = row
    engine.run(workflow("warm up", 0, sampler, steps, cfg, loras), outputs=["show"])  # loads and patches once
    images, start = [], time.perf_counter()
    for i, (text, _) in enumerate(prompts):
        result = engine.run(workflow(text, i, sampler, steps, cfg, loras), outputs=["show"])
        images.append(result.values["decode"]["image"].permute(0, 3, 1, 2).float() * 2 - 1)
    seconds = (time.perf_counter() - start) / len(prompts)
    return {"images": torch.cat(images), "seconds": seconds}


def main(argv=None) -> int:
    import torch
    from diffusers.utils import logging as dlog
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import (
        accuracy,
        load_evaluator,
        load_style_judge,
        predict,
        style_score,
    )

    from lcmgraph import Engine, EngineConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="run only rows whose label contains this")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, from " + ", ".join(MODES))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dlog.disable_progress_bar()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = [r for r in ROWS if not args.only or args.only in r[0]]
    prompts = dataset.eval_prompts(args.prompts)
    judge, style_judge = load_evaluator(EVALUATOR), load_style_judge(STYLE_JUDGE)
    root = Path(tempfile.mkdtemp(prefix="lcmgraph-quality-dtype-"))
    print(f"{args.prompts} prompts, seeds 0..{args.prompts - 1}, 128x128, torch threads {args.threads}, "
          f"lcmgraph engine on cpu")
    print(f"{'run':<32}{'mode':<12}{'colour+shape':>13}{'colour':>8}{'shape':>7}{'bg':>6}{'pos':>6}{'size':>6}"
          f"{'style':>7}{'s/image':>9}")
    results: dict = {}
    for mode in modes:
        engine = Engine(EngineConfig(models_dir=root / "models", home=root / "home", output_dir=root / "out",
                                     device="cpu", plugins_from_env=False, options=dict(MODES[mode])))
        for row in rows:
            out = run_row(engine, prompts, row)
            acc = accuracy(predict(judge, out["images"]), [s for _, s in prompts])
            acc["style"] = float(style_score(style_judge, out["images"]).mean())
            results[(row[0], mode)] = {**acc, "seconds": out["seconds"], "images": out["images"]}
            print(f"{row[0]:<32}{mode:<12}{acc['colour_shape']:>13.3f}{acc['colour']:>8.3f}{acc['shape']:>7.3f}"
                  f"{acc['background']:>6.3f}{acc['position']:>6.3f}{acc['size']:>6.3f}{acc['style']:>7.3f}"
                  f"{out['seconds']:>9.4f}", flush=True)
    if "fp32" in modes:
        print("\nagainst fp32: largest |difference| over the accuracy columns (and the style judge), "
              "mean / max |difference| of the pixels (0..1), speed ratio")
        for mode in (m for m in modes if m != "fp32"):
            for row in rows:
                a, b = results[(row[0], "fp32")], results[(row[0], mode)]
                delta = max(abs(a[c] - b[c]) for c in (*COLUMNS, "style"))
                pixels = (a["images"] - b["images"]).abs() / 2
                print(f"{row[0]:<32}{mode:<12} max |d| {delta:.3f}   pixels {float(pixels.mean()):.4f} / "
                      f"{float(pixels.max()):.3f}   time {b['seconds'] / a['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
