"""The server's engine, built from `lcmgraph serve` arguments: a job that would
exhaust the machine is refused with 400 naming the node and the limit (and
the server goes on), nothing is downloaded, and no host path reaches a client."""

from __future__ import annotations

from lcmgraph import Engine
from lcmgraph.cli import build_parser
from lcmgraph.server.cli import config_from_args, engine_config
from tests.server.harness import link, serve, workflow


def server_engine(tmp_path, *flags: str) -> Engine:
    models = tmp_path / "models"
    (models / "input").mkdir(parents=True)
    args = build_parser().parse_args(["serve", "--device", "cpu", "--models-dir", str(models),
                                      "--data-dir", str(tmp_path / "data"), *flags])
    engine = Engine(engine_config(args, config_from_args(args)))
    engine.runtime.home = tmp_path / "home"
    return engine


def txt2img(size: int, batch: int = 1, steps: int = 2) -> dict:
    return workflow({
        "ckpt": ("LoadCheckpoint", {"checkpoint": "builtin:tiny-random"}),
        "pos": ("TextEncode", {"clip": link("ckpt", "clip"), "text": "a red circle"}),
        "latent": ("EmptyLatent", {"width": size, "height": size, "batch": batch}),
        "sampler": ("LCMSampler", {"model": link("ckpt", "model"), "positive": link("pos", "conditioning"),
                                   "latent": link("latent", "latent"), "steps": steps}),
        "decode": ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}),
        "save": ("SaveImage", {"image": link("decode", "image")}),
    })


def test_an_over_budget_job_is_refused_and_the_server_goes_on(tmp_path):
    engine = server_engine(tmp_path, "--max-pixels", "65536", "--max-batch", "2")

    async def body(h):
        status, answer = await h.call("POST", "/api/jobs", json={"workflow": txt2img(8192, batch=64)})
        assert status == 400 and answer["error"] == "invalid_workflow"
        problems = [(p["node"], p["input"], p["code"]) for p in answer["problems"]]
        assert ("latent", "width", "over_budget") in problems and ("latent", "batch", "over_budget") in problems
        assert answer["message"].startswith(
            "POST /api/jobs: the workflow has ") and "above this server's limit of 65,536 pixels (--max-pixels)" \
            in answer["message"]
        # a job within the limits runs to its image
        job = (await h.submit(txt2img(64)))["job"]
        done = await h.wait(job["id"], timeout=120)
        assert done["status"] == "done", done

    serve(tmp_path, body, engine=engine, timeout=240)


def test_clients_never_see_host_paths(tmp_path):
    engine = server_engine(tmp_path)
    models = str(tmp_path / "models")
    missing = txt2img(64)
    missing["nodes"]["ckpt"]["inputs"]["checkpoint"] = "nowhere.safetensors"
    problems = engine.validate(missing)
    assert [str(p) for p in problems] == [
        "node 'ckpt' input 'checkpoint': 'nowhere.safetensors' was not found in the checkpoints folder"]
    # a node failure whose cause names a file: the message names folder + file
    (tmp_path / "models" / "checkpoints").mkdir()
    (tmp_path / "models" / "checkpoints" / "broken.safetensors").write_bytes(b"\x00" * 64)
    broken = txt2img(64)
    broken["nodes"]["ckpt"]["inputs"]["checkpoint"] = "broken.safetensors"

    async def body(h):
        job = (await h.submit(broken))["job"]
        done = await h.wait(job["id"], timeout=120)
        assert done["status"] == "failed" and done["error"]["node"] == "ckpt"
        assert models not in done["error"]["message"] and str(tmp_path) not in done["error"]["message"]
        assert "broken.safetensors" in done["error"]["message"]

    serve(tmp_path, body, engine=engine, timeout=240)


def test_the_server_does_not_download(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    doc = txt2img(64)
    doc["nodes"]["ckpt"]["inputs"]["checkpoint"] = "hub:someone/model"
    refused = server_engine(tmp_path / "a").validate(doc)
    assert [p.message for p in refused] == [
        "'hub:someone/model' is not in this machine's model cache, and downloads are off here "
        "(the operator can allow them: lcmgraph serve --allow-downloads someone/model)"]
    assert server_engine(tmp_path / "b", "--allow-downloads", "someone/*").validate(doc) == []
