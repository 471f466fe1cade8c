"""The lcmgraph command line: exit codes, messages, overrides, event stream."""

import json
import os
import subprocess
import sys

from tests.helpers import PACKS, doc, link

GOOD = doc({
    "c": ("Constant", {"value": 3}),
    "s": ("Scale", {"x": link("c", "value")}),
    "out": ("Collect", {"value": link("s", "y")}),
})


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lcmgraph", *args], capture_output=True, text=True, cwd=cwd)


def write(tmp_path, document, name="wf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return str(path)


def test_run_ok_with_json_events_and_set(tmp_path):
    wf = write(tmp_path, GOOD)
    proc = cli("run", wf, "--plugins", str(PACKS), "--json-events", "--set", "c.value=5", "--set", "s.mode=\"pow\"",
               "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events][0] == "run_start"
    done = events[-1]
    assert done["event"] == "run_done" and done["outputs"] == {"out": {"values": [25.0]}}


def test_run_human_output(tmp_path):
    proc = cli("run", write(tmp_path, GOOD), "--plugins", str(PACKS), "--out", str(tmp_path))
    assert proc.returncode == 0
    assert "running 3 node(s)" in proc.stderr and "done in" in proc.stderr


def test_quiet(tmp_path):
    proc = cli("run", write(tmp_path, GOOD), "--plugins", str(PACKS), "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""


def test_validate_exit_codes_and_messages(tmp_path):
    assert cli("validate", write(tmp_path, GOOD), "--plugins", str(PACKS)).returncode == 0
    bad = doc({"c": ("Constant", {"value": 1e9}), "out": ("Collect", {"value": link("c", "nope")})})
    proc = cli("validate", write(tmp_path, bad), "--plugins", str(PACKS))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "the workflow has 2 problems:",
        "  - node 'c' input 'value': 1000000000.0 is above the maximum 1000000",
        "  - node 'out' input 'value': links to output 'nope' of node 'c' (Constant), which has no such output (its outputs: value)",
    ]
    proc = cli("validate", write(tmp_path, bad), "--plugins", str(PACKS), "--json")
    assert proc.returncode == 2
    assert [p["node"] for p in json.loads(proc.stdout)["problems"]] == ["c", "out"]


def test_run_refuses_invalid_workflow_with_exit_2(tmp_path):
    bad = doc({"x": ("Unknown", {}), "out": ("Collect", {"value": 1})})
    proc = cli("run", write(tmp_path, bad), "--plugins", str(PACKS), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "node 'x': unknown node type 'Unknown'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_json_and_missing_file(tmp_path):
    proc = cli("run", write(tmp_path, '{"nodes": {,}}'))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'wf.json'}: malformed JSON at line 1, column 12: Expecting property name enclosed in double quotes"
    proc = cli("run", str(tmp_path / "missing.json"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.json'}: no such file"


def test_bad_set_is_a_usage_error(tmp_path):
    proc = cli("run", write(tmp_path, GOOD), "--plugins", str(PACKS), "--set", "ghost.value=1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --set ghost.value: the workflow has no node 'ghost'"
    proc = cli("run", write(tmp_path, GOOD), "--plugins", str(PACKS), "--set", "novalue")
    assert proc.returncode == 2 and "expected NODE.INPUT=VALUE" in proc.stderr


def test_node_failure_exit_1_one_paragraph_traceback_with_debug(tmp_path):
    failing = doc({"c": ("Constant", {}), "f": ("Fail", {"x": link("c", "value"), "message": "no VRAM left"}),
                   "out": ("Collect", {"value": link("f", "y")})})
    wf = write(tmp_path, failing)
    proc = cli("run", wf, "--plugins", str(PACKS), "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["error: node 'f' (Fail) failed: no VRAM left", "(run with --debug for the traceback)"]
    proc = cli("run", wf, "--plugins", str(PACKS), "--out", str(tmp_path), "--quiet", "--debug")
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


def test_nodes_json_is_the_registry_schema(tmp_path):
    proc = cli("nodes", "--json", "--plugins", str(PACKS))
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    scale = schema["nodes"]["Scale"]
    assert scale["pack"] == "mathpack" and scale["category"] == "test"
    assert scale["inputs"][1] == {"name": "factor", "type": "FLOAT", "default": 2.0, "required": False,
                                  "widget": True, "min": 0.0, "max": 10.0}
    assert scale["inputs"][3]["choices"] == ["mul", "pow"]
    assert scale["outputs"] == [{"name": "y", "type": "FLOAT"}]
    assert schema["nodes"]["Collect"]["output_node"] is True


def test_usage_error_exit_2():
    assert cli("frobnicate").returncode == 2
    assert cli("run").returncode == 2


def test_sweep_runs_every_combination_and_writes_a_grid(tmp_path):
    from PIL import Image

    sweepable = doc({
        "c": ("Constant", {"value": 10}),
        "s": ("Scale", {"x": link("c", "value"), "factor": 1}),
        "img": ("SolidImage", {"value": link("s", "y")}),
    })
    grid = tmp_path / "grid.png"
    proc = cli("run", write(tmp_path, sweepable), "--plugins", str(PACKS), "--out", str(tmp_path / "o"),
               "--sweep", "s.factor=1,2,3", "--sweep", "c.value=10,20", "--grid", str(grid))
    assert proc.returncode == 0, proc.stderr
    wrote = [line for line in proc.stdout.splitlines() if "wrote solid" in line or "wrote " in line]
    assert len(wrote) == 7  # six variants + the grid
    assert "s.factor=3 c.value=20: wrote" in proc.stdout
    # the Constant is computed once per value: the other variants take it from the cache
    assert proc.stderr.count("from cache") >= 4
    with Image.open(grid) as im:
        assert im.size == (2 * 256, 3 * (256 + 18))
        # row 3 (factor=3), column 2 (value=20): grey level 60
        assert im.getpixel((256 + 128, 2 * 274 + 18 + 128)) == (60, 60, 60)


def test_grid_without_sweep_is_a_usage_error(tmp_path):
    proc = cli("run", write(tmp_path, GOOD), "--plugins", str(PACKS), "--grid", str(tmp_path / "g.png"))
    assert proc.returncode == 2 and "--grid needs at least one --sweep" in proc.stderr


def test_threads_default_to_the_physical_cores_and_are_checked(capsys):
    import torch

    from lcmgraph.cli import build_parser, main
    from lcmgraph.model_flags import apply_threads, physical_cores

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    assert main(["run", "workflow.json", "--threads", "0"]) == 2
    assert "expected a whole number of threads above 0, got '0'" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        assert apply_threads(build_parser().parse_args(["run", "w.json", "--threads", "1"])) == 1
        assert torch.get_num_threads() == 1
        assert apply_threads(build_parser().parse_args(["serve"])) == physical_cores()
    finally:
        torch.set_num_threads(before)
