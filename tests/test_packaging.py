"""The project's own files install everything: packages listed, data shipped, docs current."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, directory in mapping.items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "_")) or part == "node_modules" for part in rel.parts):
                continue
            found.add(".".join((name, *rel.parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_node_reference_is_current():
    env = {k: v for k, v in os.environ.items() if k != "LCMGRAPH_PLUGINS"}  # built-in packs only
    generated = subprocess.run([sys.executable, "-m", "lcmgraph", "nodes", "--markdown"], capture_output=True,
                               text=True, check=True, env=env).stdout
    committed = (ROOT / "docs" / "nodes.md").read_text()
    assert committed == generated, "regenerate with: lcmgraph nodes --markdown > docs/nodes.md"
