"""``lcmgraph serve --ray``: a server handing its jobs to two Ray worker actors,
on a local Ray this module starts (loopback, 2 CPUs, no dashboard, a small
object store). Model affinity (each checkpoint loaded once in the cluster),
events in order, the same image bytes and history entry as one process, a
model that cannot load failing only its job, and workers killed mid-job."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from lcmgraph import Engine, EngineConfig
from lcmgraph.cluster.options import RayOptions
from tests.server.harness import PACKS, const_doc, link, serve, slow_doc, workflow

FINISHED = ("job_done", "job_failed", "job_interrupted")


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=80 * 2**20, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def two_workers() -> RayOptions:
    return RayOptions(address=None, workers=2)  # None: the Ray this module started


def image_doc(checkpoint: str, prompt: str, seed: int) -> dict:
    return workflow({
        "ckpt": ("LoadCheckpoint", {"checkpoint": checkpoint}),
        "pos": ("TextEncode", {"clip": link("ckpt", "clip"), "text": prompt}),
        "latent": ("EmptyLatent", {"width": 64, "height": 64}),
        "sampler": ("LCMSampler", {"model": link("ckpt", "model"), "positive": link("pos", "conditioning"),
                                   "latent": link("latent", "latent"), "seed": seed, "steps": 2, "guidance": 1.0}),
        "decode": ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}),
        "save": ("SaveImage", {"image": link("decode", "image"), "filename_prefix": "cluster"}),
    })


def diffusion_engine(tmp_path, name: str) -> Engine:
    return Engine(EngineConfig(device="cpu", plugin_dirs=PACKS, plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models",
                               output_dir=tmp_path / name))


async def workers_ready(h, count: int = 2) -> list[dict]:
    while True:
        workers = (await h.call("GET", "/api/workers", 200))[1]["workers"]
        if sum(w["health"] == "ok" for w in workers) >= count:
            return workers
        await asyncio.sleep(0.1)


async def history_entry(h, job_id: str) -> dict:
    _, history = await h.call("GET", "/api/history?limit=100", 200)
    return next(j for j in history["jobs"] if j["id"] == job_id)


async def until_finished(ws, job_ids: set[str], messages: list[dict]) -> None:
    ended: set[str] = set()
    while not job_ids <= ended:
        message = await ws.receive_json(timeout=120)
        messages.append(message)
        if message["type"] in FINISHED:
            ended.add(message["job"])


def test_jobs_go_to_the_worker_holding_their_model_and_come_back_as_in_one_process(tmp_path, ray_cluster):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "broken.safetensors").write_bytes(b"not a checkpoint" * 64)
    shapes, random = "builtin:tiny-shapes", "builtin:tiny-random"
    docs = [image_doc(shapes, "a red circle", 1), image_doc(random, "a blue square", 2),
            image_doc(shapes, "a green star", 3), image_doc(random, "a cat", 4)]
    seen: dict = {}

    async def body(h):
        ws = await h.client.ws_connect("/api/ws?client_id=cluster")
        await ws.receive_json()  # hello
        ids = [(await h.submit(doc, client_id="cluster"))["job"]["id"] for doc in docs]
        messages: list[dict] = []
        await until_finished(ws, set(ids), messages)
        jobs = [await h.job(job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["done"] * 4, [j["error"] for j in jobs]

        # Alternating checkpoints over two workers: each loaded once in the whole cluster.
        workers = await workers_ready(h)
        assert sorted(w["loads"] for w in workers) == [1, 1], workers
        assert all(len(w["models"]) == 1 and w["device"] == "cpu" for w in workers)
        assert workers[0]["models"] != workers[1]["models"]

        for job_id in ids:  # each job's events in the engine's order, its end last
            kinds = [m["type"] for m in messages if m.get("job") == job_id]
            assert kinds[0] == "job_queued" and kinds[-2:] == ["run_done", "job_done"]
            assert kinds.index("job_started") < kinds.index("run_start") < kinds.index("node_start")
            steps = [m["step"] for m in messages if m.get("job") == job_id and m["type"] == "node_progress"
                     and m["node"] == "sampler" and "stage" not in m]
            assert steps == sorted(steps) and steps[-1] == 2
        seen["png"] = (await h.call("GET", jobs[0]["outputs"]["save"]["images"][0]["url"], 200))[1]
        seen["entry"] = await history_entry(h, ids[0])

        # A checkpoint that cannot be loaded fails its job; the worker stays and runs the next one.
        broken = (await h.submit(image_doc("broken.safetensors", "x", 5), client_id="cluster"))["job"]["id"]
        failed = await h.wait(broken, timeout=120)
        assert failed["status"] == "failed" and failed["error"]["code"] == "node_failed"
        assert failed["error"]["node"] == "ckpt" and "broken.safetensors" in failed["error"]["message"]
        after = (await h.submit(docs[1], client_id="cluster"))["job"]["id"]
        assert (await h.wait(after, timeout=120))["status"] == "done"
        workers = await workers_ready(h)
        assert [w["restarts"] for w in workers] == [0, 0] and sum(w["loads"] for w in workers) == 2
        await ws.close()

    serve(tmp_path, body, engine=diffusion_engine(tmp_path, "out-ray"), ray=two_workers(), timeout=300)

    # The same job in one process (the worker thread): the same PNG bytes and history entry.
    alone: dict = {}

    async def one_process(h):
        job_id = (await h.submit(docs[0], client_id="cluster"))["job"]["id"]
        job = await h.wait(job_id, timeout=120)
        alone["png"] = (await h.call("GET", job["outputs"]["save"]["images"][0]["url"], 200))[1]
        alone["entry"] = await history_entry(h, job_id)

    serve(tmp_path / "alone", one_process, engine=diffusion_engine(tmp_path, "out-alone"), timeout=120)
    assert seen["png"] == alone["png"]
    ray_job, one_job = seen["entry"], alone["entry"]
    assert ray_job.keys() == one_job.keys()
    assert ray_job["executed"] == one_job["executed"]
    ray_image, one_image = ray_job["outputs"]["save"]["images"][0], one_job["outputs"]["save"]["images"][0]
    assert ray_image.keys() == one_image.keys()
    assert ray_image["name"].split("/")[1] == one_image["name"].split("/")[1] == "cluster_00001.png"


def test_a_job_whose_worker_dies_runs_once_more_elsewhere_then_fails(tmp_path, ray_cluster):
    async def kill_worker_running(h, job_id: str) -> str:
        while True:
            workers = (await h.call("GET", "/api/workers", 200))[1]["workers"]
            running = [w for w in workers if job_id in w["running"] and w["pid"]]
            if running:
                os.kill(running[0]["pid"], signal.SIGKILL)
                return running[0]["name"]
            await asyncio.sleep(0.05)

    async def progressed(ws, job_id: str, messages: list[dict]) -> None:
        while True:
            message = await ws.receive_json(timeout=120)
            messages.append(message)
            if message.get("job") == job_id and message["type"] == "node_progress":
                return

    async def body(h):
        await workers_ready(h)
        ws = await h.client.ws_connect("/api/ws?client_id=faults")
        await ws.receive_json()
        messages: list[dict] = []

        # Killed once: put back in the queue, run to the end on the other worker, once.
        once = (await h.submit(slow_doc(steps=150, delay=0.01, tag=1.0), client_id="faults"))["job"]["id"]
        await progressed(ws, once, messages)
        first = await kill_worker_running(h, once)
        await until_finished(ws, {once}, messages)
        own = [m for m in messages if m.get("job") == once]
        assert [m["type"] for m in own].count("job_requeued") == 1
        assert first in next(m for m in own if m["type"] == "job_requeued")["reason"]
        assert [m["type"] for m in own].count("run_done") == 1 and own[-1]["type"] == "job_done"
        job = await h.job(once)
        assert job["status"] == "done" and job["outputs"] == {"out": {"values": [1.0]}}

        # Killed twice: failed, saying its worker was lost (and not run a third time).
        twice = (await h.submit(slow_doc(steps=1000, delay=0.01, tag=2.0), client_id="faults"))["job"]["id"]
        await progressed(ws, twice, messages)
        await kill_worker_running(h, twice)
        await workers_ready(h, 1)
        await progressed(ws, twice, messages)
        await kill_worker_running(h, twice)
        await until_finished(ws, {twice}, messages)
        job = await h.job(twice)
        assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
        assert "lost while running it" in job["error"]["message"] and job["error"]["attempts"] == 2

        # The cluster replaced the workers and goes on: a cancel reaches the running job on its worker.
        stopped = (await h.submit(slow_doc(steps=1000, delay=0.01, tag=3.0), client_id="faults"))["job"]["id"]
        await progressed(ws, stopped, messages)
        await h.call("POST", f"/api/jobs/{stopped}/cancel", 200)
        job = await h.wait(stopped, timeout=60)
        assert job["status"] == "interrupted" and job["error"]["code"] == "interrupted"
        after = (await h.submit(const_doc(7.0), client_id="faults"))["job"]["id"]
        assert (await h.wait(after, timeout=120))["status"] == "done"
        workers = await workers_ready(h)
        assert sum(w["restarts"] for w in workers) == 3
        _, history = await h.call("GET", "/api/history?limit=50", 200)
        listed = [j["id"] for j in history["jobs"]]
        assert sorted(listed) == sorted([once, twice, stopped, after])  # each once
        await ws.close()

    from tests.server.harness import make_engine

    serve(tmp_path, body, engine=make_engine(tmp_path), ray=two_workers(), timeout=300)


def test_same_graph_jobs_batch_on_one_worker_and_workers_write_to_shared_storage(tmp_path, ray_cluster):
    from pathlib import Path

    batch_pack = Path(__file__).resolve().parents[1] / "batch_pack"
    engine = Engine(EngineConfig(plugin_dirs=[*PACKS, batch_pack], plugins_from_env=False, load_entry_points=False,
                                 home=tmp_path / "home", models_dir=tmp_path / "models", output_dir=tmp_path / "out"))

    def double_doc(value: float) -> dict:
        return workflow({"c": ("Constant", {"value": value}),
                         "double": ("Double", {"x": link("c", "value"), "factor": 2.0, "steps": 2}),
                         "out": ("Collect", {"value": link("double", "y")})})

    async def body(h):
        await workers_ready(h)
        ws = await h.client.ws_connect("/api/ws?client_id=batches")
        await ws.receive_json()
        blockers = []
        for tag in (-1.0, -2.0):  # one each, so the jobs below queue up
            blockers.append((await h.submit(slow_doc(steps=1000, delay=0.01, tag=tag), client_id="batches"))["job"]["id"])
            await h.wait(blockers[-1], status=("running",), timeout=60)
        doubles = [(await h.submit(double_doc(v), client_id="batches"))["job"]["id"] for v in (1.0, 2.0, 3.0, 4.0)]
        solid = (await h.submit(workflow({"c": ("Constant", {"value": 99}),
                                          "img": ("SolidImage", {"value": link("c", "value")})}),
                                client_id="batches"))["job"]["id"]
        for blocker in blockers:
            await h.call("POST", f"/api/jobs/{blocker}/cancel", 200)
        messages: list[dict] = []
        await until_finished(ws, {*blockers, *doubles, solid}, messages)

        jobs = [await h.job(job_id) for job_id in doubles]
        assert [j["outputs"]["out"]["values"] for j in jobs] == [[2.0], [4.0], [6.0], [8.0]]
        assert len({j["started"] for j in jobs}) == 1  # claimed together by one worker
        for job_id in doubles:
            (done,) = [m for m in messages if m.get("job") == job_id and m["type"] == "node_done"
                       and m["node"] == "double"]
            assert done["batch"] == 4  # one execute_batch call served the four jobs

        image = (await h.job(solid))["outputs"]["img"]["images"][0]
        assert image["name"] == f"{solid}/solid_99.png"  # written by the worker into the server's folder
        assert (tmp_path / "data" / "outputs" / solid / "solid_99.png").is_file()
        _, png = await h.call("GET", image["url"], 200)
        assert png.startswith(b"\x89PNG")
        await ws.close()

    serve(tmp_path, body, engine=engine, max_batch=4,
          ray=RayOptions(address=None, workers=2, storage="shared"), timeout=180)


def test_a_sweep_over_two_workers_makes_the_same_grid_as_one_process(tmp_path, ray_cluster):
    import json

    from PIL import Image

    from lcmgraph.cli import main

    doc = tmp_path / "wf.json"
    doc.write_text(json.dumps(image_doc("builtin:tiny-shapes", "a red circle", 1)))
    common = ["run", str(doc), "--sweep", "sampler.seed=1,2", "--sweep", "sampler.steps=1,2", "--quiet",
              "--device", "cpu", "--models-dir", str(tmp_path / "models")]
    assert main([*common, "--out", str(tmp_path / "one"), "--grid", str(tmp_path / "one.png")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--grid", str(tmp_path / "ray.png"),
                 "--ray", "--workers", "2"]) == 0
    cells = sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray").rglob("*.png"))
    assert cells == [f"cell00{i}/cluster_00001.png" for i in range(4)]  # one folder per cell
    import numpy as np

    with Image.open(tmp_path / "one.png") as one, Image.open(tmp_path / "ray.png") as spread:
        assert one.size == spread.size
        a, b = np.asarray(one, dtype=int), np.asarray(spread, dtype=int)
    # Same seeds and cells, but each worker is its own process with its own thread count, and
    # MKL picks its code path by threads and alignment: a pixel may round to the next level
    # (one did, by 1 of 255, after the decoder changed). Labels and layout must match exactly.
    diff = np.abs(a - b)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())
