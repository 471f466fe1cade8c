"""Engine.run_batch: workflows of one graph run in lockstep; shared nodes run
once, batched nodes once per batch, and each job keeps its own result, events
and errors."""

from pathlib import Path

import pytest

from lcmgraph import (
    Engine,
    EngineConfig,
    NodeFailed,
    RunControl,
    RunInterrupted,
    RunRequest,
    RunResult,
    WorkflowInvalid,
)
from lcmgraph import workflow as wf
from lcmgraph.batch import batch_signature, graph_signature
from tests.helpers import PACKS, doc, file_engine, link

BATCH_PACK = Path(__file__).parent / "batch_pack"


def make_engine(tmp_path):
    return Engine(EngineConfig(plugin_dirs=[PACKS, BATCH_PACK], plugins_from_env=False, home=tmp_path / "home",
                               models_dir=tmp_path / "models", output_dir=tmp_path / "out"))


@pytest.fixture
def engine(tmp_path):
    return make_engine(tmp_path)


def calls(engine):
    return engine.service("batchtest.calls")


def job(value, factor=2.0, steps=1, label=""):
    return doc({
        "c": ("Constant", {"value": value}),
        "d": ("Double", {"x": link("c", "value"), "factor": factor, "steps": steps}),
        "out": ("Collect", {"value": link("d", "y"), "label": label}),
    })


def requests(docs, **kw):
    sinks = [[] for _ in docs]
    reqs = [RunRequest(d, sink=s.append, run_id=f"job{i}", **kw)
            for i, (d, s) in enumerate(zip(docs, sinks, strict=True))]
    return reqs, sinks


def test_three_jobs_share_one_batched_call_and_equal_their_single_runs(engine, tmp_path):
    reqs, sinks = requests([job(1), job(2), job(3)])
    outcomes = engine.run_batch(reqs)
    assert [o.outputs for o in outcomes] == [{"out": {"values": [2.0]}}, {"out": {"values": [4.0]}},
                                             {"out": {"values": [6.0]}}]
    assert calls(engine) == [("batch", [1.0, 2.0, 3.0])]
    for index, (outcome, events) in enumerate(zip(outcomes, sinks, strict=True)):
        assert isinstance(outcome, RunResult) and outcome.run_id == f"job{index}"
        assert outcome.executed == ["c", "d", "out"]
        assert {e.run_id for e in events} == {f"job{index}"}
        kinds = [(e.kind, e.node) for e in events]
        assert kinds[0] == ("run_start", None) and kinds[-1] == ("run_done", None)
        assert [e.data for e in events if e.kind == "node_progress"] == [{"step": 1, "total": 1}]
        assert [e.preview for e in events if e.kind == "node_progress"] == [f"preview of {index + 1.0}"]
        done = {e.node: e.data for e in events if e.kind == "node_done"}
        assert done["d"]["batch"] == 3 and "batch" not in done["c"] and "batch" not in done["out"]
        starts = [(e.node, e.data) for e in events if e.kind == "node_start"]
        assert starts == [("c", {"index": 0, "total": 3}), ("d", {"index": 1, "total": 3}),
                          ("out", {"index": 2, "total": 3})]
    # every job's values went to the cache: a single run of the second finds them
    alone = engine.run(job(2))
    assert alone.cached == ["d"] and alone.outputs == {"out": {"values": [4.0]}}
    fresh = make_engine(tmp_path / "fresh")
    assert fresh.run(job(3)).outputs == outcomes[2].outputs


def test_jobs_with_equal_inputs_share_one_entry(engine):
    reqs, sinks = requests([job(5), job(7), job(5, label="again")])
    outcomes = engine.run_batch(reqs)
    assert [o.outputs["out"]["values"] for o in outcomes] == [[10.0], [14.0], [10.0]]
    # jobs 0 and 2 have the same key at "c" and "d": one entry for both
    assert calls(engine) == [("batch", [5.0, 7.0])]
    assert [e.data["batch"] for e in sinks[2] if e.kind == "node_done" and e.node == "c"] == [2]


def test_a_refused_batch_runs_per_job(engine):
    reqs, _ = requests([job(1, factor=2.0), job(2, factor=3.0)])
    outcomes = engine.run_batch(reqs)
    assert [o.outputs["out"]["values"] for o in outcomes] == [[2.0], [6.0]]
    assert calls(engine) == [("refused", [1.0, 2.0]), ("execute", 1.0), ("execute", 2.0)]


def test_a_failing_batch_falls_back_and_the_bad_job_fails_alone(engine, caplog):
    reqs, sinks = requests([job(1), job(-1), job(3)])
    outcomes = engine.run_batch(reqs)
    assert calls(engine) == [("batch", [1.0, -1.0, 3.0]), ("execute", 1.0), ("execute", -1.0), ("execute", 3.0)]
    assert outcomes[0].outputs == {"out": {"values": [2.0]}}
    assert outcomes[2].outputs == {"out": {"values": [6.0]}}
    failed = outcomes[1]
    assert isinstance(failed, NodeFailed)
    assert str(failed) == "node 'd' (Double) failed: x must not be negative, got -1.0"
    assert [(e.kind, e.node) for e in sinks[1]][-2:] == [("node_error", "d"), ("run_error", "d")]
    assert sinks[0][-1].kind == "run_done" and sinks[2][-1].kind == "run_done"
    assert ("node 'd' (Double): the batched call for 3 inputs failed (ValueError: a negative x in the batch); "
            "running them one by one") in caplog.text


def test_invalid_and_other_graphs_do_not_stop_the_batch(engine):
    other = doc({"c": ("Constant", {"value": 4}), "out": ("Collect", {"value": link("c", "value")})})
    bad = job(1, factor=99)
    reqs, sinks = requests([job(1), bad, other, job(2)])
    outcomes = engine.run_batch(reqs)
    assert isinstance(outcomes[1], WorkflowInvalid)
    assert str(outcomes[1]) == "the workflow has 1 problem:\n  - node 'd' input 'factor': 99 is above the maximum 10"
    assert sinks[1] == []  # refused before running, as engine.run would
    assert outcomes[2].outputs == {"out": {"values": [4.0]}}
    assert [outcomes[0].outputs["out"]["values"], outcomes[3].outputs["out"]["values"]] == [[2.0], [4.0]]
    assert calls(engine) == [("batch", [1.0, 2.0])]


def test_an_interrupted_job_stops_and_the_others_finish(engine):
    controls = [RunControl() for _ in range(3)]
    docs = [job(1, steps=3), job(2, steps=3), job(3, steps=3)]
    sinks = [[] for _ in docs]

    def stop_second(event):
        sinks[1].append(event)
        if event.kind == "node_progress" and event.data["step"] == 1:
            controls[1].interrupt()  # mid-batch: the batched call goes on for the others

    own = [sinks[0].append, stop_second, sinks[2].append]
    reqs = [RunRequest(d, sink=s, control=c, run_id=f"job{i}")
            for i, (d, s, c) in enumerate(zip(docs, own, controls, strict=True))]
    outcomes = engine.run_batch(reqs)
    assert isinstance(outcomes[1], RunInterrupted) and outcomes[1].node_id == "d"
    assert str(outcomes[1]) == "the run was interrupted during node 'd'"
    assert sinks[1][-1].kind == "interrupted" and sinks[1][-1].node == "d"
    assert [o.outputs["out"]["values"] for o in (outcomes[0], outcomes[2])] == [[2.0], [6.0]]
    assert calls(engine) == [("batch", [1.0, 2.0, 3.0])]


def test_a_batched_call_stops_when_every_job_is_interrupted(engine):
    controls = [RunControl() for _ in range(2)]

    def stop_all(event):
        if event.kind == "node_progress" and event.data["step"] == 2:
            for control in controls:
                control.interrupt()

    reqs = [RunRequest(job(v, steps=5), sink=stop_all, control=c) for v, c in zip((1, 2), controls, strict=True)]
    outcomes = engine.run_batch(reqs)
    assert [type(o) for o in outcomes] == [RunInterrupted, RunInterrupted]
    assert [o.node_id for o in outcomes] == ["d", "d"]


def test_signatures(engine):
    def parsed(document):
        workflow, problems = wf.parse(document)
        assert problems == []
        return workflow

    reg = engine.registry
    a, c = parsed(job(1)), parsed(job(1, factor=3.0))
    assert graph_signature(a, ["out"]) == graph_signature(c, ["out"])
    assert graph_signature(a, ["out"]) != graph_signature(a, [])
    rewired = parsed(doc({"c": ("Constant", {"value": 1}), "d": ("Double", {"x": 1.0}),
                          "out": ("Collect", {"value": link("d", "y")})}))
    assert graph_signature(a, ["out"]) != graph_signature(rewired, ["out"])
    # Constant and Collect declare no batch_inputs (anything may differ); Double's factor must match
    pa, pb, pc = engine.prepare(job(1)), engine.prepare(job(2, label="x")), engine.prepare(job(1, factor=3.0))
    assert batch_signature(pa, reg) == batch_signature(pb, reg)
    assert batch_signature(pa, reg) != batch_signature(pc, reg)
    # a default left out equals the same value written out
    implicit = job(1)
    del implicit["nodes"]["d"]["inputs"]["factor"]
    assert batch_signature(pa, reg) == batch_signature(engine.prepare(implicit), reg)


def _sequence(events):
    """A job's events without timings, batch counts and previews (the test pack's
    batched hook draws previews, its execute does not): what must not depend on batching."""
    skip = {"seconds", "batch"}
    return [(e.kind, e.run_id, e.node, e.node_type, {k: v for k, v in e.data.items() if k not in skip})
            for e in events]


def test_a_job_sees_the_same_events_alone_and_in_a_batch_of_three(tmp_path):
    alone_events = []
    make_engine(tmp_path / "alone").run(job(2), sink=alone_events.append, run_id="job1")
    reqs, sinks = requests([job(1), job(2), job(3)])
    make_engine(tmp_path / "batched").run_batch(reqs)
    assert _sequence(sinks[1]) == _sequence(alone_events)
    # and the three jobs' sequences differ only in their values
    kinds = [[(e.kind, e.node) for e in s] for s in sinks]
    assert kinds[0] == kinds[1] == kinds[2] == [(e.kind, e.node) for e in alone_events]
    assert [k for k, _ in kinds[0]] == ["run_start", "node_start", "node_done", "node_start", "node_progress",
                                        "node_done", "node_start", "node_output", "node_done", "run_done"]


def test_a_prepared_run_is_not_parsed_or_validated_again(engine, monkeypatch):
    import lcmgraph.prepare

    prepared = engine.prepare(job(4))
    assert prepared.outputs == ("out",) and prepared.order == ("c", "d", "out")

    def refuse(*args, **kwargs):
        raise AssertionError("validated again")

    monkeypatch.setattr(lcmgraph.prepare, "validate", refuse)
    monkeypatch.setattr(lcmgraph.prepare.wf, "parse", refuse)
    assert engine.run(prepared).outputs == {"out": {"values": [8.0]}}
    outcomes = engine.run_batch([RunRequest(prepared), RunRequest(prepared)])
    assert [o.outputs for o in outcomes] == [{"out": {"values": [8.0]}}] * 2


def test_a_prepared_run_whose_file_went_away_is_refused_naming_it(tmp_path):
    engine = file_engine(tmp_path)
    (tmp_path / "input" / "a.txt").write_text("one")
    prepared = engine.prepare(doc({"r": ("ReadText", {"name": "a.txt"}), "s": ("Show", {"text": link("r", "text")})}))
    (tmp_path / "input" / "a.txt").unlink()
    [outcome] = engine.run_batch([RunRequest(prepared)])
    assert isinstance(outcome, WorkflowInvalid)
    assert [(p.node, p.input, p.code) for p in outcome.problems] == [("r", "name", "missing_file")]
    assert "'a.txt' was not found in the input folder" in str(outcome)
