"""Batching throughput: N txt2img jobs (different prompts and seeds) run one
after another with ``Engine.run`` vs together with ``Engine.run_batch``, on
the same engine and models, measured in the same run.

Prints images per second of both, their ratio, and how far each batched
image is from its single run (max abs pixel difference). Not a test. On the
CPU expect a ratio near 1 (the point is a GPU that one image leaves idle):

    python bench/batching.py --device cuda --batch 4 --size 512 --checkpoint my-sd15
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lcmgraph import Engine, EngineConfig, RunRequest

PROMPTS = ["a large red circle on a blue background", "a small green square, top left",
           "a yellow triangle on black", "two blue circles", "a red square on white", "a purple ring",
           "an orange star", "a grey circle, bottom right"]


def job(checkpoint: str, size: int, steps: int, index: int) -> dict:
    link = lambda node, output: {"link": [node, output]}  # noqa: E731
    return {"format": "lcmgraph.workflow", "version": 1, "outputs": ["out"], "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": checkpoint}},
        "pos": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"),
                                                 "text": PROMPTS[index % len(PROMPTS)]}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": size, "height": size}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("ckpt", "model"),
                                                     "positive": link("pos", "conditioning"),
                                                     "latent": link("latent", "latent"), "seed": 100 + index,
                                                     "steps": steps, "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "out": {"type": "PreviewImage", "inputs": {"image": link("decode", "image")}},
    }}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default="builtin:tiny-shapes")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default=None, help="engine option dtype (default: the device's)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lcmgraph-bench-"))
    options = {"dtype": args.dtype} if args.dtype else {}
    engine = Engine(EngineConfig(device=args.device, home=home, models_dir=args.models_dir,
                                 output_dir=home / "out", plugins_from_env=False, options=options))
    docs = [job(args.checkpoint, args.size, args.steps, i) for i in range(args.batch)]

    def sequential():
        return [engine.run(d) for d in docs]

    def batched():
        return engine.run_batch([RunRequest(d) for d in docs])

    def sync():
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    engine.cache.memory.max_bytes = 0  # nothing from the cache: every round samples again
    sequential(), batched()  # warm up: load the model, first kernels
    times = {"sequential": [], "batched": []}
    results = {}
    for _ in range(args.rounds):
        for name, run in (("sequential", sequential), ("batched", batched)):
            sync()
            t0 = time.perf_counter()
            results[name] = run()
            sync()
            times[name].append(time.perf_counter() - t0)
    diff = max(float((a.values["decode"]["image"] - b.values["decode"]["image"]).abs().max())
               for a, b in zip(results["sequential"], results["batched"], strict=True))
    best = {name: min(values) for name, values in times.items()}
    rate = {name: args.batch / best[name] for name in best}
    print(json.dumps({"device": args.device, "checkpoint": args.checkpoint, "batch": args.batch,
                      "size": args.size, "steps": args.steps,
                      "images_per_s": {k: round(v, 3) for k, v in rate.items()},
                      "ratio_batched_vs_sequential": round(rate["batched"] / rate["sequential"], 3),
                      "max_pixel_diff": diff}))


if __name__ == "__main__":
    main()
