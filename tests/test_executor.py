"""Execution order, pruning, events, errors and interruption."""

import threading

import pytest

from lcmgraph import NodeFailed, RunControl, RunInterrupted
from tests.helpers import doc, link, make_engine


def chain():
    return doc({
        "c": ("Constant", {"value": 3}),
        "s": ("Scale", {"x": link("c", "value"), "factor": 2}),
        "a": ("Add", {"a": link("s", "y"), "b": 1}),
        "out": ("Collect", {"value": link("a", "sum")}),
        # a branch no output needs: must never run
        "unused": ("Fail", {"x": link("c", "value")}),
    })


def test_runs_what_outputs_need_in_order(engine):
    result = engine.run(chain())
    assert result.executed == ["c", "s", "a", "out"]
    assert result.outputs == {"out": {"values": [7.0]}}


def test_outputs_can_be_selected(engine):
    d = doc({
        "c": ("Constant", {"value": 3}),
        "o1": ("Collect", {"value": link("c", "value")}),
        "f": ("Fail", {"x": link("c", "value")}),
        "o2": ("Collect", {"value": link("f", "y")}),
    })
    result = engine.run(d, outputs=["o1"])
    assert result.executed == ["c", "o1"]


def test_events_sequence(engine):
    events = []
    engine.run(chain(), sink=events.append)
    kinds = [(e.kind, e.node) for e in events]
    assert kinds[0] == ("run_start", None)
    assert kinds[-1] == ("run_done", None)
    assert ("node_start", "s") in kinds and ("node_done", "s") in kinds
    assert kinds.index(("node_done", "c")) < kinds.index(("node_start", "s"))
    assert ("node_output", "out") in kinds
    assert events[0].to_json()["to_run"] == ["c", "s", "a", "out"]


def test_progress_events(engine):
    d = doc({"c": ("Constant", {}), "w": ("Slow", {"x": link("c", "value"), "steps": 3, "delay": 0}),
             "out": ("Collect", {"value": link("w", "y")})})
    events = []
    engine.run(d, sink=events.append)
    steps = [(e.data["step"], e.data["total"]) for e in events if e.kind == "node_progress"]
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_node_error_names_node_and_engine_survives(engine):
    d = doc({"c": ("Constant", {}), "f": ("Fail", {"x": link("c", "value"), "message": "kaput"}),
             "out": ("Collect", {"value": link("f", "y")})})
    events = []
    with pytest.raises(NodeFailed) as info:
        engine.run(d, sink=events.append)
    assert str(info.value) == "node 'f' (Fail) failed: kaput"
    assert info.value.node_id == "f" and "RuntimeError: kaput" in info.value.traceback
    err = [e for e in events if e.kind == "node_error"][0]
    assert err.node == "f" and err.data["exception"] == "RuntimeError"
    assert events[-1].kind == "run_error"
    # the engine is still usable, and what ran before the failure is cached
    result = engine.run(doc({"c": ("Constant", {}), "out": ("Collect", {"value": link("c", "value")})}))
    assert result.outputs == {"out": {"values": [1.0]}}
    assert result.cached == ["c"]


def test_interrupt_between_steps(engine):
    d = doc({"c": ("Constant", {}), "w": ("Slow", {"x": link("c", "value"), "steps": 500, "delay": 0.01}),
             "out": ("Collect", {"value": link("w", "y")})})
    control = RunControl()
    events = []

    def sink(event):
        events.append(event)
        if event.kind == "node_progress" and event.data["step"] == 3:
            control.interrupt()

    with pytest.raises(RunInterrupted) as info:
        engine.run(d, sink=sink, control=control)
    assert info.value.node_id == "w"
    assert events[-1].kind == "interrupted"
    assert max(e.data["step"] for e in events if e.kind == "node_progress") == 3
    # not left half-done: the next run works and the slow node was not cached
    result = engine.run(doc({"c": ("Constant", {}), "out": ("Collect", {"value": link("c", "value")})}))
    assert result.outputs["out"] == {"values": [1.0]}


def test_interrupt_from_another_thread(engine):
    d = doc({"c": ("Constant", {}), "w": ("Slow", {"x": link("c", "value"), "steps": 1000, "delay": 0.005}),
             "out": ("Collect", {"value": link("w", "y")})})
    control = RunControl()
    threading.Timer(0.1, control.interrupt).start()
    with pytest.raises(RunInterrupted):
        engine.run(d, control=control)


def test_two_engines_do_not_share_state(tmp_path):
    e1 = make_engine(tmp_path / "1")
    e2 = make_engine(tmp_path / "2")
    e1.run(chain())
    assert len(e1.cache.memory) > 0 and len(e2.cache.memory) == 0
    result = e2.run(chain())
    assert result.cached == []
    assert e1.registry is not e2.registry
