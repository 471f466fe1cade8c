"""Scale-out: the same N jobs through ``lcmgraph serve --ray local`` with 1 and
then 2 worker actors, on the embedded model (builtin:tiny-shapes + its
LCM-LoRA, 4 steps), over loopback. Not a test.

For each worker count: a fresh server process (its own local Ray, one CPU
and one torch thread per worker); once the workers are up, a cold round
(6 jobs per worker submitted at once: model loads included) and then the
measured warm round (N jobs at once). For each: images/s (first submission
to last finish), p50/p99 job latency (submission to finish); and the model
loads in the cluster (GET /api/workers), and the server process's CPU time
per warm job (what bounds jobs/s per server). Prints the 2-worker figures as
ratios against the 1-worker run of the same script.

    python bench/scale_out.py [--jobs 24] [--size 128] [--steps 4] [--workers 1 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
#: Jobs per worker before the measured ones: the first loads the model, and a
#: backlog this deep makes every worker load it (routing.REPLICATE_AFTER).
WARM_JOBS = 6


def job_doc(index: int, size: int, steps: int) -> dict:
    link = lambda node, out: {"link": [node, out]}  # noqa: E731
    shapes = ["circle", "square", "triangle", "star"]
    colours = ["red", "blue", "green", "yellow"]
    prompt = f"a {colours[index % 4]} {shapes[index // 4 % 4]} on a black background"
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}},
        "lora": {"type": "ApplyLoRA", "inputs": {"model": link("ckpt", "model"), "clip": link("ckpt", "clip"),
                                                 "lora": "builtin:tiny-shapes-lcm-lora"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": link("lora", "clip"), "text": prompt}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": size, "height": size}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("lora", "model"),
                                                     "positive": link("pos", "conditioning"),
                                                     "latent": link("latent", "latent"), "seed": index,
                                                     "steps": steps, "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "save": {"type": "SaveImage", "inputs": {"image": link("decode", "image"), "filename_prefix": "scale"}},
    }}


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (the server: its event loop, relays, Ray's driver threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def submit_all(base: str, docs: list[dict]) -> list[dict]:
    """Submit every job at once, wait for all; their history entries."""
    ids = [call(base, "POST", "/api/jobs", {"workflow": doc})["job"]["id"] for doc in docs]
    while True:
        listed = {j["id"]: j for j in call(base, "GET", "/api/history?limit=500")["jobs"]}
        if all(i in listed for i in ids):
            break
        time.sleep(0.2)
    finished = [listed[i] for i in ids]
    bad = [j for j in finished if j["status"] != "done"]
    if bad:
        raise SystemExit(f"{len(bad)} job(s) did not finish: {bad[0]['error']}")
    return finished


def run(workers: int, jobs: int, size: int, steps: int, scratch: Path, device: str = "cpu") -> dict:
    data = scratch / f"workers-{workers}"
    env = {**{k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")},
           "RAY_USAGE_STATS_ENABLED": "0", "LCMGRAPH_CPU_BF16": os.environ.get("LCMGRAPH_CPU_BF16", "0")}
    log = (scratch / f"server-{workers}.log").open("wb")
    # Its own session: the local Ray's helper processes are ended with it.
    proc = subprocess.Popen([sys.executable, "-m", "lcmgraph.server", "--host", HOST, "--port", "0",
                             "--data-dir", str(data), "--models-dir", str(data / "models"), "--device", device,
                             "--ray", "local", "--workers", str(workers), "--cpus-per-worker", "1",
                             *(["--gpus-per-worker", "1"] if device.startswith("cuda") else [])],
                            stdout=subprocess.PIPE, stderr=log, env=env, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        if "serving on" not in line:
            raise SystemExit(f"server did not start: {line!r}; see {log.name}")
        base = line.split("serving on ", 1)[1].split()[0].rstrip("/")
        while sum(w["health"] == "ok" for w in call(base, "GET", "/api/workers")["workers"]) < workers:
            time.sleep(0.2)
        cold = submit_all(base, [job_doc(1000 + i, size, steps) for i in range(WARM_JOBS * workers)])
        loads = sum(w["loads"] or 0 for w in call(base, "GET", "/api/workers")["workers"])
        cpu_before = cpu_seconds(proc.pid)
        warm = submit_all(base, [job_doc(i, size, steps) for i in range(jobs)])
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        result = {"workers": workers, "loads": loads, "server_cpu_ms_per_job": 1000 * server_cpu / jobs}
        for name, finished in (("cold", cold), ("warm", warm)):
            latencies = [j["finished"] - j["created"] for j in finished]
            wall = max(j["finished"] for j in finished) - min(j["created"] for j in finished)
            result[name] = {"images_per_s": len(finished) / wall, "wall_s": wall,
                            "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99)}
        result["loads_after"] = sum(w["loads"] or 0 for w in call(base, "GET", "/api/workers")["workers"])
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", help="the workers' device (cuda: one GPU per worker)")
    args = parser.parse_args()
    print(f"{args.jobs} jobs, builtin:tiny-shapes + LCM-LoRA, {args.size}x{args.size}, {args.steps} steps, "
          f"{os.cpu_count()} CPU cores here", flush=True)
    with tempfile.TemporaryDirectory(prefix="lcmgraph-scale-") as scratch:
        results = []
        for workers in args.workers:
            result = run(workers, args.jobs, args.size, args.steps, Path(scratch), args.device)
            results.append(result)
            for name in ("cold", "warm"):
                r = result[name]
                print(f"  {workers} worker(s), {name}: {r['images_per_s']:.2f} images/s over {r['wall_s']:.1f} s, "
                      f"latency p50 {r['p50_s']:.2f} s p99 {r['p99_s']:.2f} s", flush=True)
            print(f"  {workers} worker(s): {result['loads']} model load(s) in the cluster after the cold "
                  f"jobs, {result['loads_after']} after all; server CPU {result['server_cpu_ms_per_job']:.0f} ms "
                  f"per warm job", flush=True)
    base = results[0]
    for result in results[1:]:
        for name in ("cold", "warm"):
            a, b = result[name], base[name]
            print(f"{result['workers']} vs {base['workers']} worker(s), {name}: images/s "
                  f"x{a['images_per_s'] / b['images_per_s']:.2f}, p50 latency x{a['p50_s'] / b['p50_s']:.2f}, "
                  f"p99 x{a['p99_s'] / b['p99_s']:.2f}")

if __name__ == "__main__":
    main()
