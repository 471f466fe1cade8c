"""The cluster's pieces that need no Ray: routing by model, file transfer,
the ``--ray`` options, and a server without ``--ray`` never importing Ray."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from lcmgraph.cluster.options import RayOptions
from lcmgraph.cluster.routing import AffinityPick, ModelKeys, SlotView, model_key
from lcmgraph.cluster.transfer import Shipper, land, localize
from lcmgraph.server.cli import add_serve_arguments, config_from_args
from lcmgraph.server.jobs import QUEUED, Job
from tests.server.harness import link, make_engine, workflow


def job(job_id: str, checkpoint: str | None, lora: str | None = None) -> Job:
    if checkpoint is None:
        doc = workflow({"c": ("Constant", {"value": 1.0}), "out": ("Collect", {"value": link("c", "value")})})
    else:
        model = link("lora" if lora else "ckpt", "model")
        nodes: dict = {"ckpt": ("LoadCheckpoint", {"checkpoint": checkpoint})}
        if lora is not None:
            nodes["lora"] = ("ApplyLoRA", {"model": link("ckpt", "model"), "lora": lora})
        nodes["latent"] = ("EmptyLatent", {"width": 64, "height": 64})
        nodes["pos"] = ("TextEncode", {"clip": link("ckpt", "clip"), "text": "x"})
        nodes["sampler"] = ("LCMSampler", {"model": model, "positive": link("pos", "conditioning"),
                                           "latent": link("latent", "latent")})
        nodes["decode"] = ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")})
        nodes["save"] = ("SaveImage", {"image": link("decode", "image")})
        doc = workflow(nodes)
    return Job(id=job_id, client_id="t", status=QUEUED, seq=0, workflow_text=json.dumps(doc),
               outputs_requested=None, created=0.0)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from lcmgraph import Engine, EngineConfig
    from tests.server.harness import PACKS

    tmp = tmp_path_factory.mktemp("routing")
    engine = Engine(EngineConfig(plugin_dirs=PACKS, plugins_from_env=False, load_entry_points=True,
                                 home=tmp / "home", models_dir=tmp / "models"))
    return ModelKeys(engine.registry)


def test_a_jobs_model_key_names_the_model_files_its_graph_loads(keys):
    assert keys(job("a", "builtin:tiny-shapes")) == "checkpoints/builtin:tiny-shapes"
    with_lora = keys(job("b", "builtin:tiny-shapes", "builtin:tiny-shapes-lcm-lora"))
    assert with_lora == "checkpoints/builtin:tiny-shapes\nloras/builtin:tiny-shapes-lcm-lora"
    assert keys(job("c", None)) == ""  # no model: any worker


def test_alternating_models_stay_with_the_worker_that_loaded_them(keys):
    slots = [SlotView(0, alive=True), SlotView(1, alive=True)]
    queue = [job(f"j{i}", "builtin:tiny-shapes" if i % 2 == 0 else "builtin:tiny-random") for i in range(8)]

    def take(slot: SlotView) -> Job | None:
        picked = AffinityPick(slot, slots, keys, None, {}).select(queue)
        if picked:
            queue.remove(picked[0])
        return picked[0] if picked else None

    taken = {0: [], 1: []}
    order = [0, 1, 1, 1, 0, 0, 1, 0]  # workers free up in any order
    for index in order:
        got = take(slots[index])
        if got is not None:
            taken[index].append(keys(got))
    assert set(taken[0]) == {"checkpoints/builtin:tiny-shapes"}
    assert set(taken[1]) == {"checkpoints/builtin:tiny-random"}
    assert len(taken[0]) == len(taken[1]) == 4


def test_a_busy_models_backlog_goes_to_a_second_worker(keys):
    holder, idle = SlotView(0, alive=True, busy=True), SlotView(1, alive=True)
    holder.remember("checkpoints/builtin:tiny-shapes")
    few = [job(f"f{i}", "builtin:tiny-shapes") for i in range(4)]
    assert AffinityPick(idle, [holder, idle], keys, None, {}).select(few) == []  # the holder will take them
    many = few + [job(f"m{i}", "builtin:tiny-shapes") for i in range(2)]
    assert AffinityPick(idle, [holder, idle], keys, None, {}).select(many) == [many[0]]
    assert idle.holds("checkpoints/builtin:tiny-shapes")


def test_a_job_put_back_after_a_lost_worker_goes_elsewhere(keys):
    slots = [SlotView(0, alive=True), SlotView(1, alive=True)]
    queued = [job("again", None), job("next", None)]
    assert AffinityPick(slots[0], slots, keys, None, {"again": 0}).select(queued) == [queued[1]]
    assert AffinityPick(slots[1], slots, keys, None, {"again": 0}).select(queued) == [queued[0]]
    slots[1].alive = False  # no other worker: it may go back
    assert AffinityPick(slots[0], slots, keys, None, {"again": 0}).select(queued) == [queued[0]]


def test_output_files_travel_to_the_servers_folders(tmp_path):
    worker_out, server_out = tmp_path / "worker" / "out", tmp_path / "server" / "out"
    (worker_out / "job1").mkdir(parents=True)
    (worker_out / "job1" / "a.png").write_bytes(b"png bytes")
    results = {"save": {"images": [{"path": str(worker_out / "job1" / "a.png"), "type": "output"}]}}
    shipper = Shipper({"output": worker_out})
    sent, files = shipper.ship(results)
    assert files == [("output", "job1/a.png", b"png bytes")]
    assert shipper.ship(results)[1] == []  # each file once (node_output, run_done, outcome name it)
    roots = {"output": [server_out]}
    for folder, rel, data in files:
        land(roots, folder, rel, data)
    assert localize(sent, roots) == {"save": {"images": [{"path": str(server_out / "job1" / "a.png"),
                                                          "type": "output"}]}}
    assert (server_out / "job1" / "a.png").read_bytes() == b"png bytes"
    for bad in ("../escape.png", "/abs.png", "a//b.png"):
        with pytest.raises(ValueError, match="unusable name"):
            land(roots, "output", bad, b"x")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_ray_options_on_the_command_line(tmp_path):
    config = config_from_args(parse("--data-dir", str(tmp_path), "--ray", "local", "--workers", "2",
                                    "--gpus-per-worker", "0.5", "--ray-storage", "shared"))
    assert config.ray == RayOptions(address="local", workers=2, gpus_per_worker=0.5, storage="shared")
    assert config_from_args(parse("--data-dir", str(tmp_path), "--ray")).ray.address is None
    assert config_from_args(parse("--data-dir", str(tmp_path))).ray is None
    with pytest.raises(SystemExit):
        parse("--ray", "local", "--workers", "0")


def test_a_server_without_ray_never_imports_it(tmp_path):
    script = (
        "import sys, asyncio\n"
        "from tests.server.harness import serve, const_doc\n"
        "async def body(h):\n"
        "    job = (await h.submit(const_doc(1.0)))['job']['id']\n"
        "    assert (await h.wait(job))['status'] == 'done'\n"
        "    workers = (await h.call('GET', '/api/workers', 200))[1]\n"
        "    assert workers['cluster'] is False and workers['workers'][0]['kind'] == 'thread'\n"
        "import pathlib\n"
        f"serve(pathlib.Path({str(tmp_path)!r}), body)\n"
        "import lcmgraph.cli, lcmgraph.cluster.options\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('no ray')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert done.returncode == 0 and "no ray" in done.stdout, done.stderr[-2000:]


def test_model_key_of_a_prepared_run(tmp_path):
    engine = make_engine(tmp_path)
    prepared = engine.prepare(workflow({"c": ("Constant", {"value": 1.0}), "out": ("Collect", {"value": link("c", "value")})}))
    assert model_key(prepared) == ""
