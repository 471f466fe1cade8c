"""The ComfyUI-API phase of bench/server_load.py: many clients on ComfyUI's
/prompt + /ws at once (run through server_load.py, not alone).

Each client opens ``/ws?clientId=NAME``, then POSTs its prompts (EmptyImage of
a colour of its own -> SaveImage) as ComfyUI's clients do, and reads its socket
until each accepted prompt has ended. Checked: every prompt accepted (200) or
refused (429); each accepted one ends exactly once on its owner's socket (one
``execution_success``, one ``executing`` with node null, nothing of other
clients' prompts), is a success in /history/{prompt_id}, and one image per
client fetched with /view has the colour that client asked for.
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import time
from collections import Counter

import aiohttp
from server_load import percentile, slow_workflow, submit


def prompt(color: int, prefix: str, side: int = 8) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": 1,
                                                         "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["1", 0]}}}


async def post_prompt(session: aiohttp.ClientSession, base: str, body: dict) -> tuple[int, float, dict]:
    t0 = time.perf_counter()
    async with session.post(f"{base}/prompt", json=body) as response:
        answer = await response.json()
        return response.status, time.perf_counter() - t0, answer


class ComfyLoadClient:
    def __init__(self, index: int, base: str, jobs: int, spread: float):
        self.name, self.index, self.base, self.jobs, self.spread = f"comfy{index}", index, base, jobs, spread
        self.accepted: dict[str, int] = {}  # prompt_id -> its colour
        self.refused = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.success: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.foreign: list[str] = []

    def _read(self, message: dict) -> None:
        data = message.get("data") or {}
        prompt_id = data.get("prompt_id")
        if prompt_id is None or message.get("type") == "status":
            return
        if prompt_id not in self.accepted:
            self.foreign.append(prompt_id)  # (only possible for our own prompt before its answer came)
        if message["type"] == "execution_success":
            self.success[prompt_id] += 1
        elif message["type"] == "executing" and data.get("node") is None:
            self.ended[prompt_id] += 1

    async def run(self, start: asyncio.Event, finish_timeout: float) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:
            async with session.ws_connect(f"{self.base}/ws?clientId={self.name}") as ws:
                hello = await ws.receive_json(timeout=30)
                assert hello["type"] == "status" and hello["data"]["sid"] == self.name, hello
                reader = asyncio.create_task(self._listen(ws))
                await start.wait()
                rng = random.Random(self.index)
                offsets = sorted(rng.uniform(0, self.spread) for _ in range(self.jobs))
                began = time.monotonic()
                for j in range(self.jobs):
                    await asyncio.sleep(max(0.0, began + offsets[j] - time.monotonic()))
                    color = (self.index * 7919 + j * 104729) & 0xFFFFFF
                    body = {"prompt": prompt(color, f"{self.name}_{j}"), "client_id": self.name}
                    status, seconds, answer = await post_prompt(session, self.base, body)
                    self.latencies.append(seconds)
                    if status == 200:
                        self.accepted[answer["prompt_id"]] = color
                    elif status == 429:
                        self.refused += 1
                    else:
                        self.errors.append(f"{status}: {answer}")
                deadline = time.monotonic() + finish_timeout
                while set(self.ended) < set(self.accepted) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # a duplicate end would come right after the first
                reader.cancel()

    async def _listen(self, ws) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self._read(frame.json())


async def _baseline(base: str, count: int) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            status, seconds, answer = await post_prompt(session, base, {"prompt": prompt(i, f"base{i}"),
                                                                        "client_id": "baseline"})
            assert status == 200, answer
            latencies.append(seconds)
            while True:  # idle again before the next one
                async with session.get(f"{base}/prompt") as response:
                    if (await response.json())["exec_info"]["queue_remaining"] == 0:
                        break
                await asyncio.sleep(0.02)
    return latencies


async def _check(base: str, workers: list[ComfyLoadClient]) -> tuple[list[str], list[str]]:
    """(prompts not a success in /history, clients whose sampled image has the wrong colour)."""
    from PIL import Image

    not_done, wrong = [], []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        async def item(prompt_id: str) -> dict:
            async with session.get(f"{base}/history/{prompt_id}") as response:
                return (await response.json()).get(prompt_id) or {}

        for w in workers:
            items = await asyncio.gather(*(item(p) for p in w.accepted))
            for prompt_id, entry in zip(w.accepted, items, strict=True):
                if (entry.get("status") or {}).get("status_str") != "success":
                    not_done.append(prompt_id)
            if w.accepted:
                prompt_id, color = next(iter(w.accepted.items()))
                image = (await item(prompt_id))["outputs"]["2"]["images"][0]
                async with session.get(f"{base}/view", params=image) as response:
                    data = await response.read()
                with Image.open(io.BytesIO(data)) as png:
                    if png.convert("RGB").getpixel((0, 0)) != ((color >> 16) & 255, (color >> 8) & 255, color & 255):
                        wrong.append(w.name)
    return not_done, wrong


async def comfy_phase(args, base: str, busy_seconds: float) -> int:
    base_lat = await _baseline(base, 30)
    async with aiohttp.ClientSession() as session:  # keep the worker busy while the burst arrives
        status, _, body = await submit(session, base, slow_workflow(busy_seconds), "busy")
        assert status == 201, body
    workers = [ComfyLoadClient(i, base, args.jobs, args.spread) for i in range(args.clients)]
    start = asyncio.Event()
    tasks = [asyncio.create_task(w.run(start, args.timeout)) for w in workers]
    await asyncio.sleep(1.0)  # every client connected
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    not_done, wrong = await _check(base, workers)

    latencies = [s for w in workers for s in w.latencies]
    accepted = sum(len(w.accepted) for w in workers)
    refused = sum(w.refused for w in workers)
    errors = [e for w in workers for e in w.errors]
    once = sum(1 for w in workers for p in w.accepted if w.success[p] == 1 and w.ended[p] == 1)
    duplicated = sum(1 for w in workers for p in w.accepted if w.success[p] > 1 or w.ended[p] > 1)
    foreign = sum(1 for w in workers for p in w.foreign if p not in w.accepted)
    p50, p99, b50 = percentile(latencies, 0.5), percentile(latencies, 0.99), statistics.median(base_lat)
    mode = f"spread over {args.spread:g} s" if args.spread else "all at once"
    print(f"ComfyUI API load: {args.clients} clients x {args.jobs} prompts ({mode}) on /prompt + /ws, "
          f"max queue {args.max_queue}")
    print(f"  submitted {len(latencies)}: accepted {accepted}, refused 429 {refused}, other errors {len(errors)}")
    print(f"  finished: success in /history {accepted - len(not_done)}/{accepted}, execution_success and "
          f"executing(null) on the owner's /ws exactly once {once}/{accepted}, duplicated {duplicated}, "
          f"other clients' prompts seen {foreign}, wrong colour (one /view per client) {len(wrong)}")
    print(f"  first submission to last completion: {elapsed:.2f} s ({accepted / elapsed:.0f} prompts/s)")
    print(f"  POST /prompt latency under load: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    print(f"  baseline (1 client, idle server): p50 {b50 * 1000:.2f} ms -> p50 ratio {p50 / b50:.1f}x")
    if errors:
        print("  errors:", *errors[:5], sep="\n    ")
    ok = not errors and not not_done and not wrong and once == accepted and not foreign
    print("OK: every prompt accepted or refused with 429; every accepted prompt ended exactly once on its "
          "owner's socket" if ok else "FAILED: see the counts above")
    return 0 if ok else 1
