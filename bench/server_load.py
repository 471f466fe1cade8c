"""Load on the API server: many concurrent clients submitting small workflows
(math test pack) while listening on WebSockets, over loopback only.

Starts ``python -m lcmgraph.server`` on 127.0.0.1 with a fresh data dir, keeps
the worker busy with a slow job, then lets CLIENTS clients each submit JOBS
jobs at once. Checks: every submission is accepted (201) or cleanly refused
(429), every accepted job finishes exactly once (one job_done on its owner's
WebSocket, status done in history, the value it was given), none is lost.
Prints submit latency p50/p99 under load against a baseline measured in the
same run (one client submitting to an idle server). Not a test.

Then the same through ComfyUI's API (``--api comfy``; both by default, each on
its own fresh server): CLIENTS clients on ``/ws?clientId=`` each POST /prompt
JOBS API-format graphs (EmptyImage of a colour of its own -> SaveImage, the
installed image pack), and every accepted prompt must end exactly once on its
owner's socket (one ``execution_success``, one ``executing`` with node null),
be a success in /history/{prompt_id}, and (one per client) /view the colour it
asked for (bench/server_load_comfy.py).

    python bench/server_load.py [--clients 200] [--jobs 5] [--max-queue 300] [--spread 0] [--api both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "tests" / "packs"
HOST = "127.0.0.1"  # loopback only, always


def small_workflow(value: float) -> dict:
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "c": {"type": "Constant", "inputs": {"value": value}},
        "s": {"type": "Scale", "inputs": {"x": {"link": ["c", "value"]}, "factor": 1.0}},
        "out": {"type": "Collect", "inputs": {"value": {"link": ["s", "y"]}}},
    }}


def slow_workflow(seconds: float) -> dict:
    steps = max(1, int(seconds / 0.02))
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "c": {"type": "Constant", "inputs": {"value": -1}},
        "slow": {"type": "Slow", "inputs": {"x": {"link": ["c", "value"]}, "steps": steps, "delay": 0.02}},
        "out": {"type": "Collect", "inputs": {"value": {"link": ["slow", "y"]}}},
    }}


def start_server(data_dir: Path, max_queue: int, entry_points: bool = False) -> tuple[subprocess.Popen, str]:
    """``entry_points``: also the installed packs (ComfyUI's node names map onto them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")}
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lcmgraph.server", "--host", HOST, "--port", "0",
         *([] if entry_points else ["--no-entry-points"]),
         "--plugins", str(PACKS), "--data-dir", str(data_dir), "--models-dir", str(data_dir / "models"),
         "--max-queue", str(max_queue)],
        stdout=subprocess.PIPE, stderr=(data_dir / "server.log").open("wb"), env=env, text=True)
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}\n{(data_dir / 'server.log').read_text()}")
    return proc, line.split("serving on ", 1)[1].split()[0].rstrip("/")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def submit(session: aiohttp.ClientSession, base: str, doc: dict, client: str) -> tuple[int, float, dict]:
    t0 = time.perf_counter()
    async with session.post(f"{base}/api/jobs", json={"workflow": doc, "client_id": client}) as response:
        body = await response.json()
        return response.status, time.perf_counter() - t0, body


async def wait_idle(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(f"{base}/api/queue") as response:
            state = await response.json()
        if not state["running"] and not state["queued"]:
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the queue did not drain in time")


async def baseline(base: str, count: int) -> list[float]:
    """Submit latency of one client against an idle server (each job runs before the next)."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            status, seconds, _ = await submit(session, base, small_workflow(10_000 + i), "baseline")
            assert status == 201, status
            latencies.append(seconds)
            await wait_idle(session, base, 10)
    return latencies


class LoadClient:
    def __init__(self, index: int, base: str, jobs: int, spread: float):
        self.name = f"client{index}"
        self.spread = spread
        self.submitted_at: list[float] = []
        self.index = index
        self.base = base
        self.jobs = jobs
        self.accepted: dict[str, float] = {}   # job id -> the value it was given
        self.refused = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.done_messages: Counter[str] = Counter()
        self.results: dict[str, object] = {}

    async def run(self, start: asyncio.Event, finish_timeout: float) -> None:
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.ws_connect(f"{self.base}/api/ws?client_id={self.name}") as ws:
                hello = await ws.receive_json(timeout=30)
                assert hello["type"] == "hello", hello
                await start.wait()
                rng = random.Random(self.index)
                offsets = sorted(rng.uniform(0, self.spread) for _ in range(self.jobs))
                began = time.monotonic()
                for j in range(self.jobs):
                    await asyncio.sleep(max(0.0, began + offsets[j] - time.monotonic()))
                    value = float(self.index * 1000 + j)
                    status, seconds, body = await submit(session, self.base, small_workflow(value), self.name)
                    self.latencies.append(seconds)
                    self.submitted_at.append(time.time())
                    if status == 201:
                        self.accepted[body["job"]["id"]] = value
                    elif status == 429:
                        self.refused += 1
                    else:
                        self.errors.append(f"{status}: {body}")
                deadline = time.monotonic() + finish_timeout
                while set(self.done_messages) < set(self.accepted) and time.monotonic() < deadline:
                    try:
                        message = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
                    except (TimeoutError, TypeError):
                        break
                    if message.get("type") in ("job_done", "job_failed", "job_interrupted"):
                        self.done_messages[message["job"]] += 1
                        self.results[message["job"]] = message.get("outputs", {}).get("out", {}).get("values")
                # A duplicate job_done would arrive right after the first: linger briefly to catch it.
                try:
                    while True:
                        message = await ws.receive_json(timeout=0.2)
                        if message.get("type") in ("job_done", "job_failed", "job_interrupted"):
                            self.done_messages[message["job"]] += 1
                except (TimeoutError, TypeError):
                    pass


async def load(base: str, clients: int, jobs: int, spread: float, busy_seconds: float, timeout: float) -> dict:
    async with aiohttp.ClientSession() as session:
        status, _, body = await submit(session, base, slow_workflow(busy_seconds), "busy")
        assert status == 201, body
        busy_id = body["job"]["id"]
        while True:  # the worker is busy before the burst starts
            async with session.get(f"{base}/api/jobs/{busy_id}") as response:
                if (await response.json())["job"]["status"] == "running":
                    break
            await asyncio.sleep(0.02)
    start = asyncio.Event()
    workers = [LoadClient(i, base, jobs, spread) for i in range(clients)]
    tasks = [asyncio.create_task(w.run(start, timeout)) for w in workers]
    await asyncio.sleep(1.0)  # let every client connect its WebSocket
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/jobs/{busy_id}") as response:
            busy = (await response.json())["job"]
        history: dict[str, dict] = {}
        offset = 0
        while True:
            async with session.get(f"{base}/api/history?limit=500&offset={offset}") as response:
                page = await response.json()
            history.update({j["id"]: j for j in page["jobs"]})
            offset += len(page["jobs"])
            if offset >= page["total"] or not page["jobs"]:
                break
    return {"workers": workers, "elapsed": elapsed, "history": history, "busy": busy}


def report(args, base_lat: list[float], outcome: dict) -> int:
    workers = outcome["workers"]
    history = outcome["history"]
    latencies = [s for w in workers for s in w.latencies]
    accepted = {job: (w, value) for w in workers for job, value in w.accepted.items()}
    refused = sum(w.refused for w in workers)
    errors = [e for w in workers for e in w.errors]
    done_counts = Counter()
    for w in workers:
        done_counts.update(w.done_messages)
    missing = [j for j in accepted if done_counts[j] == 0]
    duplicated = [j for j, n in done_counts.items() if n > 1]
    not_done = [j for j in accepted if history.get(j, {}).get("status") != "done"]
    wrong = [j for j, (w, value) in accepted.items() if w.results.get(j) != [value]]
    submitted = len(latencies)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    b50 = statistics.median(base_lat)
    mode = f"spread over {args.spread:g} s" if args.spread else "all at once"
    print(f"server load: {args.clients} clients x {args.jobs} jobs ({mode}) over loopback, max queue {args.max_queue}")
    print(f"  submitted {submitted}: accepted {len(accepted)}, refused 429 {refused}, other errors {len(errors)}")
    print(f"  finished: done in history {len(accepted) - len(not_done)}/{len(accepted)}, job_done on the owner's "
          f"WebSocket exactly once {len(accepted) - len(missing) - len(duplicated)}/{len(accepted)}, "
          f"wrong results {len(wrong)}")
    busy = outcome["busy"]
    during = sum(1 for w in workers for t in w.submitted_at if busy["started"] <= t <= (busy["finished"] or 1e18))
    print(f"  submissions answered while the slow job kept the worker busy: {during}/{submitted}")
    print(f"  first submission to last completion: {outcome['elapsed']:.2f} s ({len(accepted) / outcome['elapsed']:.0f} jobs/s)")
    print(f"  submit latency under load: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    print(f"  baseline (1 client, idle server): p50 {b50 * 1000:.2f} ms -> p50 ratio {p50 / b50:.1f}x")
    ok = not errors and not missing and not duplicated and not not_done and not wrong
    if args.json:
        print(json.dumps({"clients": args.clients, "jobs_per_client": args.jobs, "submitted": submitted,
                          "accepted": len(accepted), "refused": refused, "errors": len(errors),
                          "lost": len(not_done), "duplicated": len(duplicated), "p50_ms": p50 * 1000,
                          "p99_ms": p99 * 1000, "baseline_p50_ms": b50 * 1000, "ok": ok}))
    if errors:
        print("  errors:", *errors[:5], sep="\n    ")
    print("OK: every job accepted or refused with 429; every accepted job finished exactly once"
          if ok else "FAILED: see the counts above")
    return 0 if ok else 1


async def main_async(args) -> int:
    from server_load_comfy import comfy_phase

    failures = 0
    with tempfile.TemporaryDirectory(prefix="lcmgraph-load-") as tmp:
        busy = args.busy if args.busy is not None else args.spread + 2.0
        if args.api in ("lcmgraph", "both"):
            proc, base = start_server(Path(tmp) / "lcmgraph", args.max_queue)
            try:
                base_lat = await baseline(base, 30)
                outcome = await asyncio.wait_for(load(base, args.clients, args.jobs, args.spread, busy,
                                                      args.timeout), args.timeout + 60)
                failures += report(args, base_lat, outcome)
            finally:
                stop_server(proc)
        if args.api in ("comfy", "both"):
            proc, base = start_server(Path(tmp) / "comfy", args.max_queue, entry_points=True)
            try:
                failures += await asyncio.wait_for(comfy_phase(args, base, busy), args.timeout + 120)
            finally:
                stop_server(proc)
    return 1 if failures else 0


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=5, help="submissions per client")
    parser.add_argument("--max-queue", type=int, default=300, help="server queue limit (excess -> 429)")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="each client spreads its submissions at random over this many seconds (0: a burst)")
    parser.add_argument("--busy", type=float, default=None,
                        help="seconds the slow job keeps the worker busy (default: spread + 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on the whole load phase")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--api", choices=("lcmgraph", "comfy", "both"), default="both",
                        help="drive /api/jobs + /api/ws, ComfyUI's /prompt + /ws, or both (one after the other)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 1000:
        parser.error("--clients must be 1..1000")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
