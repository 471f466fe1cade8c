"""The content-keyed cache: what re-runs and what does not."""

import subprocess
import sys

import pytest

from tests.helpers import PACKS, doc, file_engine, link, make_engine


def graph(value=3, factor=2, b=1, label=""):
    return doc({
        "c": ("Constant", {"value": value}),
        "s": ("Scale", {"x": link("c", "value"), "factor": factor}),
        "a": ("Add", {"a": link("s", "y"), "b": b}),
        "out": ("Collect", {"value": link("a", "sum"), "label": label}),
    })


def test_identical_rerun_executes_no_non_output_node(engine):
    first = engine.run(graph())
    assert first.executed == ["c", "s", "a", "out"]
    second = engine.run(graph())
    assert second.executed == ["out"]
    # the walk stops at the first cached node: its ancestors are not even looked up
    assert second.cached == ["a"]
    assert second.outputs == first.outputs


def test_changing_one_literal_reruns_exactly_that_node_and_descendants(engine):
    engine.run(graph())
    result = engine.run(graph(factor=3))
    assert result.executed == ["s", "a", "out"]
    assert result.cached == ["c"]
    assert result.outputs["out"] == {"values": [10.0]}
    result = engine.run(graph(factor=3, b=5))
    assert result.executed == ["a", "out"]


def test_defaults_and_explicit_values_share_a_key(engine):
    engine.run(graph(factor=2.0))  # 2.0 == the default and == 2
    result = engine.run(graph(factor=2))
    assert result.executed == ["out"]


def test_shared_prefix_is_reused_across_workflows(engine):
    engine.run(graph())
    other = doc({
        "k": ("Constant", {"value": 3}),          # different id, same content
        "x": ("Scale", {"x": link("k", "value"), "factor": 2}),
        "t": ("Add", {"a": link("x", "y"), "b": 100}),
        "o": ("Collect", {"value": link("t", "sum")}),
    })
    result = engine.run(other)
    assert result.cached == ["x"]
    assert result.executed == ["t", "o"]


def test_non_cacheable_node_and_its_descendants_rerun(engine):
    d = doc({"n": ("Noise", {}), "a": ("Add", {"a": link("n", "value")}),
             "out": ("Collect", {"value": link("a", "sum")})})
    engine.run(d)
    assert engine.run(d).executed == ["n", "a", "out"]


def test_eviction_respects_the_byte_budget(tmp_path):
    budget = 3 * 4096 * 4 + 100  # room for three 4096-float tensors
    engine = make_engine(tmp_path, cache_bytes=budget)
    keys = []
    for i in range(6):
        result = engine.run(doc({"t": ("MakeTensor", {"value": i, "size": 4096}),
                                 "s": ("TensorSum", {"tensor": link("t", "tensor")}),
                                 "out": ("Collect", {"value": link("s", "total")})}))
        keys.append(result.keys["t"])
        assert engine.cache.memory.bytes_used <= budget
    assert engine.cache.stats.evictions >= 3
    # least recently used go first: the last three tensors are still cached
    assert [k in engine.cache.memory for k in keys] == [False, False, False, True, True, True]
    again = engine.run(doc({"t": ("MakeTensor", {"value": 0, "size": 4096}),
                            "out": ("Collect", {"value": 1})}, outputs=["out"]))
    assert again.executed == ["out"]  # "t" is not needed by the output, so not run


def test_value_larger_than_budget_is_not_cached(tmp_path):
    engine = make_engine(tmp_path, cache_bytes=1000)
    d = doc({"t": ("MakeTensor", {"value": 1, "size": 4096}), "s": ("TensorSum", {"tensor": link("t", "tensor")}),
             "out": ("Collect", {"value": link("s", "total")})})
    assert engine.run(d).outputs["out"] == {"values": [4096.0]}
    assert engine.cache.memory.bytes_used <= 1000


def test_file_inputs_are_keyed_by_file_identity(tmp_path):
    engine = file_engine(tmp_path)
    f = tmp_path / "input" / "a.txt"
    f.write_text("one")
    d = doc({"r": ("ReadText", {"name": "a.txt"}), "s": ("Show", {"text": link("r", "text")})})
    assert engine.run(d).outputs["s"] == {"text": ["one"]}
    assert engine.run(d).executed == ["s"]
    f.write_text("two!")
    result = engine.run(d)
    assert result.executed == ["r", "s"] and result.outputs["s"] == {"text": ["two!"]}
    problems = engine.validate(doc({"r": ("ReadText", {"name": "../secret"}), "s": ("Show", {"text": link("r", "text")})}))
    assert [str(p) for p in problems] == ["node 'r' input 'name': '../secret': '..' is not allowed in file names"]


SECOND_PROCESS = r"""
import json, sys
sys.path.insert(0, {root!r})
from tests.helpers import make_engine, doc, link
from pathlib import Path
engine = make_engine(Path({tmp!r}), cache_dir={cache!r})
d = doc({{"t": ("MakeTensor", {{"value": 2, "size": 1000}}),
          "s": ("TensorSum", {{"tensor": link("t", "tensor")}}),
          "out": ("Collect", {{"value": link("s", "total")}})}})
r = engine.run(d)
print(json.dumps({{"executed": r.executed, "cached": r.cached, "outputs": r.outputs}}))
"""


def test_disk_tier_is_shared_with_a_second_process(tmp_path):
    cache = str(tmp_path / "disk-cache")
    script = SECOND_PROCESS.format(root=str(PACKS.parent.parent), tmp=str(tmp_path), cache=cache)
    import json

    runs = [json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    assert runs[0]["executed"] == ["t", "s", "out"]
    assert runs[1]["executed"] == ["out"] and runs[1]["cached"] == ["s"]
    assert runs[0]["outputs"] == runs[1]["outputs"] == {"out": {"values": [2000.0]}}


def test_disk_tier_round_trips_tensors(tmp_path):
    engine = make_engine(tmp_path, cache_dir=tmp_path / "dc")
    d = doc({"t": ("MakeTensor", {"value": 4, "size": 10}), "s": ("TensorSum", {"tensor": link("t", "tensor")}),
             "out": ("Collect", {"value": link("s", "total")})})
    engine.run(d)
    fresh = make_engine(tmp_path, cache_dir=tmp_path / "dc")
    key = engine.run(d).keys["t"]
    value = fresh.cache.get(key)
    assert value["tensor"].tolist() == [4.0] * 10
    assert fresh.cache.stats.disk_hits == 1


# -- keys per output value ---------------------------------------------------------

def pair_workflow(a: float, b: float) -> dict:
    return doc({
        "c": ("Constant", {"value": a}),
        "p": ("Pair", {"a": link("c", "value"), "b": b}),
        "s1": ("Scale", {"x": link("p", "first"), "factor": 3}),
        "s2": ("Scale", {"x": link("p", "sum"), "factor": 3}),
        "o1": ("Collect", {"value": link("s1", "y")}),
        "o2": ("Collect", {"value": link("s2", "y")}),
    })


def test_an_output_keyed_by_its_declared_inputs_survives_a_change_elsewhere(engine):
    first = engine.run(pair_workflow(1, 2))
    assert first.outputs == {"o1": {"values": [3.0]}, "o2": {"values": [9.0]}}
    # b changes: Pair re-runs, and so does what uses its "sum"; "first" depends only
    # on a, so the Scale fed by it keeps its key and comes from the cache
    second = engine.run(pair_workflow(1, 5))
    assert second.executed == ["p", "s2", "o1", "o2"]
    assert sorted(second.cached) == ["c", "s1"]
    assert second.outputs == {"o1": {"values": [3.0]}, "o2": {"values": [18.0]}}
    assert second.keys["s1"] == first.keys["s1"] and second.keys["s2"] != first.keys["s2"]
    # a declared input that does change still changes the key
    third = engine.run(pair_workflow(2, 5))
    assert third.executed == ["c", "p", "s1", "s2", "o1", "o2"]
    assert third.outputs["o1"] == {"values": [6.0]}


def test_depends_on_must_name_declared_inputs():
    from lcmgraph import Input, Node, Output
    from lcmgraph import types as T

    with pytest.raises(ValueError, match="output 'y' depends on unknown input"):
        class Broken(Node):  # noqa: F841 - declaring it is the test
            inputs = (Input("x", T.FLOAT),)
            outputs = (Output("y", T.FLOAT, depends_on=("nope",)),)

            def execute(self, ctx, x):
                return {"y": x}
