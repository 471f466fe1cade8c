"""Workflow format v1: its JSON Schema, links vs literals, round trips, PNG embedding."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from lcmgraph import workflow as wf
from lcmgraph.pngmeta import pnginfo
from tests.helpers import doc, link

ROOT = Path(__file__).parent.parent


def schema():
    return json.loads(subprocess.run([sys.executable, "-m", "lcmgraph", "schema"], capture_output=True,
                                     text=True, check=True).stdout)


def test_schema_command_prints_a_valid_json_schema():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert s == wf.json_schema()


def test_bundled_workflows_match_the_schema():
    validator = jsonschema.Draft202012Validator(schema())
    files = sorted((ROOT / "workflows").glob("*.json")) + sorted((ROOT / "workflows").glob("fewstep/*.json"))
    assert files, "workflows/ has example workflows"
    for path in files:
        errors = list(validator.iter_errors(json.loads(path.read_text())))
        assert errors == [], f"{path.name}: {errors[0].message}"


def test_schema_rejects_what_the_parser_rejects():
    validator = jsonschema.Draft202012Validator(schema())
    bad = [
        {"nodes": {"a": {"type": "X", "inputs": {"v": {"node": "b"}}}}},  # bare object literal
        {"nodes": {"a": {"type": "X", "inputs": {"v": {"link": ["b"]}}}}},  # short link
        {"nodes": {"a": {"inputs": {}}}},  # no type
        {"nodes": {}, "extra": 1},
    ]
    for document in bad:
        assert list(validator.iter_errors(document)), document
        _, problems = wf.parse(document)
        assert problems, document


def test_round_trip_preserves_links_literals_and_ui():
    document = doc({
        "c": ("Constant", {"value": 3}),
        "out": ("Collect", {"value": link("c", "value"), "label": "c.value"}),
        "j": ("Whatever", {"options": {"value": {"link": "not a link"}}, "list": [1, 2]}),
    }, outputs=["out"], ui={"nodes": {"c": {"pos": [10, 20]}}})
    parsed, problems = wf.parse(document)
    assert problems == []
    assert parsed.nodes["out"].inputs["value"] == wf.Link("c", "value")
    assert parsed.nodes["out"].inputs["label"] == "c.value"
    assert parsed.nodes["j"].inputs["options"] == {"link": "not a link"}
    assert parsed.to_json() == document


def test_overrides_parse_json_scalars():
    assert wf.parse_assignment("s.steps=8") == ("s.steps", 8)
    assert wf.parse_assignment("s.cfg=1.5") == ("s.cfg", 1.5)
    assert wf.parse_assignment("p.text=a red circle") == ("p.text", "a red circle")
    assert wf.parse_assignment("n.flag=true") == ("n.flag", True)
    assert wf.parse_assignment("node.with.dots.input=1") == ("node.with.dots.input", 1)


def test_png_with_embedded_workflow_can_be_read_back(tmp_path):
    from PIL import Image

    document = doc({"c": ("Constant", {"value": 2}), "out": ("Collect", {"value": link("c", "value"),
                                                                        "label": "ünïcode ✓"})})
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=pnginfo(document, {"seed": 1}))
    assert wf.read_file(path) == document
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    try:
        wf.read_file(plain)
    except wf.WorkflowFileError as exc:
        assert str(exc) == f"{plain}: this PNG has no embedded workflow"
    else:
        raise AssertionError("expected WorkflowFileError")
