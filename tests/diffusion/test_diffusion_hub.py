"""``hub:org/name`` checkpoints through LoadCheckpoint, from the local HF cache, offline."""

from __future__ import annotations

import shutil

from .diffusion_helpers import image_of, max_diff, txt2img

REVISION = "fedcba9876543210fedcba9876543210fedcba98"


def cache_repo(cache, repo_id, source_dir):
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(source_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)


def test_hub_checkpoint_gives_the_folder_image_offline(models, fresh_engine, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    cache_repo(cache, "tiny-org/tiny-sd15", models / "checkpoints" / "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    via_hub = image_of(fresh_engine, txt2img(ckpt="hub:tiny-org/tiny-sd15", seed=3))
    via_folder = image_of(fresh_engine, txt2img(ckpt="tiny", seed=3))
    assert max_diff(via_hub, via_folder) == 0.0


def test_uncached_hub_id_offline_is_a_validation_error(fresh_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    flow = txt2img(ckpt="hub:nobody/nothing")
    flow.add("save", "SaveImage", image={"link": ["decode", "image"]})
    problems = [str(p) for p in fresh_engine.validate(flow.doc("save"))]
    assert problems == [
        f"node 'ckpt' input 'checkpoint': hub:nobody/nothing: not in the hub cache ({tmp_path / 'empty-hf'})"
    ]
    flow.nodes["ckpt"]["inputs"]["checkpoint"] = "hub:/etc/passwd"
    problems = [str(p) for p in fresh_engine.validate(flow.doc("save"))]
    assert problems == ["node 'ckpt' input 'checkpoint': 'hub:/etc/passwd' is not a hub id "
                        "(hub ids look like org/name or org/name/path/file.safetensors)"]


def test_online_workflows_are_valid_except_for_the_uncached_hub_files(fresh_engine, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    files = sorted((Path(__file__).resolve().parents[2] / "workflows" / "online").glob("*.json"))
    assert len(files) == 4
    hub_nodes = {"sd15_ipadapter_lcm.json": ["ckpt", "lcm_lora", "ip_file", "clip_vision"], "svd_xt_img2vid.json": ["svd"]}
    for path in files:
        problems = fresh_engine.validate(json.loads(path.read_text()))
        expected = hub_nodes.get(path.name, ["ckpt", "lcm_lora"])
        assert sorted((p.node, p.code) for p in problems) == sorted((n, "missing_file") for n in expected), path


def test_with_downloads_off_only_cached_hub_files_are_valid(models, make_engine, tmp_path, monkeypatch):
    # Online (no HF_HUB_OFFLINE), as a server is: with downloads off nothing may be fetched.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = tmp_path / "hf"
    cache_repo(cache, "tiny-org/tiny-sd15", models / "checkpoints" / "tiny")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    engine = make_engine(hub_downloads=False)
    flow = txt2img(ckpt="hub:tiny-org/tiny-sd15", seed=3)
    flow.add("save", "SaveImage", image={"link": ["decode", "image"]})
    assert engine.validate(flow.doc("save")) == []
    flow.nodes["ckpt"]["inputs"]["checkpoint"] = "hub:someone/big-model"
    assert [str(p) for p in engine.validate(flow.doc("save"))] == [
        "node 'ckpt' input 'checkpoint': 'hub:someone/big-model' is not in this machine's model cache, and "
        "downloads are off here (the operator can allow them: lcmgraph serve --allow-downloads someone/big-model)"]
    # an allow-list lets matching repos through validation (they would download when run)
    assert make_engine(hub_downloads=["someone/*"]).validate(flow.doc("save")) == []
    assert [p.code for p in make_engine(hub_downloads=["other/*"]).validate(flow.doc("save"))] == ["missing_file"]


def test_an_input_image_never_comes_from_the_hub(fresh_engine):
    flow = txt2img()
    flow.add("load", "LoadImage", image="hub:someone/pictures/cat.png")
    flow.add("save", "SaveImage", image={"link": ["load", "image"]})
    assert [str(p) for p in fresh_engine.validate(flow.doc("save"))] == [
        "node 'load' input 'image': 'hub:someone/pictures/cat.png': the hub holds models; an input image "
        "must be a file in the input folder"]
