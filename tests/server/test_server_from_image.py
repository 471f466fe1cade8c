"""POST /api/workflow/from-image: the workflow an image carries, read by the
server's PNG reader (the editor sends dropped images here)."""

import io
import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lcmgraph import Engine, EngineConfig
from lcmgraph.pngmeta import pnginfo
from tests.server.harness import serve, solid_doc
from tests.server.test_server_files import bomb_png, png_bytes

URL = "/api/workflow/from-image"
COMFY = Path(__file__).resolve().parents[1] / "comfy" / "workflows"


def lcmgraph_png(doc: dict) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (5, 6, 7)).save(out, format="PNG", pnginfo=pnginfo(doc, {"seed": 1}))
    return out.getvalue()


def comfy_png(**chunks) -> bytes:
    """A PNG as ComfyUI saves it: tEXt "prompt" (API format) and "workflow" (UI format)."""
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, json.dumps(value))
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


async def post(h, data: bytes, expect: int, query: str = "", content_type: str = "image/png"):
    return (await h.call("POST", URL + query, expect, data=data, headers={"Content-Type": content_type}))[1]


def test_an_lcmgraph_png_gives_back_its_workflow(tmp_path):
    doc = {**solid_doc(3), "meta": {"title": "grey tile"}, "ui": {"nodes": {"c": {"pos": [1, 2]}}}}

    async def body(h):
        got = await post(h, lcmgraph_png(doc), 200)
        assert got == {"workflow": doc, "from": "lcmgraph", "notes": []}
        # Any image/* type or octet-stream will do: the server looks at the bytes.
        assert (await post(h, lcmgraph_png(doc), 200, content_type="application/octet-stream"))["workflow"] == doc

    serve(tmp_path, body)


def test_a_comfyui_png_is_converted(tmp_path):
    prompt = json.loads((COMFY / "api_txt2img.json").read_text())
    prompt["3"]["inputs"]["seed"] = 43
    ui = json.loads((COMFY / "ui_txt2img.json").read_text())
    engine = Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                                 home=tmp_path / "home", models_dir=tmp_path / "models"))

    async def body(h):
        got = await post(h, comfy_png(prompt=prompt, workflow=ui), 200)
        assert got["from"] == "comfy_api"  # the /prompt body shape: the UI workflow with the values that ran
        converted = got["workflow"]
        assert converted["format"] == "lcmgraph.workflow"
        assert converted["nodes"]["3"]["inputs"]["seed"] == 43
        assert converted["ui"]["nodes"]["3"]["pos"] == [863.0, 186.0]
        assert got["notes"] == converted["meta"]["comfy_import"].get("notes", [])
        only_ui = await post(h, comfy_png(workflow=ui), 200)
        assert only_ui["from"] == "comfy_ui" and only_ui["workflow"]["nodes"].keys() == converted["nodes"].keys()
        # A ComfyUI class no pack maps: refused, or kept as a placeholder on request.
        unknown = {"1": {"class_type": "FancyUpscaler", "inputs": {}}}
        err = await post(h, comfy_png(prompt=unknown), 400, "?name=up.png")
        assert err["error"] == "comfy_import" and err["problems"]
        assert err["message"].startswith(f"POST {URL}: image 'up.png': ") and "FancyUpscaler" in err["message"]
        kept = await post(h, comfy_png(prompt=unknown), 200, "?allow_missing=true")
        assert kept["workflow"]["nodes"]["1"]["type"] == "comfy:FancyUpscaler" and kept["notes"]

    serve(tmp_path, body, engine=engine)


def test_images_without_a_workflow_and_bad_bodies_are_refused_clearly(tmp_path):
    async def body(h):
        err = await post(h, png_bytes(), 400, "?name=plain.png")
        assert err == {"error": "no_workflow", "status": 400, "message": (
            f"POST {URL}: image 'plain.png': this PNG has no embedded workflow (neither lcmgraph's nor ComfyUI's)")}
        # Only lcmgraph's and ComfyUI's chunks count; other text is not a workflow.
        err = await post(h, png_bytes(text={"Comment": "hello"}), 400)
        assert err["message"] == (f"POST {URL}: the image: this PNG has no embedded workflow "
                                  "(neither lcmgraph's nor ComfyUI's)")
        jpeg = io.BytesIO()
        Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
        err = await post(h, jpeg.getvalue(), 400, "?name=photo.jpg", content_type="image/jpeg")
        assert (err["error"], err["message"]) == ("no_workflow", (
            f"POST {URL}: image 'photo.jpg': a JPEG image carries no workflow; lcmgraph and ComfyUI embed "
            "theirs in PNGs"))
        err = await post(h, b"<svg>hello</svg>", 400, "?name=x.svg")
        assert (err["error"], err["message"]) == ("not_an_image", (
            f"POST {URL}: image 'x.svg' is not an image in a supported format (PNG, JPEG, WEBP, GIF, BMP)"))
        err = await post(h, png_bytes(text={"lcmgraph.workflow": "{oops"}), 400)
        assert (err["error"], err["message"]) == ("malformed_workflow", (
            f"POST {URL}: the image: the PNG's 'lcmgraph.workflow' text is not JSON "
            "(Expecting property name enclosed in double quotes at line 1)"))
        err = await post(h, png_bytes(text={"workflow": json.dumps({"hello": "world"})}), 400)
        assert (err["error"], err["message"]) == ("not_a_workflow", (
            f"POST {URL}: the image: the embedded text is not a workflow in lcmgraph's or ComfyUI's format"))
        deep = png_bytes(text={"lcmgraph.workflow": "[" * 200 + "]" * 200})
        assert (await post(h, deep, 400))["error"] == "too_deep"
        # The upload limits: bytes, pixels (checked from the header, before decoding).
        err = await post(h, b"\x89PNG" + b"\0" * 5000, 413)
        assert err["message"] == f"POST {URL}: the image is 5004 bytes; the limit is 4096 bytes"
        err = await post(h, bomb_png(5000, 5000), 413, "?name=bomb.png")
        assert (err["error"], err["message"]) == ("image_too_large", (
            f"POST {URL}: image 'bomb.png' is 5000x5000 = 25000000 pixels; the limits are 1000000 pixels "
            "and 4096 pixels a side"))
        # The body is the image itself.
        err = await post(h, b'{"workflow": {}}', 415, content_type="application/json")
        assert err["message"] == (f"POST {URL} expects the image file itself as the body, with Content-Type "
                                  "image/png (or another image/* type, or application/octet-stream); got "
                                  "'application/json'")
        assert (await post(h, b"", 400))["message"] == f"POST {URL}: the body is empty; send the image file"
        err = await post(h, png_bytes(), 400, "?allow_missing=maybe")
        assert err["message"] == f"POST {URL}: query parameter 'allow_missing' must be true or false, got 'maybe'"

    serve(tmp_path, body, limits={"max_upload_bytes": 4096, "max_image_pixels": 1_000_000, "max_image_side": 4096})
