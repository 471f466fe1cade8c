"""Executor overhead on a 500-node graph of trivial nodes.

Prints per-node microseconds for validation alone, a cold run and a fully
cached re-run, each against its goal (cold <= 200 us, cached <= 50 us,
validation <= 50 us on a 2-core machine). Not a test: numbers go in the README.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lcmgraph import Engine, EngineConfig, Input, Node, Output
from lcmgraph import types as T
from lcmgraph.registry import NodeRegistry


class Value(Node):
    inputs = (Input("value", T.FLOAT, default=1.0),)
    outputs = (Output("value", T.FLOAT),)

    def execute(self, ctx, value):
        return {"value": value}


class Add(Node):
    inputs = (Input("a", T.FLOAT), Input("b", T.FLOAT, default=0.0, min=-1e9, max=1e9))
    outputs = (Output("sum", T.FLOAT),)

    def execute(self, ctx, a, b):
        return {"sum": a + b}


class Sink(Node):
    output_node = True
    inputs = (Input("value", T.FLOAT),)

    def execute(self, ctx, value):
        ctx.add_result(values=[value])


def build(n: int, seed_value: float) -> dict:
    """A chain of adds where every tenth node starts a side value joined back in."""
    nodes: dict = {"n0": {"type": "Value", "inputs": {"value": seed_value}}}
    output_of = {"n0": "value"}
    previous = "n0"
    for i in range(1, n - 1):
        node_id = f"n{i}"
        if i % 10 == 0:
            nodes[node_id] = {"type": "Value", "inputs": {"value": float(i)}}
            output_of[node_id] = "value"
            continue
        inputs = {"a": {"link": [previous, output_of[previous]]}, "b": float(i)}
        side = f"n{i - 1}"
        if i % 10 == 1 and i > 1:  # join the side value in as "b"
            inputs = {"a": {"link": [f"n{i - 2}", output_of[f"n{i - 2}"]]}, "b": {"link": [side, "value"]}}
        nodes[node_id] = {"type": "Add", "inputs": inputs}
        output_of[node_id] = "sum"
        previous = node_id
    nodes["out"] = {"type": "Sink", "inputs": {"value": {"link": [previous, output_of[previous]]}}}
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}


def per_node_us(fn, n_nodes: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / n_nodes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    registry = NodeRegistry()
    registry.register_pack("bench", [Value, Add, Sink])
    home = Path(tempfile.mkdtemp())
    engine = Engine(EngineConfig(home=home, models_dir=home, output_dir=home), registry=registry)

    document = build(args.nodes, 0.0)
    assert engine.validate(document) == [], engine.validate(document)[:3]
    n = len(document["nodes"])
    validate_us = per_node_us(lambda: engine.validate(document), n, args.repeats)

    counter = iter(range(1, 10**9))

    def cold():
        # a new seed value at the root changes every key: everything re-executes
        engine.run(build(args.nodes, float(next(counter))))

    cold_us = per_node_us(cold, n, args.repeats)
    engine.run(document)
    cached_us = per_node_us(lambda: engine.run(document), n, args.repeats)
    # Every figure includes validation: engine.run always validates first.
    rows = [("validation", validate_us, 50), ("cold run", cold_us, 200), ("cached re-run", cached_us, 50)]
    print(f"executor overhead, {n}-node graph, median of {args.repeats}")
    for name, value, goal in rows:
        status = "ok" if value <= goal else "OVER"
        print(f"  {name:14s} {value:8.1f} us/node   goal <= {goal} us/node ({value / goal:.2f}x goal) {status}")


if __name__ == "__main__":
    main()
