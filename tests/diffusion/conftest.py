"""Fixtures for the diffusion pack: tiny models built once per session into a
models folder, and engines over it (helpers: diffusion_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny, tiny_addons

from lcmgraph import Engine

from .diffusion_helpers import new_engine

# One intra-op thread: the tiny models gain nothing from two, and on a shared
# 2-core machine spinning OpenMP workers made the suite 3x slower (111 s vs 39 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ck, lo, cn = root / "checkpoints", root / "loras", root / "controlnet"
    tiny.build_checkpoint(ck / "tiny", "sd15")
    tiny.build_checkpoint(ck / "tiny-xl", "sdxl")
    # LCM-distilled shape: guidance goes in through a time-conditioning embedding.
    tiny.build_checkpoint(ck / "tiny-lcm", "sd15", seed=20, time_cond_proj_dim=32)
    tiny_addons.save_lora(lo / "a.safetensors", seed=10)
    tiny_addons.save_lora(lo / "b_kohya.safetensors", seed=11, kohya=True)
    tiny_addons.save_lora(lo / "b_peft.safetensors", seed=11)
    tiny_addons.save_lora(lo / "xl.safetensors", arch="sdxl", seed=12)
    tiny_addons.save_controlnet(cn / "cn", seed=5)
    tiny_addons.save_controlnet(cn / "cn2", seed=6)
    tiny_addons.save_controlnet(cn / "cn-xl", arch="sdxl", seed=7)
    tiny_addons.save_image(root / "input" / "hint.png")
    return root


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory) -> Engine:
    """Shared by a module's tests: results may come from its cache."""
    return new_engine(models, tmp_path_factory.mktemp("engine"))


@pytest.fixture
def fresh_engine(models, tmp_path) -> Engine:
    return new_engine(models, tmp_path)


@pytest.fixture
def make_engine(models, tmp_path):
    return lambda **options: new_engine(models, tmp_path, **options)


