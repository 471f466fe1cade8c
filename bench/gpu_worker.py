"""The measuring side of bench/gpu.py: one phase, run in its own process (or
in-process in --tiny mode), printing one JSON line per measurement.

Engine phases time the engine as the server runs it: one Engine object,
reused, each image a new workflow run with a new seed (and, for the headline
figure, a new prompt: prompt -> image, text encoding included, as the
diffusers baselines do on every call). An image counts as done when it is a
PIL image on the host, as with the baselines' ``output_type="pil"``.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Emit = Callable[[dict], None]


def ensure_importable() -> None:
    """lcmgraph from the source tree; ``lcmgraph_nodes`` is ``nodes/`` when not installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import lcmgraph_nodes  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "lcmgraph_nodes", ROOT / "nodes" / "__init__.py", submodule_search_locations=[str(ROOT / "nodes")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["lcmgraph_nodes"] = module
        spec.loader.exec_module(module)


def quiet() -> None:
    """No library progress bars or notices in the benchmark's output."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers"):
        module = __import__(name)
        module.utils.logging.disable_progress_bar()
        module.utils.logging.set_verbosity_error()


def make_engine(work: Path, device: str, options: dict):
    ensure_importable()
    quiet()
    from lcmgraph import Engine, EngineConfig
    from lcmgraph.registry import NodeRegistry

    config = EngineConfig(device=device, models_dir=work / "models", home=work / "home",
                          output_dir=work / "out", plugins_from_env=False, options=dict(options),
                          plugin_dirs=[ROOT / "bench" / "packs"])
    engine = Engine(config)
    if "LoadCheckpoint" not in engine.registry.names():  # not installed: no entry points
        from lcmgraph_nodes import core, diffusion

        from lcmgraph import plugins

        registry = NodeRegistry()
        plugins.register_module(registry, "core", core, "source tree")
        plugins.register_module(registry, "diffusion", diffusion, "source tree")
        plugins.load_directory_packs(registry, ROOT / "bench" / "packs")
        engine = Engine(config, registry=registry)
    return engine


def workflow(arch: str, size: int, seed: int, prompt: str, lora: bool, batch: int = 1, steps: int = 4) -> dict:
    def link(node, output):
        return {"link": [node, output]}

    nodes = {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": arch}},
        "pos": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": prompt}},
        "empty": {"type": "EmptyLatent", "inputs": {"width": size, "height": size, "batch": batch}},
        "sampler": {"type": "LCMSampler", "inputs": {
            "model": link("lora" if lora else "ckpt", "model"), "positive": link("pos", "conditioning"),
            "latent": link("empty", "latent"), "seed": seed, "steps": steps, "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "out": {"type": "BenchImage", "inputs": {"image": link("decode", "image")}},
    }
    if lora:  # an LCM-LoRA patches the UNet only: the prompt goes through the base CLIP
        nodes["lora"] = {"type": "ApplyLoRA", "inputs": {
            "model": link("ckpt", "model"), "lora": f"lcm-lora-{arch}.safetensors", "weight": 1.0}}
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes, "outputs": ["out"]}


def _ref(engine, arch: str):
    """A MODEL handle of checkpoint ``arch``, as LoadCheckpoint makes it (to load it alone)."""
    from lcmgraph_nodes.diffusion.models.values import ModelRef

    path = engine.files.resolve("checkpoints", arch)
    return ModelRef(str(path), engine.files.identity("checkpoints", arch), "")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _pil(images):
    import numpy as np
    from PIL import Image

    arrays = (images.numpy() * 255).round().astype(np.uint8)
    return arrays, [Image.fromarray(a) for a in arrays]


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, 10 * np.log10(255.0**2 / mse))


class EngineBench:
    """One engine under test, with the bookkeeping each measurement needs."""

    def __init__(self, spec: dict, options: dict):
        self.spec, self.device = spec, spec["device"]
        self.arch, self.size, self.lora = spec["arch"], spec["size"], spec.get("lora", True)
        self.engine = make_engine(Path(spec["work"]), self.device, options)
        self.counter = 0

    def run(self, seed: int, prompt: str, batch: int = 1):
        from lcmgraph import NodeFailed

        doc = workflow(self.arch, self.size, seed, prompt, self.lora, batch, self.spec.get("steps", 4))
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            result = self.engine.run(doc)
        except NodeFailed as exc:
            raise RuntimeError(f"{exc}\n{exc.traceback}") from exc
        arrays, _ = _pil(result.values["decode"]["image"])
        _sync(self.device)
        return time.perf_counter() - t0, arrays

    def timed(self, n: int, new_prompt: bool) -> list[float]:
        times = []
        for _ in range(n):
            self.counter += 1
            prompt = f"a photo number {self.counter}" if new_prompt else "a photo"
            times.append(self.run(1000 + self.counter, prompt)[0])
        return times

    def batch(self, n: int, reps: int) -> dict:
        """n images as one run_batch of n jobs (the server's batching), else one latent batch of n."""
        manager = self.engine.service("diffusion.models")
        out = {}
        if hasattr(self.engine, "run_batch"):
            from lcmgraph import RunRequest

            def one_batch():
                self.counter += 1
                docs = [workflow(self.arch, self.size, 5000 + self.counter * n + i, f"batch photo {self.counter} {i}",
                                 self.lora, 1, self.spec.get("steps", 4)) for i in range(n)]
                _sync(self.device)
                t0 = time.perf_counter()
                outcomes = self.engine.run_batch([RunRequest(d) for d in docs])
                for o in outcomes:
                    if isinstance(o, Exception):
                        raise o
                    _pil(o.values["decode"]["image"])
                _sync(self.device)
                return time.perf_counter() - t0

            one_batch()
            before = sum(m["denoise_runs"] for m in manager.fast_path_stats()["models"].values())
            times = [one_batch() for _ in range(reps)]
            after = sum(m["denoise_runs"] for m in manager.fast_path_stats()["models"].values())
            out["run_batch"] = {"median_s": _r(statistics.median(times)),
                                "per_image_s": _r(statistics.median(times) / n),
                                "sampler_calls_per_batch": (after - before) / reps}
        self.run(7, "latent batch warm-up", batch=n)
        times = [self.run(8 + i, "latent batch", batch=n)[0] for i in range(reps)]
        out["latent_batch"] = {"median_s": _r(statistics.median(times)),
                               "per_image_s": _r(statistics.median(times) / n)}
        return out

    def stats(self) -> dict:
        return self.engine.service("diffusion.models").fast_path_stats()

    def close(self) -> None:
        del self.engine
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _r(x: float) -> float:
    return round(float(x), 4)


def _peak_gb(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


PSNR_SEEDS = (101, 102, 103)
#: Reported for identical images (JSON has no infinity).
PSNR_IDENTICAL = 100.0


def _refs(work: Path, name: str) -> Path:
    return work / "refs" / name


def run_engine(spec: dict, emit: Emit) -> None:
    """One engine phase; spec keys: phase, work, device, arch, size, options, images, launched_at,
    save_refs / refs (PSNR), batch, unfused (also time peft's unfused LoRA), steps."""
    phase, device, work = spec["phase"], spec["device"], Path(spec["work"])
    base = {"phase": phase, "arch": spec["arch"], "size": spec["size"]}
    _reset_peak(device)
    bench = EngineBench(spec, spec.get("options", {}))
    ready_s = time.time() - spec["launched_at"]

    # First image of this process: model load, LoRA load (+ fusion), compilation if any.
    t0 = time.perf_counter()
    bench.engine.service("diffusion.models").checkpoint(_ref(bench.engine, spec["arch"]))
    load_s = time.perf_counter() - t0
    first_s, _ = bench.run(1, "a first photo")
    emit({**base, "what": "engine_first_image", "process_ready_s": _r(ready_s), "load_s": _r(load_s),
          "first_image_s": _r(first_s), "ttfi_s": _r(time.time() - spec["launched_at"])})
    if spec.get("batch_only"):
        bench.timed(1, new_prompt=True)
    else:
        bench.timed(2, new_prompt=True)  # warm-up (and, with compile_after=1, compilation)
        n = spec.get("images", 7)
        times = bench.timed(n, new_prompt=True)
        emit({**base, "what": "engine_per_image", "prompt": "new", "n": n, "median_s": _r(statistics.median(times)),
              "best_s": _r(min(times))})
        times = bench.timed(n, new_prompt=False)
        emit({**base, "what": "engine_per_image", "prompt": "same", "n": n,
              "median_s": _r(statistics.median(times)), "best_s": _r(min(times))})
        emit({**base, "what": "engine_vram", **_peak_gb(device),
              "offload": bool(spec.get("options", {}).get("offload"))})
        _psnr(bench, spec, base, work, emit)
    if spec.get("batch"):
        n = int(spec["batch"])
        results = bench.batch(n, reps=spec.get("batch_reps", 3))
        for mode, values in results.items():
            emit({**base, "what": "engine_batch", "mode": mode, "batch": n, **values})
        emit({**base, "what": "engine_vram", "after": "batch", **_peak_gb(device)})
    if spec.get("options", {}).get("compile") not in (None, "off"):
        manager = bench.engine.service("diffusion.models")
        manager.save_compile_cache()
        cache = Path(manager.fast.compile_cache or "")
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0
        emit({**base, "what": "compile_cache", "dir": str(cache), "mb": round(size / 1e6, 1)})
    emit({**base, "what": "engine_stats", **bench.stats()})
    bench.close()
    if spec.get("unfused"):
        _unfused(spec, base, work, emit)


def _psnr(bench: EngineBench, spec: dict, base: dict, work: Path, emit: Emit) -> None:
    import numpy as np

    images = [bench.run(seed, f"psnr check {seed}")[1] for seed in PSNR_SEEDS]
    if spec.get("save_refs"):
        folder = _refs(work, spec["save_refs"])
        folder.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(PSNR_SEEDS, images, strict=True):
            np.save(folder / f"{seed}.npy", image)
    finite = all(np.isfinite(i.astype(np.float64)).all() for i in images)
    for ref_name in spec.get("refs", []):
        folder = _refs(work, ref_name)
        if not folder.is_dir():
            continue
        values = [psnr(image, np.load(folder / f"{seed}.npy")) for seed, image in zip(PSNR_SEEDS, images, strict=True)]
        emit({**base, "what": "engine_psnr", "vs": ref_name, "psnr_db_min": _r(min(values)),
              "psnr_db_mean": _r(statistics.mean(values)), "images_finite": finite,
              "mean_pixel": _r(float(np.mean(images[0])))})


def _unfused(spec: dict, base: dict, work: Path, emit: Emit) -> None:
    """peft's unfused adapters in the same engine code (fuse_lora off): what fusion buys."""
    options = {**spec.get("options", {}), "fuse_lora": "off"}
    bench = EngineBench(spec, options)
    bench.run(1, "unfused warm-up")
    bench.timed(1, new_prompt=True)
    n = spec.get("images", 7)
    times = bench.timed(n, new_prompt=True)
    emit({**base, "what": "engine_per_image", "prompt": "new", "lora": "unfused", "n": n,
          "median_s": _r(statistics.median(times)), "best_s": _r(min(times))})
    _psnr(bench, {**spec, "save_refs": f"{spec['arch']}-unfused", "refs": [spec.get("save_refs") or ""]},
          {**base, "lora": "unfused"}, work, emit)
    bench.close()


def run_build(spec: dict, emit: Emit) -> None:
    ensure_importable()
    quiet()
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_models import build

    line = build(Path(spec["work"]) / "models", spec["arch"], spec["tiny"], spec["device"],
                 "float32" if spec["tiny"] else "float16")
    line.update(phase=spec["phase"], torch=torch.__version__)
    emit(line)
    if spec["device"].startswith("cuda"):
        torch.cuda.empty_cache()


def run_sd15_ceiling(spec: dict, emit: Emit) -> None:
    """diffusers_ceiling.py's tricks on SD1.5 512² (that script is SDXL only): eager, then
    fused QKV + channels_last + UNet compile(reduce-overhead) + compiled VAE decode."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    import diffusers_baseline as g
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    torch.set_default_device("cuda")
    unet, vae, te = g.sd15_unet(), g.vae(0.18215), CLIPTextModel(g.clip_l())
    torch.set_default_device("cpu")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=g.tokenizer(), unet=unet,
                                   scheduler=g.sched(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).to("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)

    def run():
        return pipe("a photo", num_inference_steps=4, guidance_scale=1.0, height=512, width=512,
                    generator=torch.Generator("cpu").manual_seed(0)).images

    def med(reps=7):
        ts = []
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        return _r(sorted(ts)[reps // 2])

    out = {}
    with torch.inference_mode():
        run()
        run()
        out["eager_s"] = med()
        pipe.fuse_qkv_projections()
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
        t0 = time.time()
        run()
        run()
        run()
        out["compile_s"] = round(time.time() - t0, 1)
        out["all_tricks_s"] = med()
    emit({"phase": spec["phase"], "what": "sd15_ceiling", **out, "device": torch.cuda.get_device_name(0)})


WORKERS = {"engine": run_engine, "build": run_build, "sd15_ceiling": run_sd15_ceiling}


def main(argv: list[str]) -> int:
    kind, spec = argv[0], json.loads(argv[1])
    if not spec["device"].startswith("cuda"):
        import torch

        torch.set_num_threads(spec.get("threads", 1))

    def emit(line: dict) -> None:
        print(json.dumps(line), flush=True)

    WORKERS[kind](spec, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
