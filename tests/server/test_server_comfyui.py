"""ComfyUI's own API on `lcmgraph serve`: a client written after ComfyUI's
script_examples (basic_api_example.py, websockets_api_example.py) queues an
API-format graph with POST /prompt, follows /ws until its prompt is done,
reads /history/{prompt_id} and fetches each image with /view."""

from __future__ import annotations

import io
import json
import struct
import uuid

import aiohttp
from PIL import Image

from lcmgraph import Engine, EngineConfig
from tests.server.harness import serve


def _engine(tmp_path):
    return Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models"))


def api_txt2img(steps: int = 2, size: int = 64) -> dict:
    """ComfyUI's API format: node id -> {class_type, inputs}; links are [node id, output index]."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "builtin:tiny-random"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "ks": {"class_type": "KSampler", "inputs": {
            "seed": 7, "steps": steps, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform",
            "denoise": 1.0, "model": ["msd", 0], "positive": ["pos", 0], "negative": ["neg", 0],
            "latent_image": ["lat", 0]}},
        "msd": {"class_type": "ModelSamplingDiscrete", "inputs": {"sampling": "lcm", "zsnr": False,
                                                                   "model": ["ckpt", 0]}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["dec", 0]}},
    }


async def _json(h, method, path, expect=200, **kwargs):
    status, body = await h.call(method, path, **kwargs)
    assert status == expect, (method, path, status, body)
    return body


def test_a_comfyui_client_queues_follows_and_fetches_images(tmp_path):
    async def body(h):
        client_id = str(uuid.uuid4())
        ws = await h.client.ws_connect(f"/ws?clientId={client_id}")
        hello = await ws.receive_json(timeout=10)
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                    "sid": client_id}}
        queued = await _json(h, "POST", "/prompt", json={"prompt": api_txt2img(), "client_id": client_id})
        prompt_id = queued["prompt_id"]
        assert queued["node_errors"] == {} and isinstance(queued["number"], int | float)
        seen, frames = [], []
        while True:  # as websockets_api_example.py: until 'executing' with node None for our prompt
            frame = await ws.receive(timeout=120)
            if frame.type == aiohttp.WSMsgType.BINARY:  # step previews
                frames.append((len(seen), frame.data))
                continue
            message = json.loads(frame.data)
            seen.append(message)
            data = message.get("data", {})
            if message["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
                break
        kinds = [m["type"] for m in seen]
        for kind in ("execution_start", "execution_cached", "executing", "progress", "executed",
                     "execution_success"):
            assert kind in kinds, (kind, kinds)
        assert kinds.index("execution_start") < kinds.index("executing") < kinds.index("execution_success")
        assert "status" in kinds
        progress = [m["data"] for m in seen if m["type"] == "progress"]
        assert progress[-1]["value"] == progress[-1]["max"] == 2 and progress[-1]["node"] == "ks"
        # previews: ComfyUI's binary frames (event 1 = PREVIEW_IMAGE, image type 1 = JPEG), each after a progress
        assert frames, "no preview frames"
        for after, data in frames:
            assert struct.unpack(">II", data[:8]) == (1, 1) and data[8:10] == b"\xff\xd8"
            assert seen[after - 1]["type"] == "progress"
            with Image.open(io.BytesIO(data[8:])) as preview:
                assert preview.format == "JPEG" and max(preview.size) <= 256
        executed = next(m["data"] for m in seen if m["type"] == "executed")
        assert executed["node"] == "save" and executed["prompt_id"] == prompt_id
        await ws.close()

        history = await _json(h, "GET", f"/history/{prompt_id}")
        item = history[prompt_id]
        assert item["status"]["status_str"] == "success" and item["status"]["completed"] is True
        assert item["prompt"][1] == prompt_id and item["prompt"][2]["ks"]["class_type"] == "KSampler"
        assert item["prompt"][4] == ["save"]
        images = item["outputs"]["save"]["images"]
        assert images == executed["output"]["images"] and len(images) == 1
        for image in images:
            assert image["subfolder"] == prompt_id and image["type"] == "output"
            status, png = await h.call("GET", "/view", params=image)
            assert status == 200 and png.startswith(b"\x89PNG")
            written = (h.server.output_root / image["subfolder"] / image["filename"]).read_bytes()
            assert png == written
            with Image.open(io.BytesIO(png)) as saved:
                assert saved.size == (64, 64)
        # the same under /api/, as ComfyUI's frontend calls it
        assert prompt_id in await _json(h, "GET", "/api/history/" + prompt_id)
        assert prompt_id in await _json(h, "GET", "/history")
        assert await _json(h, "GET", "/prompt") == {"exec_info": {"queue_remaining": 0}}
        assert await _json(h, "GET", "/queue") == {"queue_running": [], "queue_pending": []}
        # lcmgraph's own API sees the same job
        job = (await _json(h, "GET", f"/api/jobs/{prompt_id}"))["job"]
        assert job["status"] == "done" and job["client_id"] == client_id
        # delete from the history: the files go too
        await _json(h, "POST", "/history", json={"delete": [prompt_id]})
        assert await _json(h, "GET", f"/history/{prompt_id}") == {}
        await _json(h, "GET", "/view", 404, params=images[0])

    serve(tmp_path, body, engine=_engine(tmp_path), timeout=240)


def test_invalid_prompts_and_paths_are_refused_in_comfyuis_shape(tmp_path):
    async def body(h):
        prompt = api_txt2img()
        prompt["ks"]["inputs"]["steps"] = -3
        prompt["lat"]["inputs"]["width"] = "wide"
        answer = await _json(h, "POST", "/prompt", 400, json={"prompt": prompt})
        assert answer["error"]["type"] == "prompt_outputs_failed_validation"
        assert set(answer["error"]) == {"type", "message", "details", "extra_info"}
        errors = answer["node_errors"]
        assert set(errors) == {"ks", "lat"}
        assert errors["ks"]["class_type"] == "KSampler" and errors["ks"]["dependent_outputs"] == []
        assert errors["ks"]["errors"][0]["extra_info"]["input_name"] == "steps"
        unknown = await _json(h, "POST", "/prompt", 400, json={"prompt": {"1": {"class_type": "NoSuchNode",
                                                                              "inputs": {}}}})
        assert unknown["error"]["type"] == "invalid_prompt" and "NoSuchNode" in unknown["error"]["details"]
        empty = await _json(h, "POST", "/prompt", 400, json={"client_id": "x"})
        assert empty["error"]["type"] == "no_prompt"
        taken = await _json(h, "POST", "/prompt", 400, json={"prompt": api_txt2img(), "prompt_id": "../x"})
        assert taken["error"]["type"] == "invalid_prompt"
        # /view: no way out of the folders
        for params in ({"filename": "../../etc/passwd"}, {"filename": "x.png", "subfolder": "../.."},
                       {"filename": "x.png", "subfolder": "a/../../b"}, {"filename": "x.png", "type": "models"}):
            status, _ = await h.call("GET", "/view", params=params)
            assert status in (400, 403), (params, status)
        status, _ = await h.call("GET", "/view", params={"filename": "nothing.png", "subfolder": "0123456789abcdef"})
        assert status == 404
        # lcmgraph's own routes of the same names keep their shapes
        assert "running" in await _json(h, "GET", "/api/queue")
        assert "jobs" in await _json(h, "GET", "/api/history")

    serve(tmp_path, body, engine=_engine(tmp_path), timeout=120)


def test_token_and_origin_checks_apply_to_comfyuis_routes(tmp_path):
    async def body(h):
        for method, path in (("POST", "/prompt"), ("GET", "/prompt"), ("GET", "/queue"), ("GET", "/history"),
                             ("GET", "/history/abc"), ("GET", "/view?filename=x.png"), ("GET", "/system_stats"),
                             ("POST", "/interrupt"), ("GET", "/api/prompt")):
            status, _ = await h.call(method, path, json={} if method == "POST" else None)
            assert status == 401, (method, path, status)
        status, _ = await h.call("GET", "/ws?clientId=a")
        assert status == 401
        auth = {"Authorization": "Bearer sekrit"}
        status, _ = await h.call("GET", "/prompt", headers=auth)
        assert status == 200
        status, _ = await h.call("POST", "/prompt", json={"prompt": api_txt2img()},
                                 headers={**auth, "Origin": "http://evil.example"})
        assert status == 403
        ws = await h.client.ws_connect("/ws?clientId=a&token=sekrit")
        assert (await ws.receive_json(timeout=10))["type"] == "status"
        await ws.close()
        try:
            await h.client.ws_connect("/ws?clientId=a&token=sekrit", headers={"Origin": "http://evil.example"})
            raise AssertionError("a cross-origin WebSocket was accepted")
        except Exception as exc:  # noqa: BLE001 - aiohttp's handshake error
            assert "403" in str(exc)

    serve(tmp_path, body, token="sekrit")
