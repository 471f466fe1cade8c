"""The CPU path, against plain diffusers in the same run (issue #18).

Builds (once, in --work) a full-size SD1.5-shaped single-file checkpoint with
random weights and real shapes (bench/load_rss.py's builder, fp32, ~4 GiB),
then in a fresh process per mode measures: process start -> first 256x256
image (4 LCM steps, guidance 1), three more (warm: their median), then one 512x512
image, and peak RSS over all five (the issue's goal holds "through a 512²
image": activations at 512² are four times 256²'s):

- lcmgraph with ``--dtype fp32`` and with ``bf16`` (what ``auto`` picks on a
  CPU with native bf16), through a workflow as `lcmgraph run` would;
- diffusers fp32: ``StableDiffusionPipeline.from_single_file`` (with the local
  config folder, offline) + LCMScheduler, the plain-script baseline.

Prints one JSON line per mode and the ratios. Not a test: numbers go in the README.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
mode, path, config, work, warm_count = sys.argv[1:6]
import torch
def images(run):
    run(1, 256); first = time.perf_counter() - t0
    warm = []
    for seed in range(2, 2 + int(warm_count)):  # one warm image varies by 20% on a 2-core machine: a median
        t = time.perf_counter(); run(seed, 256); warm.append(time.perf_counter() - t)
    t = time.perf_counter(); run(1000, 512); big = time.perf_counter() - t
    return first, sorted(warm)[len(warm) // 2], big
if mode == "diffusers":
    from diffusers import LCMScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_single_file(path, config=config, local_files_only=True,
                                                    torch_dtype=torch.float32, safety_checker=None)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    first, warm, big = images(lambda seed, size: pipe(
        "a red circle", num_inference_steps=4, guidance_scale=1.0, height=size, width=size,
        generator=torch.Generator().manual_seed(seed)))
else:
    from lcmgraph import Engine, EngineConfig
    from lcmgraph.allocator import tune_malloc
    dtype, *switches = mode.split(":")  # "bf16:channels_last=off": a dtype, then engine options
    options = {"dtype": dtype, **dict(s.split("=", 1) for s in switches)}
    mib = options.pop("malloc_mib", None)  # an experiment: another compute threshold than the CLIs'
    if mib is None:
        tune_malloc()  # as `lcmgraph run` / `serve` do at start
    elif int(mib):
        tune_malloc(int(mib) << 20)  # malloc_mib=0: glibc's own settings
    engine = Engine(EngineConfig(models_dir=work + "/models", device="cpu", options=options,
                                 home=work + "/home", output_dir=work + "/out"))
    def doc(seed, size):
        link = lambda n, o: {"link": [n, o]}
        return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
            "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "sd15.safetensors"}},
            "pos": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": "a red circle"}},
            "lat": {"type": "EmptyLatent", "inputs": {"width": size, "height": size}},
            "s": {"type": "LCMSampler", "inputs": {"model": link("ckpt", "model"), "positive": link("pos", "conditioning"),
                                                   "latent": link("lat", "latent"), "seed": seed, "steps": 4,
                                                   "guidance": 1.0}},
            "d": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("s", "latent")}},
            "save": {"type": "SaveImage", "inputs": {"image": link("d", "image")}}}}
    first, warm, big = images(lambda seed, size: engine.run(doc(seed, size)))
peak = int([line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]) * 1024
print(json.dumps({"mode": mode, "first_image_s": round(first, 2), "warm_s": round(warm, 2),
                  "image_512_s": round(big, 2), "peak_rss": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lcmgraph-bench-cpu"))
    parser.add_argument("--modes", default="fp32,bf16,diffusers",
                        help="comma-separated: diffusers, or an lcmgraph dtype with engine options after colons "
                             "(bf16:channels_last=off)")
    parser.add_argument("--warm", type=int, default=3, help="warm 256² images per mode, their median reported")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the modes, interleaved, and report each mode's median (the machine drifts)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from load_rss import build

    source = args.work / "sd15"
    source.mkdir(parents=True, exist_ok=True)
    files = sorted(source.glob("*.safetensors"))
    path, config = (files[0], source / "config") if files else build(source, "sd15", 320, torch.float32)
    link = args.work / "models" / "checkpoints" / "sd15.safetensors"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.hardlink_to(path)  # inside the checkpoints folder (a symlink out of it is refused)
    size = path.stat().st_size
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # in the page cache for everyone
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for mode in args.modes.split(","):
            done = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(config), str(args.work),
                                   str(args.warm)], capture_output=True, text=True, check=True)
            runs.setdefault(mode, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[mode][-1]))
    results = {mode: {key: sorted(r[key] for r in rs)[len(rs) // 2] for key in rs[0] if key != "mode"}
               for mode, rs in runs.items()}
    base = results.get("diffusers")
    for mode, r in results.items():
        line = f"{mode:10s} first image {r['first_image_s']:6.2f} s  warm {r['warm_s']:6.2f} s  " \
               f"512x512 {r['image_512_s']:6.2f} s  peak RSS {r['peak_rss'] / size:.2f}x the file"
        if base and mode != "diffusers":
            line += (f"  (vs diffusers fp32: first {r['first_image_s'] / base['first_image_s']:.2f}x, "
                     f"warm {r['warm_s'] / base['warm_s']:.2f}x, 512x512 {r['image_512_s'] / base['image_512_s']:.2f}x)")
        print(line)


if __name__ == "__main__":
    main()
