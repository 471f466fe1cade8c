"""Executor overhead on graphs of trivial nodes, against an earlier version in the same run.

For each graph size (default 50 and 500 nodes) it measures per-node
microseconds for validation alone (``Engine.validate``: parse + validate),
a cold run (every key new: everything executes) and a fully cached re-run.
With ``--baseline REV`` (default ``HEAD~1``) the same measurement runs on
that revision's ``lcmgraph`` (exported with ``git archive`` into a temporary
folder), alternating rounds between the two so machine noise hits both, and
prints the ratio new/baseline. Goals: validation <= 3.4 us/node at 50 nodes
(ComfyUI's ``validate_prompt`` on the same shape), execution no worse than
the baseline. Not a test: numbers go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALIDATION_GOAL_US = 3.4  # ComfyUI validate_prompt, 50-node graph, 2-core machine


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


def measure(sizes: list[int], repeats: int) -> dict:
    """Median per-node microseconds of every phase, for each size (runs in whichever lcmgraph is imported)."""
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

    registry = NodeRegistry()
    registry.register_pack("bench", [Value, Add, Sink])
    home = Path(tempfile.mkdtemp())
    engine = Engine(EngineConfig(home=home, models_dir=home, output_dir=home), registry=registry)
    counter = iter(range(1, 10**9))
    out = {}
    for size in sizes:
        document = build(size, 0.0)
        problems = engine.validate(document)
        assert problems == [], problems[:3]
        # Cold runs get their documents built beforehand: only the engine is timed.
        colds = [build(size, float(next(counter))) for _ in range(repeats)]
        engine.run(document)
        phases = {
            "validation": lambda d=document: engine.validate(d),
            "cold run": lambda c=colds: engine.run(c.pop()),
            "cached re-run": lambda d=document: engine.run(d),
        }
        n = len(document["nodes"])
        for name, fn in phases.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[f"{size}/{name}"] = statistics.median(times) / n * 1e6
    return out


def export(revision: str) -> Path:
    """The revision's lcmgraph package in a temporary folder (for PYTHONPATH)."""
    folder = Path(tempfile.mkdtemp(prefix="lcmgraph-baseline-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "lcmgraph"],
                             check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(folder, filter="data")
    return folder


def run_child(pythonpath: Path, sizes: list[int], repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import executor_overhead as b; print(json.dumps(b.measure({sizes!r}, {repeats})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,500", help="graph sizes in nodes (comma-separated)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per phase and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of new and baseline")
    parser.add_argument("--baseline", default="HEAD~1", help="git revision to compare with ('none': skip)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline = None if args.baseline == "none" else export(args.baseline)
    rounds: dict[str, list[dict]] = {"new": [], "baseline": []}
    for _ in range(args.rounds):
        rounds["new"].append(run_child(REPO, sizes, args.repeats))
        if baseline is not None:
            rounds["baseline"].append(run_child(baseline, sizes, args.repeats))

    def best(which: str, key: str) -> float:  # the quietest round
        return min(r[key] for r in rounds[which])

    print(f"executor overhead, us/node, median of {args.repeats} runs, best of {args.rounds} alternating rounds")
    header = f"  {'graph / phase':24s} {'this tree':>10s}"
    if baseline is not None:
        header += f" {args.baseline:>12s} {'ratio':>7s}"
    print(header)
    for key in rounds["new"][0]:
        line = f"  {key:24s} {best('new', key):10.2f}"
        if baseline is not None:
            old = best("baseline", key)
            line += f" {old:12.2f} {best('new', key) / old:7.2f}"
        if key == "50/validation":
            line += f"   goal <= {VALIDATION_GOAL_US} ({'ok' if best('new', key) <= VALIDATION_GOAL_US else 'OVER'})"
        print(line)


if __name__ == "__main__":
    main()
