"""bench/gpu.py: its --tiny mode runs the benchmark's code paths on the CPU
(the GPU numbers come from a run on a GPU machine: bench/gpu_run.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu  # noqa: E402

#: Left out here to stay well under a minute: the diffusers LoRA baseline takes
#: ~90 s on a shared CPU, and the other two only repeat covered paths at other sizes.
SKIP = "baseline_lora,engine_sdxl_compiled_batch,engine_sd15_compiled"


def test_tiny_mode_writes_json_lines_results_and_a_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--tiny", "--results", str(tmp_path), "--skip", SKIP],
        capture_output=True, text=True, timeout=300, cwd=BENCH.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    done = {x["phase"]: x["status"] for x in lines if x.get("what") == "phase_done"}
    assert done == {p: "ok" for p in ("build_sdxl", "engine_sdxl_eager", "engine_sdxl_compiled", "engine_sdxl_warm",
                                      "engine_sdxl_offload", "engine_sdxl_extras", "build_sd15", "engine_sd15_eager")}
    skipped = {x["phase"] for x in lines if x.get("what") == "skipped"}
    assert skipped == {"baseline_ceiling", "sd15_ceiling", "baseline_full"}  # CUDA only
    whats = {(x.get("phase"), x["what"]) for x in lines}
    for phase in ("engine_sdxl_eager", "engine_sdxl_compiled", "engine_sdxl_warm"):
        assert {(phase, "engine_first_image"), (phase, "engine_per_image")} <= whats
    # The eager phase saves the reference images; the others compare with them.
    for phase in ("engine_sdxl_compiled", "engine_sdxl_warm", "engine_sdxl_extras"):
        assert (phase, "engine_psnr") in whats
    assert ("engine_sdxl_compiled", "compile_cache") in whats
    batches = [x for x in lines if x.get("what") == "engine_batch" and x["phase"] == "engine_sdxl_extras"]
    assert {b["mode"] for b in batches} >= {"latent_batch"} and all(b["per_image_s"] > 0 for b in batches)
    stats = next(x for x in lines if x.get("what") == "engine_stats" and x["phase"] == "engine_sdxl_compiled")
    assert stats["switches"]["compile"] == "reduce-overhead" and stats["switches"]["fuse_lora"]
    (model,) = stats["models"].values()
    assert model["compiled"] and model["fuse_builds"] == 1 and model["fuse_hits"] > 1
    psnr = [x for x in lines if x.get("what") == "engine_psnr" and x["phase"] == "engine_sdxl_compiled"]
    assert psnr and all(x["images_finite"] and x["psnr_db_min"] > 35 for x in psnr)

    summary_line = json.loads(proc.stdout.splitlines()[-1])
    assert summary_line["what"] == "summary" and summary_line["card"] == "cpu-tiny"
    summary = summary_line["summary"]
    for key in ("sdxl_eager_s", "sdxl_compiled_s", "sdxl_cold_ttfci_s", "warm_start_vs_cold",
                "sdxl_batch_per_image_s", "psnr_fast_vs_eager_db"):
        assert summary[key]["value"] > 0
    assert summary["warm_start_vs_cold"]["met"] is None  # goals are not judged at tiny sizes
    saved = json.loads((tmp_path / "cpu-tiny.json").read_text())
    assert saved["complete"] and saved["tiny"] and saved["summary"] == summary
    assert len(saved["lines"]) == len(lines) - 1  # every line but the final summary


def test_summary_ratios_against_the_goals():
    lines = [
        {"phase": "engine_sdxl_eager", "what": "engine_per_image", "prompt": "new", "median_s": 0.36},
        {"phase": "engine_sdxl_extras", "what": "engine_per_image", "prompt": "new", "lora": "unfused",
         "median_s": 0.7},
        {"phase": "engine_sdxl_compiled", "what": "engine_per_image", "prompt": "new", "median_s": 0.13},
        {"phase": "engine_sdxl_compiled", "what": "engine_first_image", "ttfi_s": 200.0},
        {"phase": "engine_sdxl_warm", "what": "engine_first_image", "ttfi_s": 50.0},
        {"phase": "engine_sdxl_compiled", "what": "engine_vram", "peak_vram_gb": 9.0},
        {"phase": "engine_sdxl_compiled", "what": "engine_psnr", "vs": "sdxl", "psnr_db_min": 41.0},
        {"phase": "baseline_lora", "what": "sdxl_lcm_lora", "lora_unfused_s": 0.75, "lora_fused_s": 0.47},
        {"phase": "baseline_ceiling", "what": "sdxl_ceiling", "all_tricks_s": 0.169},
        {"phase": "engine_sdxl_compiled_batch", "what": "engine_batch", "arch": "sdxl", "per_image_s": 0.1},
    ]
    s = gpu.summarise(lines)
    assert s["sdxl_eager_vs_blog"]["value"] == 0.48 and s["sdxl_eager_vs_blog"]["met"] is True
    assert s["sdxl_compiled_vs_ceiling"]["value"] == round(0.13 / 0.169, 4) and s["sdxl_compiled_vs_ceiling"]["met"]
    assert s["warm_start_vs_cold"]["value"] == 0.25 and s["warm_start_vs_cold"]["met"]
    assert s["sdxl_batch_per_image_s"]["met"] is False
    assert s["sdxl_unfused_vs_blog"]["value"] == round(0.7 / 0.75, 4)
    assert s["psnr_fast_vs_eager_db"]["met"] and s["sdxl_peak_vram_gb"]["met"]
    assert "sd15_compiled_vs_ceiling" not in s  # not measured: not invented


def test_a_phase_past_the_budget_is_killed_and_keeps_its_lines(tmp_path):
    script = ("import json, sys, time; print(json.dumps({'what': 'early'}), flush=True); "
              "sys.stdout.write('a progress bar without its newline'); sys.stdout.flush(); time.sleep(30)")
    seen = []
    t0 = time.time()
    code = gpu._stream([sys.executable, "-c", script], {}, tmp_path, 3.0, seen.append)
    assert code is None and seen == [{"what": "early"}] and time.time() - t0 < 10
