"""Validation reports every problem at once, each naming node, input and what is wrong."""

from lcmgraph import WorkflowInvalid
from tests.helpers import doc, link


def problems(engine, document):
    return [str(p) for p in engine.validate(document)]


def test_valid_workflow_has_no_problems(engine):
    d = doc({"c": ("Constant", {"value": 2}), "out": ("Collect", {"value": link("c", "value")})})
    assert engine.validate(d) == []


def test_all_problems_are_reported_at_once(engine):
    d = doc({
        "a": ("Constant", {"value": "two"}),
        "b": ("Frobnicate", {}),
        "s": ("Scale", {"x": link("a", "value"), "factor": 11, "repeat": 2.5, "mode": "div", "colour": 1}),
        "m": ("Add", {}),
        "d": ("Add", {"a": link("ghost", "value")}),
        "e": ("Add", {"a": link("a", "missing")}),
        "t": ("TensorSum", {"tensor": link("a", "value")}),
        "l": ("TensorSum", {"tensor": 3}),
        "out": ("Collect", {"value": link("s", "y")}),
    })
    assert problems(engine, d) == [
        "node 'a' input 'value': expected a number, got the string 'two'",
        "node 'b': unknown node type 'Frobnicate'",
        "node 's' input 'factor': 11 is above the maximum 10",
        "node 's' input 'repeat': expected an integer, got 2.5",
        "node 's' input 'mode': 'div' is not one of 'mul', 'pow'",
        "node 's' input 'colour': Scale has no input 'colour' (its inputs: x, factor, repeat, mode)",
        "node 'm' input 'a': required input is missing (needs a FLOAT value)",
        "node 'd' input 'a': links to node 'ghost', which does not exist",
        "node 'e' input 'a': links to output 'missing' of node 'a' (Constant), which has no such output (its outputs: value)",
        "node 't' input 'tensor': type mismatch: expects LATENT but 'a'.value is FLOAT",
        "node 'l' input 'tensor': expects a link from a LATENT output, not a literal value",
    ]


def test_huge_integers_are_refused_by_their_size(engine):
    """JSON integers have no size limit: one with hundreds of digits is named by its size
    (Python refuses to print an integer over 4300 digits), for an INT and for a FLOAT."""
    d = doc({
        "s": ("Scale", {"x": 1.0, "factor": 10**400, "repeat": -(10**5000)}),
        "out": ("Collect", {"value": link("s", "y")}),
    })
    assert problems(engine, d) == [
        "node 's' input 'factor': expected a number, got an integer of about 401 digits: too large for a float",
        "node 's' input 'repeat': an integer of about 5001 digits is below the minimum 1",
    ]


def test_unknown_type_suggests_close_name(engine):
    d = doc({"c": ("Constnat", {}), "out": ("Collect", {"value": 1})})
    assert problems(engine, d) == ["node 'c': unknown node type 'Constnat'; did you mean 'Constant'?"]


def test_cycle_names_its_nodes(engine):
    d = doc({
        "a": ("Add", {"a": link("c", "sum")}),
        "b": ("Add", {"a": link("a", "sum")}),
        "c": ("Add", {"a": link("b", "sum")}),
        "out": ("Collect", {"value": link("c", "sum")}),
    })
    (problem,) = engine.validate(d)
    assert problem.code == "cycle"
    assert "the graph has a cycle:" in problem.message
    cycle = problem.message.split(": ", 1)[1].split(" -> ")
    assert sorted(cycle[:-1]) == ["a", "b", "c"] and cycle[0] == cycle[-1]


def test_self_loop_is_a_cycle(engine):
    d = doc({"a": ("Add", {"a": link("a", "sum")}), "out": ("Collect", {"value": link("a", "sum")})})
    assert problems(engine, d) == ["node 'a': the graph has a cycle: a -> a"]


def test_no_output_node(engine):
    d = doc({"c": ("Constant", {"value": 1})})
    assert problems(engine, d) == ["the workflow has no output node (e.g. SaveImage), so nothing would run"]


def test_requested_output_must_be_an_output_node(engine):
    d = doc({"c": ("Constant", {}), "out": ("Collect", {"value": 1})}, outputs=["c", "zz"])
    assert problems(engine, d) == [
        "node 'c': Constant is not an output node and cannot be requested as an output",
        "node 'zz': requested output node does not exist",
    ]


def test_structural_problems(engine):
    assert problems(engine, []) == ["a workflow must be a JSON object", "the workflow has no nodes"]
    d = {"version": 7, "nodes": {"bad id!": {"type": "Constant"}, "x": {"inputs": {}}, "y": 3},
         "extra": 1}
    assert problems(engine, d) == [
        "workflow format version 7 is not supported (this lcmgraph reads 1)",
        "unknown top-level key 'extra'",
        "node 'bad id!': node ids are 1-64 characters of letters, digits, _ . : - (not starting with . : -)",
        "node 'x': a node needs a \"type\" string",
        "node 'y': a node must be an object with a \"type\"",
        "the workflow has no nodes",
    ]


def test_object_values_must_be_links_or_wrapped(engine):
    d = doc({"out": ("Collect", {"value": {"node": "a"}, "label": {"link": ["a"]}})})
    assert problems(engine, d) == [
        "node 'out' input 'value': an object input must be {\"link\": [node, output]} or {\"value\": ...}",
        "node 'out' input 'label': a link is {\"link\": [node_id, output_name]}",
        "node 'out' input 'value': required input is missing (needs a FLOAT value)",
    ]


def test_a_link_is_never_a_literal_and_vice_versa(engine):
    # A string that looks like "node.output" is just a string.
    d = doc({"c": ("Constant", {}), "out": ("Collect", {"value": link("c", "value"), "label": "c.value"})})
    assert engine.validate(d) == []
    result = engine.run(d)
    assert result.outputs["out"] == {"values": [1.0]}


def test_run_refuses_invalid_workflow_before_executing(engine):
    events = []
    d = doc({"c": ("Constant", {"value": "x"}), "out": ("Collect", {"value": link("c", "value")})})
    try:
        engine.run(d, sink=events.append)
    except WorkflowInvalid as exc:
        assert [str(p) for p in exc.problems] == ["node 'c' input 'value': expected a number, got the string 'x'"]
        assert "the workflow has 1 problem:" in str(exc)
    else:
        raise AssertionError("expected WorkflowInvalid")
    assert events == []
