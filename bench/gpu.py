"""The GPU benchmark of issue #8: the engine next to plain diffusers, same card, one run.

    python bench/gpu.py                    # on a CUDA machine (bench/gpu_run.sh on the device machine)
    python bench/gpu.py --tiny             # CPU, tiny models, seconds: the same code paths (a test runs it)
    python bench/gpu.py --only engine_sdxl_compiled,baseline_ceiling --budget 400

Builds random-weight models of the real SDXL and SD1.5 architectures and an
LCM-LoRA of the real shape (bench/gpu_models.py), saves them as a diffusers
folder + LoRA .safetensors, then runs *phases*, most important first, each in
its own process: the engine running workflows (bench/gpu_worker.py: warm
engine, new seed and prompt per image) and the diffusers baselines copied
from ../shared/bench (diffusers_lora_baseline.py: the LCM-LoRA blog path;
diffusers_ceiling.py: every standard trick; diffusers_baseline.py).

Output: one JSON line per measurement on stdout, and bench/results/<card>.json
(also under --out) rewritten after every line, with a ratio summary against
the issue's goals, so a run cut short still leaves what it measured. Phases
that would not fit in --budget seconds are skipped and listed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import gpu_worker  # noqa: E402

#: name, kind, spec, estimated seconds on an H100 (skip when the budget left is below it).
#: kind: "build" / "engine" / "sd15_ceiling" (gpu_worker), or "script:<file>" (a baseline).
PHASES = [
    ("build_sdxl", "build", {"arch": "sdxl"}, 50),
    ("engine_sdxl_eager", "engine", {"arch": "sdxl", "size": 1024, "options": {"compile": "off"},
                                     "save_refs": "sdxl"}, 45),
    ("engine_sdxl_compiled", "engine", {"arch": "sdxl", "size": 1024, "refs": ["sdxl"],
                                        "options": {"compile": "reduce-overhead", "compile_after": 0},
                                        "compile_cache": "compile-sdxl"}, 160),
    ("baseline_ceiling", "script:diffusers_ceiling.py", {}, 150),
    ("baseline_lora", "script:diffusers_lora_baseline.py", {}, 60),
    ("engine_sdxl_warm", "engine", {"arch": "sdxl", "size": 1024, "refs": ["sdxl"], "images": 3,
                                    "options": {"compile": "reduce-overhead", "compile_after": 0},
                                    "compile_cache": "compile-sdxl"}, 70),
    ("engine_sdxl_offload", "engine", {"arch": "sdxl", "size": 1024, "images": 3,
                                       "options": {"compile": "off", "offload": True}}, 45),
    ("engine_sdxl_extras", "engine", {"arch": "sdxl", "size": 1024, "options": {"compile": "off"},
                                      "batch": 4, "batch_only": True, "unfused": True, "save_refs": "sdxl"}, 70),
    ("build_sd15", "build", {"arch": "sd15"}, 25),
    ("engine_sd15_eager", "engine", {"arch": "sd15", "size": 512, "options": {"compile": "off"},
                                     "save_refs": "sd15", "batch": 16}, 40),
    ("engine_sd15_compiled", "engine", {"arch": "sd15", "size": 512, "refs": ["sd15"],
                                        "options": {"compile": "reduce-overhead", "compile_after": 0},
                                        "compile_cache": "compile-sd15"}, 90),
    ("sd15_ceiling", "sd15_ceiling", {}, 90),
    ("engine_sdxl_compiled_batch", "engine", {"arch": "sdxl", "size": 1024, "batch": 4, "batch_only": True,
                                              "options": {"compile": "reduce-overhead", "compile_after": 0},
                                              "compile_cache": "compile-sdxl"}, 180),
    ("baseline_full", "script:diffusers_baseline.py", {}, 300),
]
CUDA_ONLY = {"baseline_ceiling", "baseline_full", "sd15_ceiling"}
#: --tiny runs these as subprocesses too (the rest in-process, to stay within seconds).
TINY_SUBPROCESS = {"engine_sdxl_warm", "baseline_lora"}
TINY = {"size": {1024: 64, 512: 64}, "images": 2, "batch": 2, "batch_reps": 1}

#: summary name -> (goal text, test on the value)
GOALS = {
    "sdxl_eager_vs_blog": ("<= 0.5", lambda v: v <= 0.5),
    "sdxl_compiled_vs_ceiling": ("<= 0.8", lambda v: v <= 0.8),
    "sdxl_compiled_vs_blog": ("<= 0.182 (>= 5.5x faster)", lambda v: v <= 1 / 5.5),
    "warm_start_vs_cold": ("<= 0.3", lambda v: v <= 0.3),
    "sdxl_batch_per_image_s": ("<= 0.09 s (H100/H200)", lambda v: v <= 0.09),
    "sd15_compiled_vs_ceiling": ("<= 0.8", lambda v: v <= 0.8),
    "sdxl_peak_vram_gb": ("<= 10", lambda v: v <= 10),
    "psnr_fast_vs_eager_db": (">= 35", lambda v: v >= 35),
}


def card_name(tiny: bool, device: str) -> str:
    if tiny or not device.startswith("cuda"):
        return "cpu-tiny" if tiny else "cpu"
    import torch

    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


class Results:
    """Every line so far, the summary, and the files they are written to."""

    def __init__(self, paths: list[Path], header: dict):
        self.paths, self.header = paths, header
        self.lines: list[dict] = []
        self.skipped: list[dict] = []
        self.t0 = time.time()

    def add(self, line: dict) -> None:
        line.setdefault("t", round(time.time() - self.t0, 1))
        self.lines.append(line)
        print(json.dumps(line), flush=True)
        self.write()

    def skip(self, phase: str, why: str) -> None:
        self.skipped.append({"phase": phase, "why": why})
        self.add({"phase": phase, "what": "skipped", "why": why})

    def write(self, complete: bool = False) -> None:
        doc = {**self.header, "elapsed_s": round(time.time() - self.t0, 1), "complete": complete,
               "summary": summarise(self.lines, self.header.get("tiny", False)), "skipped": self.skipped, "lines": self.lines}
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            tmp.replace(path)


# -- summary -----------------------------------------------------------------------------
def _find(lines: list[dict], phase: str, what: str, **match) -> dict | None:
    for line in lines:
        if line.get("phase") == phase and line.get("what") == what and all(line.get(k) == v for k, v in match.items()):
            return line
    return None


def summarise(lines: list[dict], tiny: bool = False) -> dict:
    """Ratios against the issue's goals from whatever has been measured so far
    (``tiny``: the goals are for the real sizes on a GPU, so none is judged)."""
    out: dict[str, dict] = {}

    def put(name, value, **why):
        if value is None:
            return
        entry = {"value": round(value, 4), **why}
        if name in GOALS:
            entry["goal"], test = GOALS[name]
            entry["met"] = None if tiny else bool(test(value))
        out[name] = entry

    def get(phase, what, key, **match):
        line = _find(lines, phase, what, **match)
        return None if line is None else line.get(key)

    def ratio(a, b):
        return a / b if a is not None and b else None

    eager = get("engine_sdxl_eager", "engine_per_image", "median_s", prompt="new", lora=None)
    unfused = get("engine_sdxl_extras", "engine_per_image", "median_s", prompt="new", lora="unfused")
    compiled = get("engine_sdxl_compiled", "engine_per_image", "median_s", prompt="new")
    blog = get("baseline_lora", "sdxl_lcm_lora", "lora_unfused_s")
    fused_diffusers = get("baseline_lora", "sdxl_lcm_lora", "lora_fused_s")
    ceiling = get("baseline_ceiling", "sdxl_ceiling", "all_tricks_s")
    put("sdxl_eager_s", eager, what="engine, fused LCM-LoRA, eager, new prompt+seed per image")
    put("sdxl_compiled_s", compiled, what="engine, fused LCM-LoRA, compiled, new prompt+seed per image")
    put("sdxl_eager_vs_blog", ratio(eager, blog), what="engine eager / diffusers load_lora_weights (unfused)")
    put("sdxl_eager_vs_diffusers_fused", ratio(eager, fused_diffusers), what="engine eager / diffusers fuse_lora")
    put("sdxl_unfused_vs_blog", ratio(unfused, blog), what="engine with peft adapters unfused / blog path")
    put("sdxl_compiled_vs_ceiling", ratio(compiled, ceiling), what="engine compiled / diffusers every trick")
    put("sdxl_compiled_vs_blog", ratio(compiled, blog), what="engine compiled / blog path")
    cold = get("engine_sdxl_compiled", "engine_first_image", "ttfi_s")
    warm = get("engine_sdxl_warm", "engine_first_image", "ttfi_s")
    put("sdxl_cold_ttfci_s", cold, what="process start -> first compiled image, empty compile cache")
    put("sdxl_warm_ttfci_s", warm, what="the same in a second process, cache warm")
    put("warm_start_vs_cold", ratio(warm, cold), what="warm / cold time to first compiled image")
    batches = [line.get("per_image_s") for line in lines
               if line.get("what") == "engine_batch" and line.get("arch") == "sdxl" and line.get("per_image_s")]
    put("sdxl_batch_per_image_s", min(batches) if batches else None, what="best engine batch mode, s/image")
    sd15 = get("engine_sd15_compiled", "engine_per_image", "median_s", prompt="new")
    put("sd15_compiled_s", sd15, what="engine SD1.5 512² compiled, LCM-LoRA fused")
    put("sd15_compiled_vs_ceiling", ratio(sd15, get("sd15_ceiling", "sd15_ceiling", "all_tricks_s")),
        what="engine compiled / diffusers every trick, SD1.5 512²")
    vram = [get(p, "engine_vram", "peak_vram_gb") for p in ("engine_sdxl_eager", "engine_sdxl_compiled")]
    vram = [v for v in vram if v is not None]
    put("sdxl_peak_vram_gb", max(vram) if vram else None, what="max of eager and compiled, batch 1, no offload")
    put("sdxl_offload_peak_vram_gb", get("engine_sdxl_offload", "engine_vram", "peak_vram_gb"),
        what="with offload")
    put("psnr_fast_vs_eager_db", get("engine_sdxl_compiled", "engine_psnr", "psnr_db_min", vs="sdxl-unfused")
        or get("engine_sdxl_compiled", "engine_psnr", "psnr_db_min", vs="sdxl"),
        what="compiled fast path vs eager fp16 (unfused LoRA), min over 3 images")
    return out


# -- running phases ----------------------------------------------------------------------
def _child_env(args) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # each phase names its own cache
    if args.tiny:
        env["TINY"] = "1"
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def _stream(cmd: list[str], env: dict, cwd: Path, timeout: float | None, on_line) -> int | None:
    """Run ``cmd``; call ``on_line`` with each JSON line as it comes; other output goes
    to stderr. Returns the exit code, or None when killed at ``timeout``."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = None if timeout is None else time.time() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    pending, killed = b"", False

    def handle(raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if text.startswith("{"):
            try:
                on_line(json.loads(text))
                return
            except json.JSONDecodeError:
                pass
        print(text, file=sys.stderr, flush=True)

    while True:
        left = None if deadline is None else deadline - time.time()
        if left is not None and left <= 0:
            os.killpg(proc.pid, 9)
            killed = True
            break
        if not sel.select(timeout=min(left, 5.0) if left is not None else 5.0):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)  # never blocks on a line without its newline
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            handle(raw)
    if pending:
        handle(pending)
    proc.wait()
    return None if killed else proc.returncode


def run_phase(name: str, kind: str, spec: dict, args, work: Path, results: Results, remaining) -> None:
    spec = dict(spec, phase=name, work=str(work), device=args.device, tiny=args.tiny)
    if args.tiny:
        spec["size"] = TINY["size"].get(spec.get("size"), spec.get("size"))
        spec["images"], spec["batch_reps"] = TINY["images"], TINY["batch_reps"]
        if spec.get("batch"):
            spec["batch"] = TINY["batch"]
        options = dict(spec.get("options", {}))
        options.setdefault("fuse_lora", "on")  # the GPU default, so the fused path runs here too
        if options.get("compile", "off") != "off":
            options["compile_backend"] = "eager"  # Inductor on a shared CPU takes minutes
        spec["options"] = options
    if spec.get("compile_cache"):
        spec["options"] = dict(spec["options"], compile_cache=str(work / spec.pop("compile_cache")))

    def on_line(line: dict) -> None:
        line.setdefault("phase", name)
        results.add(line)

    timeout = remaining()
    t0 = time.time()
    if kind.startswith("script:"):
        script = BENCH / kind.split(":", 1)[1]
        env = _child_env(args)
        env["TORCHINDUCTOR_CACHE_DIR"] = str(work / f"inductor-{name}")  # a cold cache, like ours
        code = _stream([sys.executable, str(script)], env, BENCH, timeout, on_line)
    elif args.tiny and name not in TINY_SUBPROCESS:
        spec["launched_at"] = time.time()
        gpu_worker.WORKERS[kind](spec, on_line)
        code = 0
    else:
        spec["launched_at"] = time.time()
        cmd = [sys.executable, str(BENCH / "gpu_worker.py"), kind, json.dumps(spec)]
        code = _stream(cmd, _child_env(args), ROOT, timeout, on_line)
    status = "ok" if code == 0 else ("killed at the budget" if code is None else f"exit {code}")
    results.add({"phase": name, "what": "phase_done", "status": status, "seconds": round(time.time() - t0, 1)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (seconds): checks the code paths")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run; phases that would not fit are skipped "
                             "(default 450 on a GPU, none with --tiny)")
    parser.add_argument("--only", default="", help="comma-separated phases to run (builds are added as needed)")
    parser.add_argument("--skip", default="", help="comma-separated phases to leave out")
    parser.add_argument("--results", default=str(BENCH / "results"), help="folder for <card>.json")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="also write <card>.json here (device $OUT)")
    parser.add_argument("--work", default=None, help="models and caches (default: a temporary folder)")
    parser.add_argument("--keep-work", action="store_true", help="do not delete the work folder")
    args = parser.parse_args(argv)
    args.device = "cpu" if args.tiny else "cuda"
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny models gain nothing from more; CI machines are shared
    else:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device: use --tiny on the CPU")
    budget = args.budget if args.budget is not None else (None if args.tiny else 450.0)
    start = time.time()

    def remaining() -> float | None:
        return None if budget is None else budget - (time.time() - start)

    card = card_name(args.tiny, args.device)
    paths = [Path(args.results) / f"{card}.json"]
    if args.out and Path(args.out).resolve() != Path(args.results).resolve():
        paths.append(Path(args.out) / f"{card}.json")
    import diffusers
    import torch

    header = {"card": card, "tiny": args.tiny, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "budget_s": budget, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    results = Results(paths, header)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lcmgraph-gpu-bench-"))
    only = {p for p in args.only.split(",") if p}
    skip = {p for p in args.skip.split(",") if p}
    if only:
        only |= {f"build_{a}" for a in ("sdxl", "sd15") if any(a in p for p in only if not p.startswith("build"))}
    built: set[str] = set()
    try:
        for name, kind, spec, estimate in PHASES:
            if (only and name not in only) or name in skip:
                continue
            if args.tiny and name in CUDA_ONLY:
                results.skip(name, "needs CUDA")
                continue
            arch = spec.get("arch", "sd15" if "sd15" in name else "sdxl")
            if kind not in ("build",) and name.startswith("engine") and arch not in built:
                results.skip(name, f"the {arch} models were not built")
                continue
            left = remaining()
            if left is not None and left < estimate:
                results.skip(name, f"budget: {left:.0f} s left, needs ~{estimate} s")
                continue
            run_phase(name, kind, spec, args, work, results, remaining)
            done = _find(results.lines, name, "phase_done")
            if kind == "build" and done and done["status"] == "ok":
                built.add(spec["arch"])
        results.write(complete=True)
    finally:
        if not args.keep_work and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(results.lines, args.tiny)
    print(json.dumps({"what": "summary", "card": card, "summary": summary,
                      "skipped": [s["phase"] for s in results.skipped]}), flush=True)
    for key, entry in summary.items():
        verdict = {True: "met", False: "NOT met", None: "not judged (tiny)"}.get(entry.get("met"))
        goal = f"  goal {entry['goal']}: {verdict}" if "goal" in entry else ""
        print(f"# {key:32s} {entry['value']:>10}{goal}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
