"""``lcmgraph import-comfy`` / ``export-comfy`` handlers (lcmgraph.comfy.cli)."""

from __future__ import annotations

import argparse
import json

import pytest

from lcmgraph.comfy import ComfyImportError, load_any, to_api
from lcmgraph.comfy.cli import COMMANDS, add_comfy_parsers

from .helpers import PACKS, WORKFLOWS, load


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lcmgraph")
    add_comfy_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--plugins", str(PACKS[0])])
    return COMMANDS[args.command](args)


def test_import_writes_the_converted_workflow_and_prints_notes(registry, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert _run("import-comfy", str(WORKFLOWS / "ui_controlnet.json"), "-o", str(out)) == 0
    assert json.loads(out.read_text()) == load_any(load("ui_controlnet.json"), registry)
    err = capsys.readouterr().err
    assert err == (f"note: node 14 (ControlNetApply): ComfyUI's ControlNetApply hints the positive prompt only; "
                   f"lcmgraph hints both halves of the CFG batch (as ControlNetApplyAdvanced does), so images "
                   f"differ when cfg > 1\nwrote {out}\n")


def test_import_refuses_unknown_types_unless_allowed(tmp_path, capsys):
    api = load("api_txt2img.json")
    api["20"] = {"class_type": "FaceDetailer", "inputs": {"image": ["8", 0]}}
    path = tmp_path / "comfy.json"
    path.write_text(json.dumps(api))
    with pytest.raises(ComfyImportError, match="node 20: ComfyUI node type 'FaceDetailer' has no lcmgraph equivalent"):
        _run("import-comfy", str(path))
    assert _run("import-comfy", str(path), "--allow-missing") == 0
    assert json.loads(capsys.readouterr().out)["nodes"]["20"]["type"] == "comfy:FaceDetailer"


def test_export_prints_the_api_prompt(registry, capsys):
    path = WORKFLOWS.parents[2] / "workflows" / "txt2img_lcm.json"
    assert _run("export-comfy", str(path)) == 0
    assert json.loads(capsys.readouterr().out) == to_api(json.loads(path.read_text()), registry)
