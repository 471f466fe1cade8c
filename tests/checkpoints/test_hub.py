"""Hub ids resolve through the local Hugging Face cache; offline and uncached is a clear error."""

from __future__ import annotations

import shutil

import pytest
import torch
from lcmgraph_nodes.diffusion.formats.checkpoint_files import (
    CheckpointError,
    _looks_like_hub_id,
    load_checkpoint,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache, repo_id: str, files: dict) -> None:
    """Lay ``files`` ({path in repo: local source}) out as the hub cache does."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    for name, source in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # so "org/name" is no local path
    return cache


def _same_unet(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cached_diffusers_repo_loads_offline(tiny_sd15, offline_cache):
    _cache_repo(offline_cache, "tiny-org/tiny-sd15", {p.name: p for p in tiny_sd15.folder.iterdir()})
    ckpt = load_checkpoint("tiny-org/tiny-sd15")
    assert ckpt.arch == "sd15" and ckpt.extra["hub_id"] == "tiny-org/tiny-sd15"
    assert ckpt.extra["format"] == "folder" and REVISION in ckpt.extra["path"]
    assert _same_unet(ckpt.unet, load_checkpoint(tiny_sd15.folder).unet)


def test_cached_single_file_in_a_repo_loads_offline(tiny_sdxl, offline_cache):
    _cache_repo(offline_cache, "tiny-org/tiny-xl-single", {"weights/tiny-xl.safetensors": tiny_sdxl.file})
    ckpt = load_checkpoint("tiny-org/tiny-xl-single/weights/tiny-xl.safetensors")
    assert ckpt.arch == "sdxl" and ckpt.extra["format"] == "single_file"
    assert _same_unet(ckpt.unet, load_checkpoint(tiny_sdxl.folder).unet)


def test_hf_home_locates_the_cache(tiny_sd15, tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    _cache_repo(home / "hub", "tiny-org/tiny-sd15", {p.name: p for p in tiny_sd15.folder.iterdir()})
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert load_checkpoint("tiny-org/tiny-sd15").arch == "sd15"


def test_cached_repo_without_a_pipeline_names_the_single_file_form(tiny_sd15, offline_cache):
    _cache_repo(offline_cache, "tiny-org/only-files", {"model.safetensors": tiny_sd15.file})
    with pytest.raises(CheckpointError, match="not a diffusers pipeline.*org/name/path/file.safetensors"):
        load_checkpoint("tiny-org/only-files")
    assert load_checkpoint("tiny-org/only-files/model.safetensors").arch == "sd15"


def test_offline_and_not_cached(offline_cache):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint("tiny-org/never-downloaded")
    message = str(info.value)
    assert "tiny-org/never-downloaded" in message and "offline" in message and str(offline_cache) in message


def test_offline_single_file_not_cached(offline_cache):
    with pytest.raises(CheckpointError, match="offline"):
        load_checkpoint("tiny-org/repo/missing.safetensors")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stabilityai/stable-diffusion-xl-base-1.0", True),
        ("org/repo/sub/model.safetensors", True),
        ("models/foo.safetensors", False),
        ("./org/name", False),
        ("/abs/path", False),
        ("~/models/x", False),
        ("just-a-name", False),
        ("C:\\models\\x", False),
    ],
)
def test_what_counts_as_a_hub_id(source, expected):
    assert _looks_like_hub_id(source) is expected
