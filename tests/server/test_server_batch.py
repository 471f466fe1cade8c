"""Batching in the server: queued jobs of one graph that differ only in
prompt and seed run as one batch; each keeps its own job, history entry,
output file and event stream. ``lcmgraph serve --batch``."""

import argparse
import asyncio
import json
import time

import pytest

from lcmgraph import Engine, EngineConfig
from lcmgraph.pngmeta import WORKFLOW_KEY, read_text_chunks
from lcmgraph.server.batching import SameGraphBatches
from lcmgraph.server.cli import add_serve_arguments, config_from_args
from lcmgraph.server.jobs import QUEUED, Job
from tests.server.harness import PACKS, link, serve, slow_doc, workflow


def shapes_doc(prompt: str, seed: int, steps: int = 4) -> dict:
    return workflow({
        "ckpt": ("LoadCheckpoint", {"checkpoint": "builtin:tiny-shapes"}),
        "pos": ("TextEncode", {"clip": link("ckpt", "clip"), "text": prompt}),
        "latent": ("EmptyLatent", {"width": 64, "height": 64}),
        "sampler": ("LCMSampler", {"model": link("ckpt", "model"), "positive": link("pos", "conditioning"),
                                   "latent": link("latent", "latent"), "seed": seed, "steps": steps,
                                   "guidance": 2.0}),
        "decode": ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}),
        "save": ("SaveImage", {"image": link("decode", "image"), "filename_prefix": "shapes"}),
    })


def diffusion_engine(tmp_path) -> Engine:
    return Engine(EngineConfig(device="cpu", plugin_dirs=PACKS, plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models"))


def test_queued_jobs_of_one_graph_run_as_one_batch(tmp_path):
    prompts = [("a red circle", 1), ("a blue square", 2), ("a green triangle", 3), ("a yellow circle", 4)]

    async def body(h):
        ws = await h.client.ws_connect("/api/ws?client_id=batcher")
        await ws.receive_json()  # hello
        # keep the worker busy while the jobs queue up
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02), client_id="batcher"))["job"]["id"]
        await h.wait(blocker, status=("running",))
        docs = {}
        for index, (prompt, seed) in enumerate(prompts):
            if index == 3:  # a job with another step count: queued in between, never merged
                odd_doc = shapes_doc("a purple square", 5, steps=2)
                odd = (await h.submit(odd_doc, client_id="batcher"))["job"]["id"]
            doc = shapes_doc(prompt, seed)
            docs[(await h.submit(doc, client_id="batcher"))["job"]["id"]] = doc
        await h.call("POST", f"/api/jobs/{blocker}/cancel", 200)

        messages = []
        ended: set[str] = set()
        while ended != {*docs, odd, blocker}:
            message = await ws.receive_json(timeout=120)
            messages.append(message)
            if message["type"] in ("job_done", "job_failed", "job_interrupted"):
                ended.add(message["job"])

        jobs = {job_id: await h.job(job_id) for job_id in [*docs, odd]}
        assert {j["status"] for j in jobs.values()} == {"done"}, [j["error"] for j in jobs.values()]
        batch = [jobs[job_id] for job_id in docs]
        assert len({j["started"] for j in batch}) == 1  # claimed together
        assert jobs[odd]["started"] >= max(j["finished"] for j in batch)  # and the odd one after them
        for job_id, doc in docs.items():
            own = [m for m in messages if m.get("job") == job_id]
            assert all(m["client_id"] == "batcher" for m in own)
            kinds = [m["type"] for m in own]
            assert kinds[0] == "job_queued" and kinds[-2:] == ["run_done", "job_done"]
            steps = [m["step"] for m in own if m["type"] == "node_progress" and m["node"] == "sampler"
                     and "stage" not in m]
            assert steps[0] == 1 and steps[-1] == 4
            previews = [m for m in own if m["type"] == "node_progress" and m["node"] == "sampler" and "preview" in m]
            assert previews and all(p["preview"].startswith("data:image/jpeg;base64,") for p in previews)
            (sampler_done,) = [m for m in own if m["type"] == "node_done" and m["node"] == "sampler"]
            assert sampler_done["batch"] == 4  # one sampler call served the four jobs
            (image,) = jobs[job_id]["outputs"]["save"]["images"]
            assert image["name"] == f"{job_id}/shapes_00001.png"
            _, png = await h.call("GET", image["url"], 200)
            path = h.server.output_root / job_id / "shapes_00001.png"
            assert path.read_bytes() == png
            assert json.loads(read_text_chunks(path)[WORKFLOW_KEY]) == doc  # its own workflow, not the batch's
        (odd_done,) = [m for m in messages if m.get("job") == odd and m["type"] == "node_done"
                       and m["node"] == "sampler"]
        assert "batch" not in odd_done
        _, history = await h.call("GET", "/api/history?client_id=batcher", 200)
        listed = {j["id"]: j for j in history["jobs"]}
        assert {*docs, odd, blocker} == set(listed)
        assert all(listed[job_id]["outputs"] == jobs[job_id]["outputs"] for job_id in docs)
        await ws.close()

    serve(tmp_path, body, engine=diffusion_engine(tmp_path), max_batch=4, timeout=240)


def _job(index: int, doc: dict, outputs=None) -> Job:
    return Job(id=f"j{index}", client_id="c", status=QUEUED, seq=index, workflow_text=json.dumps(doc),
               outputs_requested=outputs, created=time.time())


def test_same_graph_policy_keeps_the_head_and_takes_only_compatible_jobs(tmp_path):
    engine = diffusion_engine(tmp_path)
    policy = SameGraphBatches(engine.registry, max_batch=3, lookahead=8)
    other_size = shapes_doc("big", 9)
    other_size["nodes"]["latent"]["inputs"]["width"] = 128
    renamed = shapes_doc("renamed", 9)
    renamed["nodes"]["save"]["inputs"]["filename_prefix"] = "elsewhere"  # SaveImage lets its prefix differ
    previewed = shapes_doc("c", 3)
    previewed["nodes"]["preview"] = {"type": "PreviewImage", "inputs": {"image": link("decode", "image")}}
    queued = [_job(0, shapes_doc("a", 1)), _job(1, shapes_doc("b", 2, steps=2)), _job(2, other_size),
              _job(3, renamed), _job(4, previewed), _job(5, shapes_doc("d", 4), outputs=["save"]),
              _job(6, shapes_doc("e", 5))]
    # j1: other steps, j2: other size, j4: another graph; j5 names the outputs all run anyway
    assert [j.id for j in policy.select(queued)] == ["j0", "j3", "j5"]  # then max_batch
    assert [j.id for j in policy.select([queued[0], queued[4], queued[6]])] == ["j0", "j6"]
    assert [j.id for j in policy.select(queued[1:])] == ["j1"]
    unknown = workflow({"x": ("NoSuchNode", {})})
    assert [j.id for j in policy.select([_job(7, unknown), _job(8, unknown)])] == ["j7"]
    assert policy.lookahead == 8


def test_serve_batch_option(capsys):
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert config_from_args(parser.parse_args(["--batch", "3"])).max_batch == 3
    assert config_from_args(parser.parse_args(["--device", "cpu"])).max_batch == 1
    assert config_from_args(parser.parse_args(["--device", "cuda"])).max_batch == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch", "0"])
    assert "argument --batch: expected 'auto' or a whole number from 1 to 64, got '0'" in capsys.readouterr().err


def test_without_batching_jobs_run_one_at_a_time(tmp_path):
    async def body(h):
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        ids = [(await h.submit(shapes_doc(p, s)))["job"]["id"] for p, s in (("a", 1), ("b", 2))]
        await h.call("POST", f"/api/jobs/{blocker}/cancel", 200)
        first, second = [await h.wait(job_id, timeout=120) for job_id in ids]
        assert first["status"] == second["status"] == "done"
        assert second["started"] >= first["finished"]
        await asyncio.sleep(0)

    serve(tmp_path, body, engine=diffusion_engine(tmp_path), timeout=240)
