"""Shared helpers for the engine tests (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

from lcmgraph import Engine, EngineConfig

TESTS = Path(__file__).parent
PACKS = TESTS / "packs"


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


def doc(nodes: dict, **extra) -> dict:
    """A workflow document from a compact {id: (type, inputs)} mapping."""
    out = {"format": "lcmgraph.workflow", "version": 1,
           "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}
    out.update(extra)
    return out


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}
