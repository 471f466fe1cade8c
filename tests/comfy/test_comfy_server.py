"""The server converts ComfyUI workflows on submit and offers import/export endpoints."""

import json
from pathlib import Path

from lcmgraph import Engine, EngineConfig
from tests.server.harness import serve

WORKFLOWS = Path(__file__).parent / "workflows"


def _engine(tmp_path):
    return Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models"))


def test_import_export_and_validate_over_http(tmp_path):
    comfy = json.loads((WORKFLOWS / "api_txt2img.json").read_text())

    async def body(h):
        _, imported = await h.call("POST", "/api/comfy/import", 200, json={"workflow": comfy})
        converted = imported["workflow"]
        assert converted["format"] == "lcmgraph.workflow"
        assert {n["type"] for n in converted["nodes"].values()} >= {"LoadCheckpoint", "TextEncode", "VAEDecode"}
        _, exported = await h.call("POST", "/api/comfy/export", 200, json={"workflow": converted})
        assert {n["class_type"] for n in exported["prompt"].values()} >= {"CheckpointLoaderSimple", "KSampler"}
        # submit/validate take the ComfyUI document directly (the missing checkpoint file is the only problem)
        status, checked = await h.call("POST", "/api/validate", json={"workflow": comfy})
        assert status == 200
        assert [p["code"] for p in checked["problems"]] == ["missing_file"]
        unknown = {"1": {"class_type": "FancyUpscaler", "inputs": {}}}
        status, refused = await h.call("POST", "/api/comfy/import", json={"workflow": unknown})
        assert status == 400 and refused["error"] == "comfy_import"
        assert "FancyUpscaler" in refused["message"] and refused["problems"]

    serve(tmp_path, body, engine=_engine(tmp_path))
