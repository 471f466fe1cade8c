from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcmgraph import Engine, EngineConfig

TESTS = Path(__file__).parent
PACKS = TESTS / "packs"

# Two cores: keep torch from oversubscribing them when pytest-xdist runs workers.
torch.set_num_threads(1)


def make_engine(tmp_path: Path, **overrides) -> Engine:
    """An isolated engine with the test pack loaded from its plugin directory."""
    config = EngineConfig(
        plugin_dirs=[PACKS],
        plugins_from_env=False,
        home=tmp_path / "home",
        models_dir=tmp_path / "models",
        output_dir=tmp_path / "out",
        **overrides,
    )
    return Engine(config)


@pytest.fixture
def engine(tmp_path):
    return make_engine(tmp_path)


def doc(nodes: dict, **extra) -> dict:
    """A workflow document from a compact {id: (type, inputs)} mapping."""
    out = {"format": "lcmgraph.workflow", "version": 1,
           "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}
    out.update(extra)
    return out


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}
