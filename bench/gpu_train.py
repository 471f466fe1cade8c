"""One device call that retrains the embedded model's set on a lent GPU (issue #21).

    run(command="bash bench/gpu_train.sh", carry=[".whl", ".gpu"], timeout_s=560)

The same `lcmgraph train ...` commands docs/embedded-model.md gives for a CPU,
sized to the time left: each phase measures its own speed first and sets its
step target (the cosine schedule's length) to what fits.

1. ``train seed`` + ``train latents --latents L`` (more data than the CPU run's 4,096).
2. Base fine-tune from ``--init`` (an exported model: the pyramid-noise base), two
   variants side by side on the one GPU: text encoder frozen / at 0.1x the UNet's rate;
   the one with the better in-training colour+shape (position >= 0.8) is exported.
3. LCM-LoRA and outline style LoRA on that export, side by side, snapshots kept.
4. ``bench/pick_lora.py`` picks each on held-out prompts; ``bench/quality.py`` rows.

Everything lands in ``--out`` as it is made (a run cut short still returns what it
finished): the export as a tar in <= 15 MB parts, the picked LoRAs, the logs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "lcmgraph_nodes.diffusion.train"]
LORA = [sys.executable, "-m", "lcmgraph_nodes.diffusion.train.lora_cli"]
T0 = time.time()


def left(budget: float) -> float:
    return budget - (time.time() - T0)


def say(**fields) -> None:
    print(json.dumps({"t": round(time.time() - T0, 1), **fields}), flush=True)


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    say(start=" ".join(str(c) for c in cmd))
    return subprocess.Popen([str(c) for c in cmd], stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        rc = p.wait()
        if rc:
            say(failed=" ".join(p.args), rc=rc)


def seconds_per_step(log: Path, first: int) -> float:
    """From a trainer's JSON-lines log: mean seconds per step after step ``first``."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
    later = [r for r in rows if r["step"] >= first]
    rows = later if len(later) >= 2 else rows
    return (rows[-1]["time"] - rows[0]["time"]) / max(1, rows[-1]["step"] - rows[0]["step"])


def last_eval(log: Path, prefix: str) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if prefix in line]
    return rows[-1] if rows else {}


def pack(out: Path, name: str, folder: Path, part: int = 15 << 20) -> None:
    """``folder`` as ``name.tar`` in parts of at most ``part`` bytes (the device tool's per-file limit)."""
    tmp = out.parent / f"{name}.tar"
    with tarfile.open(tmp, "w") as tar:
        tar.add(folder, arcname=folder.name)
    data = tmp.read_bytes()
    tmp.unlink()
    for i in range(0, len(data), part):
        (out / f"{name}.tar.{i // part}").write_bytes(data[i:i + part])


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    work = args.work
    try:
        return _phases(args)
    finally:  # a failed phase or a device timeout still returns what was logged
        logs = work / "logs"
        if logs.is_dir():
            for f in work.glob("*.txt"):
                shutil.copy(f, logs / f.name)
            for f in work.glob("*/*.log.jsonl"):
                shutil.copy(f, logs / f"{f.parent.name}-{f.name}")
            with tarfile.open(args.out / "logs.tar.gz", "w:gz") as tar:
                tar.add(logs, arcname="logs")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", type=Path, required=True, help="exported base to fine-tune (its unet/ and text_encoder/)")
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu-train"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget", type=float, default=500, help="seconds for everything")
    p.add_argument("--latents", type=int, default=12288)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--base-share", type=float, default=0.45, help="of the time left after the latents")
    p.add_argument("--probe", type=int, default=60)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1), help="processes drawing the data")
    p.add_argument("--variants", default="frozen:0,text01:0.1", help="name:text-lr-scale,...")
    return p


def _phases(args) -> int:
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True)
    judge = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes-style-judge.safetensors"
    dev = ["--device", args.device]

    # 1. data
    seed = work / "seed"
    wait(start([*TRAIN, "seed", "--run", seed], work / "seed.txt"))
    wait(start([*TRAIN, "latents", "--run", seed, "--latents", args.latents, "--workers", args.workers, *dev],
               work / "latents.txt"))
    say(latents=args.latents)

    # 2. base variants: probe the speed side by side, then the real runs
    variants = [(n, float(s)) for n, s in (v.split(":") for v in args.variants.split(","))]
    common = ["--init-from", args.init, "--pyramid-noise", 0.8, "--batch", args.batch, "--lr", args.lr, *dev]

    def base_run(name: str, scale: float, steps: int, eval_every: int, minutes: float | None, tag: str):
        run = work / f"{tag}-{name}"
        shutil.copytree(seed, run, ignore=shutil.ignore_patterns("*.log.jsonl"))
        extra = ["--minutes", round(minutes, 2)] if minutes else []
        return start([*TRAIN, "unet", "--run", run, "--unet-steps", steps, "--text-lr-scale", scale,
                      "--eval-every", eval_every, *common, *extra], work / f"{tag}-{name}.txt"), run

    probes = [base_run(n, s, args.probe, 0, None, "probe") for n, s in variants]
    wait(*(pr for pr, _ in probes))
    rate = max(seconds_per_step(run / "unet.log.jsonl", 20) for _, run in probes)
    base_s = args.base_share * left(args.budget)
    steps = max(200, int(base_s / rate * 0.85))  # the evals and saving take the rest
    say(base_seconds_per_step=round(rate, 4), base_steps=steps, base_budget_s=round(base_s))
    runs = [base_run(n, s, steps, max(100, steps // 5), base_s / 60, "base") for n, s in variants]
    wait(*(pr for pr, _ in runs))
    scored = []
    for (name, _), (_, run) in zip(variants, runs, strict=True):
        ev = last_eval(run / "unet.log.jsonl", "eval10_colour_shape")
        say(variant=name, **{k: v for k, v in ev.items() if k.startswith("eval10") or k == "step"})
        scored.append((ev.get("eval10_position", 0) >= 0.8, ev.get("eval10_colour_shape", 0), name, run))
    *_, name, run = max(scored, key=lambda s: s[:2])
    export = work / "tiny-shapes"
    wait(start([*TRAIN, "export", "--run", run, "--out", export], work / "export.txt"))
    (export / "gpu-variant.txt").write_text(name + "\n")
    pack(out, "export", export)
    say(picked_base=name)

    # 3. LoRAs side by side, sized by a probe of each
    def lcm(run: Path, steps: int, *extra):
        return start([*LORA, "train-lcm-lora", "--base", export, "--run", run, "--steps", steps, "--lr", 5e-4,
                      "--w-min", 1, "--w-max", 4, "--target-ema", 0.95, "--pool", 2048, "--batch", 32, *dev, *extra],
                     work / f"{run.name}.txt")

    def style(run: Path, steps: int, *extra):
        return start([*LORA, "train-lora", "--style", "outline", "--base", export, "--run", run, "--steps", steps,
                      "--rank", 8, "--lr", 1e-3, "--pool", 2048, "--batch", 32, *dev, *extra],
                     work / f"{run.name}.txt")

    wait(lcm(work / "probe-lcm", args.probe), style(work / "probe-style", args.probe))
    lora_s = max(30.0, left(args.budget) - 100)  # picking, the quality rows and packing
    lcm_rate = seconds_per_step(work / "probe-lcm" / "lora.log.jsonl", 20)
    style_rate = seconds_per_step(work / "probe-style" / "lora.log.jsonl", 20)
    lcm_steps = max(100, int(lora_s / lcm_rate * 0.85) // 100 * 100)
    style_steps = max(100, int(lora_s / style_rate * 0.85) // 100 * 100)
    say(lcm_seconds_per_step=round(lcm_rate, 4), lcm_steps=lcm_steps, style_seconds_per_step=round(style_rate, 4),
        style_steps=style_steps, lora_budget_s=round(lora_s))
    minutes = ["--minutes", round(lora_s / 60, 2)]
    lcm_run, style_run = work / "lcm", work / "style"
    for probe, run in ((work / "probe-lcm", lcm_run), (work / "probe-style", style_run)):
        run.mkdir()
        if (probe / "lora-latents.pt").exists():  # the same pool: drawn once
            shutil.copy(probe / "lora-latents.pt", run / "lora-latents.pt")
    wait(lcm(lcm_run, lcm_steps, "--keep-every", max(50, lcm_steps // 10), *minutes),
         style(style_run, style_steps, "--keep-every", max(50, style_steps // 8), *minutes))

    # 4. pick on held-out prompts, then the bench rows
    pick = [sys.executable, ROOT / "bench" / "pick_lora.py", "--base", export, "--style-judge", judge, *dev]
    lcm_best, style_best = out / "tiny-shapes-lcm-lora.safetensors", out / "tiny-shapes-outline-lora.safetensors"
    def candidates(run: Path) -> list[Path]:  # the snapshots and the final file (a run cut short has only that)
        return sorted(run.glob("lora-*.safetensors")) + [f for f in [run / "lora.safetensors"] if f.exists()]

    if candidates(lcm_run):
        wait(start([*pick, "--kind", "lcm", *candidates(lcm_run), "--copy-best", lcm_best], logs / "pick-lcm.txt"))
    if lcm_best.exists() and candidates(style_run):
        wait(start([*pick, "--kind", "style", "--lcm-lora", lcm_best, *candidates(style_run), "--copy-best", style_best],
                   logs / "pick-style.txt"))
    quality = [sys.executable, ROOT / "bench" / "quality.py", "--model", export, "--lcm-lora", lcm_best,
               "--style-lora", style_best, "--style-judge", judge, "--batch", 64, *dev]
    if left(args.budget) > 20:
        wait(start(quality, logs / "quality.txt"))
    say(done=True, left_s=round(left(args.budget)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
