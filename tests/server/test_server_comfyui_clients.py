"""Real ComfyUI API clients against a real ``lcmgraph serve`` process, over
real sockets: a client written after ComfyUI's script_examples (urllib +
websocket-client, tests/server/comfy_client.py) runs API-format txt2img, LoRA
and img2img graphs on the tiny built-in models and gets back, byte for byte,
the files the server wrote; ComfyUI's own command line client, comfy-cli
(``comfy run --workflow … --host … --port … --wait``), does the same."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.server.comfy_client import ComfyClient
from tests.server.harness import ServerProcess


def txt2img(seed: int = 7, steps: int = 2, size: int = 64, prefix: str = "ComfyUI") -> dict:
    """ComfyUI's API format (node id -> class_type + inputs; links [node id, output index])."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "builtin:tiny-random"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def lora() -> dict:
    """A style LoRA on model + CLIP, then the LCM-LoRA on the model, as ComfyUI users chain them."""
    prompt = txt2img(seed=3, prefix="lora")
    prompt["10"] = {"class_type": "LoraLoader", "inputs": {
        "lora_name": "builtin:tiny-style-lora", "strength_model": 0.8, "strength_clip": 0.7,
        "model": ["4", 0], "clip": ["4", 1]}}
    prompt["11"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
        "lora_name": "builtin:tiny-lcm-lora", "strength_model": 1.0, "model": ["10", 0]}}
    prompt["3"]["inputs"]["model"] = ["11", 0]
    for node in ("6", "7"):
        prompt[node]["inputs"]["clip"] = ["10", 1]
    return prompt


def img2img(image_name: str) -> dict:
    prompt = txt2img(seed=5, prefix="img2img")
    del prompt["5"]
    prompt["12"] = {"class_type": "LoadImage", "inputs": {"image": image_name, "upload": "image"}}
    prompt["13"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}}
    prompt["3"]["inputs"].update(latent_image=["13", 0], denoise=0.5)
    return prompt


def _png(color: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("comfy_clients")
    process = ServerProcess(tmp, entry_points=True, env={"LCMGRAPH_HOME": str(tmp / "home")})
    process.outputs = tmp / "data" / "outputs"
    process.address = process.base.removeprefix("http://")
    yield process
    assert process.stop() == 0, process.log.read_text()[-3000:]


def _assert_images_unchanged(server, run, node: str, size: int = 64) -> None:
    """Every image /history lists came back from /view exactly as the server wrote it."""
    assert list(run.images) == [node], run.images.keys()
    for entry, data in run.images[node]:
        assert entry["type"] == "output" and entry["subfolder"] == run.prompt_id
        assert data == (server.outputs / entry["subfolder"] / entry["filename"]).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == (size, size)


def test_the_websocket_example_client_runs_txt2img_lora_and_img2img(server):
    client = ComfyClient(server.address)
    ws = client.connect()
    try:
        hello = json.loads(ws.recv())
        assert hello["type"] == "status" and hello["data"]["sid"] == client.client_id

        plain = client.run(ws, txt2img())
        _assert_images_unchanged(server, plain, "9")
        kinds = [m["type"] for m in plain.messages]
        assert kinds.index("execution_start") < kinds.index("execution_cached") < kinds.index("executing")
        assert kinds.index("progress") < kinds.index("executed") < kinds.index("execution_success")
        # step previews as ComfyUI's binary frames: image type 1 (JPEG), a decodable JPEG
        assert plain.previews and all(kind == 1 for kind, _ in plain.previews)
        with Image.open(io.BytesIO(plain.previews[-1][1])) as preview:
            assert preview.format == "JPEG"

        styled = client.run(ws, lora())
        _assert_images_unchanged(server, styled, "9")
        assert styled.images["9"][0][1] != plain.images["9"][0][1]  # the LoRAs changed the image

        uploaded = client.upload_image("start.png", _png((200, 40, 40)), subfolder="clients")
        assert uploaded == {"name": "start.png", "subfolder": "clients", "type": "input"}
        started = client.run(ws, img2img(f"{uploaded['subfolder']}/{uploaded['name']}"))
        _assert_images_unchanged(server, started, "9")
        again = client.run(ws, img2img("clients/start.png"))  # same graph: served from the cache
        assert again.images["9"][0][1] == started.images["9"][0][1]
        assert next(m["data"]["nodes"] for m in again.messages if m["type"] == "execution_cached") == ["8"]
        ran = [m["data"]["node"] for m in again.messages if m["type"] == "executing" and m["data"]["node"]]
        assert ran == ["9"] and not again.previews  # only the save ran again: no sampling
    finally:
        ws.close()


def test_the_basic_example_client_queues_without_a_websocket(server):
    client = ComfyClient(server.address)
    run = client.run_without_websocket(txt2img(seed=11, prefix="basic"))
    _assert_images_unchanged(server, run, "9")
    assert run.images["9"][0][0]["filename"].startswith("basic")


def test_comfy_cli_runs_a_workflow_against_lcmgraph(server, tmp_path):
    """comfy-cli's `comfy run` works offline against lcmgraph: it probes /history, fetches
    /object_info (it goes on without one), posts /prompt and follows /ws."""
    comfy = shutil.which("comfy", path=str(Path(sys.executable).parent)) or shutil.which("comfy")
    assert comfy, "comfy-cli is not installed (pip install -e .[dev])"
    workflow = tmp_path / "txt2img_api.json"
    workflow.write_text(json.dumps(txt2img(seed=21, prefix="cli")))
    host, port = server.address.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY")}
    # (traced: it connects only to the server; these make sure it never tries to phone home)
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1",
               DO_NOT_TRACK="1", COMFY_NO_TELEMETRY="1", COMFY_CLI_NO_REMOTE_REFRESH="1")
    done = subprocess.run([comfy, "--skip-prompt", "run", "--workflow", str(workflow), "--host", host,
                           "--port", port, "--wait", "--timeout", "120"],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    envelope = json.loads(done.stdout.strip().splitlines()[-1])
    assert envelope["ok"] is True and envelope["data"]["status"] == "completed", envelope
    prompt_id = envelope["data"]["prompt_id"]
    [url] = envelope["data"]["outputs_by_node"]["9"]
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    [written] = (server.outputs / prompt_id).glob("cli*.png")
    assert data == written.read_bytes()
    assert {"3", "8", "9"} <= set(envelope["data"]["executed_node_ids"])  # loaders may come from the cache
