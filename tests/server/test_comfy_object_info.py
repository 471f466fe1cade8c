"""ComfyUI's GET /object_info on `lcmgraph serve`: the mapped ComfyUI classes in
ComfyUI's own shape (compared with a real /object_info answer saved in a public
repository), and enough for a client to build a graph from it alone and run it."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from PIL import Image

from lcmgraph import Engine, EngineConfig
from tests.server.harness import serve

EXCERPT = json.loads((Path(__file__).parent / "data" / "comfyui_object_info_excerpt.json").read_text())
REAL = EXCERPT["classes"]
#: Top-level fields of every class in ComfyUI's answer that clients and the frontend read.
FIELDS = {"input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
          "description", "python_module", "category", "output_node"}
#: ComfyUI's widget types (a list in their place is a combo's choices).
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
OPTION_KEYS = {"default", "min", "max", "step", "round", "multiline", "dynamicPrompts", "tooltip",
               "control_after_generate", "image_upload"}


def _engine(tmp_path):
    return Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models"))


async def _json(h, path, expect=200, method="GET", **kwargs):
    status, body = await h.call(method, path, **kwargs)
    assert status == expect, (path, status, body)
    return body


def _kind(spec):
    """'combo', a widget type, or a socket type: what a client reads from an input spec."""
    return "combo" if isinstance(spec[0], list) else spec[0]


def test_object_info_has_comfyuis_shape_for_the_core_classes(tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "mine.safetensors").write_bytes(b"not read for listing")

    async def body(h):
        ours = await _json(h, "/object_info")
        assert await _json(h, "/api/object_info") == ours
        for name, real in REAL.items():
            mine = ours[name]
            assert FIELDS <= set(real) and FIELDS <= set(mine), name
            for key in ("name", "display_name", "category", "output", "output_name", "output_is_list",
                        "output_node", "python_module"):
                assert mine[key] == real[key], (name, key, mine[key], real[key])
            assert mine["input_order"]["required"] == real["input_order"]["required"], name
            assert list(mine["input"]["required"]) == mine["input_order"]["required"]
            for input_name, spec in real["input"]["required"].items():
                got = mine["input"]["required"][input_name]
                assert _kind(got) == _kind(spec), (name, input_name, got, spec)
                options = got[1] if len(got) > 1 else {}
                assert set(options) <= OPTION_KEYS, (name, input_name, options)
                if _kind(spec) in WIDGETS or _kind(spec) == "combo":
                    assert "default" in options or _kind(spec) == "combo", (name, input_name)
                if _kind(spec) in ("INT", "FLOAT"):  # lcmgraph's range lies within ComfyUI's
                    assert spec[1]["min"] <= options["min"] <= options["max"] <= spec[1]["max"], (name, input_name)
            assert await _json(h, f"/object_info/{name}") == {name: mine}
        # Choices are names ComfyUI itself offers, limited to what lcmgraph runs.
        sampling = ours["KSampler"]["input"]["required"]
        for widget in ("sampler_name", "scheduler"):
            offered, real_choices = sampling[widget][0], REAL["KSampler"]["input"]["required"][widget][0]
            assert set(offered) <= set(real_choices), (widget, set(offered) - set(real_choices))
        assert "lcm" in sampling["sampler_name"][0] and "sgm_uniform" in sampling["scheduler"][0]
        assert sampling["seed"][1]["control_after_generate"] is True
        assert ours["LoadImage"]["input"]["required"]["image"][1]["image_upload"] is True
        # File choices: what lcmgraph's folders hold (built-ins included).
        checkpoints = ours["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        assert "mine.safetensors" in checkpoints and "builtin:tiny-random" in checkpoints
        assert ours["SaveImage"]["output_node"] is True and ours["KSampler"]["output_node"] is False
        # Only classes /prompt converts: refused model kinds are not offered; unknown classes answer {}.
        assert "unCLIPCheckpointLoader" not in ours and "GLIGENLoader" not in ours
        assert await _json(h, "/object_info/NoSuchNode") == {}
        assert await _json(h, "/api/object_info/unCLIPCheckpointLoader") == {}

    serve(tmp_path, body, engine=_engine(tmp_path), timeout=60)


def _value(spec, wanted=None):
    """A widget value from the spec alone: the wanted one where the spec allows it, else its default."""
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return wanted if wanted in spec[0] else options.get("default", spec[0][0])
    if wanted is not None and options.get("min", wanted) <= wanted <= options.get("max", wanted):
        return wanted
    return options["default"]


def build_txt2img(info: dict, size: int, steps: int) -> dict:
    """A client's txt2img graph in API format, from /object_info alone: each required input is a
    link to the first earlier node with an output of its type, or a widget value."""
    plan = [("1", "CheckpointLoaderSimple", {}), ("2", "CLIPTextEncode", {"text": "a red circle"}),
            ("3", "CLIPTextEncode", {"text": "blurry"}), ("4", "EmptyLatentImage", {"width": size, "height": size}),
            ("5", "KSampler", {"steps": steps, "seed": 11, "cfg": 1.0}), ("6", "VAEDecode", {}),
            ("7", "SaveImage", {"filename_prefix": "client"})]
    prompt: dict[str, dict] = {}
    for node_id, class_type, wanted in plan:
        spec = info[class_type]
        inputs = {}
        for name in spec["input_order"]["required"]:
            widget = spec["input"]["required"][name]
            if isinstance(widget[0], list) or widget[0] in WIDGETS:
                inputs[name] = _value(widget, wanted.get(name))
                continue
            source = next(i for i in prompt if widget[0] in info[prompt[i]["class_type"]]["output"])
            if name == "negative":  # the second text node: the first one feeds positive
                source = "3"
            inputs[name] = [source, info[prompt[source]["class_type"]]["output"].index(widget[0])]
        prompt[node_id] = {"class_type": class_type, "inputs": inputs}
    return prompt


def test_a_client_builds_a_graph_from_object_info_alone_and_gets_the_image(tmp_path):
    async def body(h):
        info = await _json(h, "/object_info")
        prompt = build_txt2img(info, size=64, steps=2)
        assert prompt["1"]["inputs"]["ckpt_name"] == "builtin:tiny-random"  # the loader's default
        queued = await _json(h, "/prompt", method="POST", json={"prompt": prompt, "client_id": "from-object-info"})
        prompt_id = queued["prompt_id"]
        for _ in range(1200):
            history = await _json(h, f"/history/{prompt_id}")
            if history:
                break
            await asyncio.sleep(0.1)
        item = history[prompt_id]
        assert item["status"]["status_str"] == "success", item["status"]
        (image,) = item["outputs"]["7"]["images"]
        status, png = await h.call("GET", "/view", params=image)
        assert status == 200
        with Image.open(io.BytesIO(png)) as saved:
            assert saved.size == (64, 64)

    serve(tmp_path, body, engine=_engine(tmp_path), timeout=240)


def test_object_info_needs_the_token_like_every_other_route(tmp_path):
    async def body(h):
        status, _ = await h.call("GET", "/object_info")
        assert status == 401
        status, _ = await h.call("GET", "/api/object_info/KSampler")
        assert status == 401
        h.headers["Authorization"] = "Bearer " + "t" * 32
        assert "KSampler" in await _json(h, "/object_info/KSampler")

    serve(tmp_path, body, engine=_engine(tmp_path), token="t" * 32)
