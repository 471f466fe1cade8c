"""The engine's modules import each other without cycles, counting imports made
for type checking only: a cycle hidden behind TYPE_CHECKING or a function-level
import is still two modules that cannot be understood apart. And the engine
never imports a node pack."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lcmgraph"


def _is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> tuple[nx.DiGraph, set[str]]:
    """Module -> lcmgraph modules it imports (anywhere in the file); and every other top-level package it names."""
    graph, foreign = nx.DiGraph(), set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph.add_node(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                foreign.add(target.split(".")[0])
                if target.split(".")[0] == "lcmgraph":
                    for alias in node.names:
                        sub = f"{target}.{alias.name}"
                        graph.add_edge(module, sub if _is_module(sub) else target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    foreign.add(alias.name.split(".")[0])
                    if alias.name.startswith("lcmgraph."):
                        graph.add_edge(module, alias.name)
    return graph, foreign


def test_no_import_cycles_in_the_engine():
    graph, _ = import_graph()
    # "from . import types" inside lcmgraph/__init__ is the package importing its own module, not a cycle
    graph.remove_edges_from([(m, m) for m in graph])
    cycles = [c for c in nx.simple_cycles(graph) if c != ["lcmgraph"]]
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_the_engine_never_imports_a_node_pack():
    _, foreign = import_graph()
    assert "lcmgraph_nodes" not in foreign and "nodes" not in foreign


def test_the_graph_sees_the_imports_it_checks():
    # the check above would pass on an empty graph: make sure real edges are found
    graph, _ = import_graph()
    assert graph.has_edge("lcmgraph.engine", "lcmgraph.executor")
    assert graph.has_edge("lcmgraph.executor", "lcmgraph.runtime")  # a TYPE_CHECKING import counts
    assert graph.has_edge("lcmgraph.server.application", "lcmgraph.server.routes")
