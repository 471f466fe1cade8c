"""Saving and loading workflows (the CLI's format), PNG drop, image upload."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lcmgraph.pngmeta import WORKFLOW_KEY

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
COMFY = REPO / "tests" / "comfy" / "workflows"


def semantics(doc: dict, schema: dict) -> dict:
    """What a workflow means to the engine: types, titles, inputs with defaults filled in, outputs."""
    nodes = {}
    for node_id, node in doc["nodes"].items():
        spec = schema["nodes"][node["type"]]
        given = node.get("inputs", {})
        inputs = {}
        for inp in spec["inputs"]:
            if inp["name"] in given:
                inputs[inp["name"]] = given[inp["name"]]
            elif "default" in inp:
                inputs[inp["name"]] = inp["default"]
        inputs.update({k: v for k, v in given.items() if k not in inputs})
        nodes[node_id] = {"type": node["type"], "title": node.get("title"), "inputs": inputs}
    return {"nodes": nodes, "outputs": doc.get("outputs"), "meta": doc.get("meta")}


def save_via_button(editor) -> dict:
    with editor.page.expect_download() as info:
        editor.page.click("#save")
    path = info.value.path()
    assert info.value.suggested_filename.endswith(".json")
    return json.loads(Path(path).read_text())


def validate_cli(doc: dict, tmp_path: Path, server) -> subprocess.CompletedProcess:
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(doc))
    env = {**os.environ, "LCMGRAPH_HOME": str(server.tmp / "home")}
    env.pop("LCMGRAPH_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "lcmgraph", "validate", str(path)],
                          capture_output=True, text=True, env=env, cwd=REPO)


def test_save_load_round_trip_of_every_example(editor, server, tmp_path):
    schema = server.get("/api/nodes")
    for name in EXAMPLES:
        original = json.loads((REPO / "workflows" / f"{name}.json").read_text())
        editor.page.select_option("#examples", name)
        editor.page.wait_for_function("n => lcmgraph.nodeIds().length === n", arg=len(original["nodes"]))
        saved = save_via_button(editor)

        assert saved["format"] == "lcmgraph.workflow" and saved["version"] == 1
        assert semantics(saved, schema) == semantics(original, schema), name
        assert list(saved["nodes"]) == list(original["nodes"]), "node order is kept"
        assert set(saved["ui"]["nodes"]) == set(original["nodes"])
        for layout in saved["ui"]["nodes"].values():
            assert len(layout["pos"]) == 2 and len(layout["size"]) == 2
        done = validate_cli(saved, tmp_path, server)
        assert done.returncode == 0, f"{name}: lcmgraph validate refused the saved file:\n{done.stdout}{done.stderr}"

        # Loading the saved file (through the Load button) and saving again changes nothing.
        path = tmp_path / f"{name}.saved.json"
        path.write_text(json.dumps(saved))
        with editor.page.expect_file_chooser() as chooser:
            editor.page.click("#load")
        chooser.value.set_files(str(path))
        editor.page.wait_for_function("s => document.querySelector('#status').textContent.includes(s)",
                                      arg=original["meta"]["title"])
        again = save_via_button(editor)
        assert again == saved, name


def test_layout_and_unknown_parts_survive(editor, server, tmp_path):
    """Positions, sizes, titles, extra ui keys and even unknown node types come back as they were."""
    doc = json.loads((REPO / "workflows" / "txt2img_lcm.json").read_text())
    doc["nodes"]["sampler"]["title"] = "My sampler"
    doc["nodes"]["mystery"] = {"type": "NotInstalled", "inputs": {"x": {"link": ["latent", "latent"]}, "k": 3}}
    doc["ui"] = {"nodes": {"ckpt": {"pos": [11, 22], "size": [300, 120]}}, "theme": "dark"}
    editor.load_doc(doc)
    assert "NotInstalled" in editor.status()
    saved = editor.workflow()
    assert saved["nodes"]["sampler"]["title"] == "My sampler"
    assert saved["nodes"]["mystery"] == doc["nodes"]["mystery"]
    assert saved["ui"]["nodes"]["ckpt"] == {"pos": [11, 22], "size": [300, 120]}
    assert saved["ui"]["theme"] == "dark"
    # Selecting a node brings it to the front; the saved order stays the document's.
    editor.js("lcmgraph.resetView()")
    title = editor.js("lcmgraph.titlePos('ckpt')")
    editor.page.mouse.click(title["x"], title["y"])
    assert editor.js("lcmgraph.nodeIds()")[-1] == "ckpt"
    assert list(editor.workflow()["nodes"]) == list(doc["nodes"])
    # The unknown type is what validation reports; the editor marks it on the node after Queue.
    editor.page.click("#queue")
    editor.page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'mystery').hasErrors")
    problems = editor.nodes()["mystery"]["problems"]
    assert any("NotInstalled" in p["message"] for p in problems), problems


def make_png(server, *, seed: int, text: str) -> tuple[bytes, dict]:
    """Run a workflow through the API and fetch the PNG it wrote (with the workflow embedded)."""
    doc = json.loads((REPO / "workflows" / "txt2img_lcm.json").read_text())
    doc["nodes"]["sampler"]["inputs"]["seed"] = seed
    doc["nodes"]["positive"]["inputs"]["text"] = text
    doc["meta"]["title"] = "made for the drop test"
    doc["ui"] = {"nodes": {nid: {"pos": [40 + 320 * i, 100 + 20 * i], "size": [300, 420]}
                           for i, nid in enumerate(doc["nodes"])}}
    job = server.post("/api/jobs", {"workflow": doc, "client_id": "png-maker"})["job"]
    done = server.wait_job(job["id"])
    assert done["status"] == "done", done
    url = done["outputs"]["save"]["images"][0]["url"]
    return server.get(url), doc


def drop_file(editor, data: bytes, name: str, mime: str, at=(700, 700)) -> None:
    """Drop a file on the canvas, as a file dragged from the desktop arrives."""
    page = editor.page
    transfer = page.evaluate_handle("""([b64, name, mime]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0))
        const dt = new DataTransfer()
        dt.items.add(new File([bytes], name, { type: mime }))
        return dt
    }""", [base64.b64encode(data).decode(), name, mime])
    init = {"dataTransfer": transfer, "clientX": at[0], "clientY": at[1]}
    page.dispatch_event("#graph", "dragenter", init)
    page.dispatch_event("#graph", "dragover", init)
    page.dispatch_event("#graph", "drop", init)


def test_png_drop_restores_the_embedded_workflow(editor, server):
    png, submitted = make_png(server, seed=1234, text="dropped on the editor")
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(png)) as image:
        image.load()
        embedded = json.loads(image.text[WORKFLOW_KEY])
    assert embedded["nodes"] == submitted["nodes"]

    editor.page.click("#clear")
    # The editor has no PNG reader of its own: the server reads the dropped file.
    with editor.page.expect_response(lambda r: "/api/workflow/from-image" in r.url) as sent:
        drop_file(editor, png, "txt2img.png", "image/png")
    assert sent.value.status == 200 and sent.value.json()["from"] == "lcmgraph"
    editor.page.wait_for_function("n => lcmgraph.nodeIds().length === n", arg=len(submitted["nodes"]))
    restored = editor.workflow()
    schema = server.get("/api/nodes")
    assert semantics(restored, schema) == semantics(embedded, schema)
    assert restored["meta"] == embedded["meta"]
    assert restored["ui"]["nodes"] == embedded["ui"]["nodes"]
    assert editor.js("lcmgraph.widgetValue('sampler', 'seed')") == 1234
    assert "made for the drop test" in editor.status()

    # A PNG without a workflow is refused with a message; the graph stays.
    plain = BytesIO()
    Image.new("RGB", (8, 8), "red").save(plain, "PNG")
    drop_file(editor, plain.getvalue(), "plain.png", "image/png")
    editor.page.wait_for_function("document.querySelector('#status').textContent.includes('no embedded')")
    assert editor.status() == ("image 'plain.png': this PNG has no embedded workflow "
                               "(neither lcmgraph's nor ComfyUI's)")
    assert editor.page.locator("#status.error").count() == 1
    assert editor.workflow()["nodes"] == restored["nodes"]

    # A workflow .json dropped on the canvas loads too.
    other = json.loads((REPO / "workflows" / "img2img_lcm.json").read_text())
    drop_file(editor, json.dumps(other).encode(), "img2img.json", "application/json")
    editor.page.wait_for_function("lcmgraph.nodeIds().includes('encode')")
    assert set(editor.workflow()["nodes"]) == set(other["nodes"])


def test_comfyui_png_drop_is_converted_by_the_server(editor, server):
    """A PNG saved by ComfyUI (API prompt + UI workflow in tEXt chunks, as ComfyUI writes them)."""
    from io import BytesIO

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    prompt = json.loads((COMFY / "api_txt2img.json").read_text())
    prompt["3"]["inputs"]["seed"] = 43  # the seed that ran; the UI's widget holds the next one
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", (COMFY / "ui_txt2img.json").read_text())
    png = BytesIO()
    Image.new("RGB", (16, 16), "blue").save(png, "PNG", pnginfo=info)

    editor.page.click("#clear")
    drop_file(editor, png.getvalue(), "ComfyUI_00001_.png", "image/png")
    editor.page.wait_for_function("document.querySelector('#status').textContent.includes('ComfyUI')")
    assert editor.status().startswith("converted ComfyUI_00001_.png from ComfyUI"), editor.status()
    doc = editor.workflow()
    schema = server.get("/api/nodes")
    assert all(node["type"] in schema["nodes"] for node in doc["nodes"].values()), doc["nodes"]
    assert doc["nodes"]["3"]["inputs"]["seed"] == 43
    assert doc["ui"]["nodes"]["3"]["pos"] == [863, 186]  # ComfyUI's layout comes along
    assert doc["meta"]["comfy_import"]["from"] == "ComfyUI UI format"

    # A PNG carrying a public workflow with the newer node families (video model, animated save).
    video = PngInfo()
    video.add_text("prompt", (REPO / "tests" / "comfy" / "corpus" / "api_samge0_svd_sd15.json").read_text())
    png = BytesIO()
    Image.new("RGB", (16, 16), "green").save(png, "PNG", pnginfo=video)
    drop_file(editor, png.getvalue(), "svd_00001_.png", "image/png")
    editor.page.wait_for_function("document.querySelector('#status').textContent.includes('svd_00001_.png')")
    assert editor.status().startswith("converted svd_00001_.png from ComfyUI"), editor.status()
    video_doc = editor.workflow()
    assert video_doc["nodes"]["12"]["type"] == "SVDImg2VidConditioning"
    assert video_doc["nodes"]["12"]["inputs"]["motion_bucket_id"] == 127
    assert {"ImageOnlyCheckpointLoader", "VideoLinearCFGGuidance", "SaveAnimatedWEBP"} <= {
        n["type"] for n in video_doc["nodes"].values()}
    doc = video_doc

    # What cannot be converted is said on the status line, each problem named; the graph stays.
    broken = PngInfo()
    broken.add_text("prompt", json.dumps({"9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0]}}}))
    png = BytesIO()
    Image.new("RGB", (16, 16), "blue").save(png, "PNG", pnginfo=broken)
    drop_file(editor, png.getvalue(), "broken.png", "image/png")
    editor.page.wait_for_function("document.querySelector('#status').textContent.includes('broken.png')")
    assert editor.status() == ("image 'broken.png': the ComfyUI workflow cannot be imported (1 problem): "
                               "node 9 input 'image': links to node 4, which is not in the workflow")
    # A file that is neither JSON nor an image.
    drop_file(editor, b"just some notes", "notes.txt", "text/plain")
    editor.page.wait_for_function("document.querySelector('#status').textContent.includes('notes.txt')")
    assert editor.status() == ("image 'notes.txt' is not an image in a supported format "
                               "(PNG, JPEG, WEBP, GIF, BMP)")
    assert editor.workflow()["nodes"] == doc["nodes"]


def test_image_upload_into_load_image(editor, server):
    from io import BytesIO

    from PIL import Image

    editor.page.select_option("#examples", "img2img_lcm")
    editor.page.wait_for_function("lcmgraph.nodeIds().includes('image')")
    editor.js("lcmgraph.resetView()")
    image = BytesIO()
    Image.new("RGB", (48, 32), (10, 200, 30)).save(image, "JPEG")
    button = editor.widget("image", "upload image…")
    with editor.page.expect_file_chooser() as chooser:
        editor.page.mouse.click(button["center"]["x"], button["center"]["y"])
    chooser.value.set_files(files=[{"name": "green.jpg", "mimeType": "image/jpeg", "buffer": image.getvalue()}])
    # The server re-encodes uploads (a JPEG is stored as PNG) and says under which name.
    editor.page.wait_for_function("lcmgraph.widgetValue('image', 'image').startsWith('green.')")
    name = editor.js("lcmgraph.widgetValue('image', 'image')")
    assert name in server.get("/api/models/input")["files"]
    assert "uploaded" in editor.status()
    # The node shows the uploaded picture.
    editor.page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'image').loadedImages === 1")
    assert editor.workflow()["nodes"]["image"]["inputs"]["image"] == name
    # The file chooser (a combo) offers the uploaded file among the input folder's files.
    assert name in editor.js("lcmgraph.app.files.input")


def test_mask_painter_paints_the_images_alpha(editor, server):
    """Upload a picture into LoadImage, paint a stroke, erase part of it, save: the
    stored copy has alpha 0 exactly where the stroke remains (LoadImage's MASK =
    1 - alpha), the picture's colours everywhere, and LoadImage now names it."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    editor.page.select_option("#examples", "inpaint_lcm")
    editor.page.wait_for_function("lcmgraph.nodeIds().includes('image')")
    editor.js("lcmgraph.resetView()")
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[..., 0] = np.arange(160)[None, :]  # a gradient: every column its own colour
    pixels[..., 1] = np.arange(120)[:, None]
    pixels[..., 2] = 90
    raw = BytesIO()
    Image.fromarray(pixels).save(raw, "PNG")
    button = editor.widget("image", "upload image…")
    with editor.page.expect_file_chooser() as chooser:
        editor.page.mouse.click(button["center"]["x"], button["center"]["y"])
    chooser.value.set_files(files=[{"name": "scene.png", "mimeType": "image/png", "buffer": raw.getvalue()}])
    editor.page.wait_for_function("lcmgraph.widgetValue('image', 'image') === 'scene.png'")

    paint = editor.widget("image", "paint mask…")
    editor.page.mouse.click(paint["center"]["x"], paint["center"]["y"])
    editor.page.wait_for_selector("#mask-painter canvas#mask-layer")
    editor.page.fill("#mask-brush", "12")
    box = editor.page.locator("#mask-layer").bounding_box()
    scale = box["width"] / 160  # the painter shows the picture at most at its own size
    to_page = lambda x, y: (box["x"] + x * scale, box["y"] + y * scale)  # noqa: E731
    mouse = editor.page.mouse
    mouse.move(*to_page(30, 60))
    mouse.down()
    mouse.move(*to_page(130, 60), steps=12)  # a horizontal stroke, 12 px wide, across the middle
    mouse.up()
    editor.page.click("#mask-erase")
    mouse.move(*to_page(80, 60))
    mouse.down()
    mouse.up()  # erase a 12 px dot out of its middle
    editor.page.click("#mask-save")
    editor.page.wait_for_function("lcmgraph.widgetValue('image', 'image') === 'scene-mask.png'")
    assert editor.js("document.querySelector('#mask-painter')") is None
    assert "mask saved as scene-mask.png" in editor.status()

    with Image.open(server.tmp / "models" / "input" / "scene-mask.png") as saved:
        rgba = np.asarray(saved.convert("RGBA"))
    assert (rgba[..., :3] == pixels).all()  # every colour kept, under the mask too
    alpha = rgba[..., 3]
    assert alpha[60, 40] == alpha[60, 120] == 0  # on the stroke: to repaint
    assert alpha[60, 80] == 255  # the erased dot
    assert alpha[20, 80] == alpha[100, 80] == alpha[60, 10] == alpha[60, 150] == 255  # off the stroke
    assert 0.04 < float((alpha < 128).mean()) < 0.09  # about 100 x 12 px of 160 x 120, less the dot
    assert editor.workflow()["nodes"]["image"]["inputs"]["image"] == "scene-mask.png"
    editor.page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'image').loadedImages === 1")


@pytest.mark.parametrize("name", ["txt2img_lcm"])
def test_default_workflow_on_first_open(editor, name):
    original = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    assert editor.js("lcmgraph.nodeIds()") == list(original["nodes"])


def test_comfyui_workflow_drop_is_converted_by_the_server(editor, server):
    """A ComfyUI workflow (editor or API format) dropped on the canvas goes through /api/comfy/import."""
    schema = server.get("/api/nodes")
    ipadapter = REPO / "tests" / "comfy" / "corpus" / "api_jimtaeh_sd15_ipadapter.json"  # a public IPAdapter graph
    from PIL import Image

    reference = server.tmp / "models" / "input" / "meow_borg_02.png"  # the reference image it names
    reference.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "orange").save(reference)
    corpus = REPO / "tests" / "comfy" / "corpus"
    types = {}
    for name, path in (("ui_txt2img", COMFY / "ui_txt2img.json"), ("api_txt2img", COMFY / "api_txt2img.json"),
                       ("segment", corpus / "api_darkamunday_sdxl_inpaint_sam.json"),
                       ("video", corpus / "api_samge0_svd_sd15.json"), ("ipadapter", ipadapter)):
        comfy = path.read_bytes()
        editor.page.click("#clear")
        drop_file(editor, comfy, f"{name}.json", "application/json")
        editor.page.wait_for_function(f"document.querySelector('#status').textContent.includes('{name}.json')")
        editor.page.wait_for_function("document.querySelector('#status').textContent.includes('ComfyUI')")
        assert "converted" in editor.status(), editor.status()
        doc = editor.workflow()
        assert doc["nodes"], name
        assert all(node["type"] in schema["nodes"] for node in doc["nodes"].values()), doc["nodes"]
        assert any(node["type"].startswith(("Save", "Preview")) for node in doc["nodes"].values())
        types[name] = {node["type"] for node in doc["nodes"].values()}
    assert {"IPAdapterAdvanced", "IPAdapterModelLoader", "CLIPVisionLoader"} <= types["ipadapter"]
    assert {"GroundingDinoSAMSegment", "SAMModelLoader", "GroundingDinoModelLoader", "InvertMask"} <= types["segment"]
    assert {"ImageOnlyCheckpointLoader", "SVDImg2VidConditioning", "VideoLinearCFGGuidance",
            "SaveAnimatedWEBP"} <= types["video"]
    assert editor.js("lcmgraph.nodes().find(n => n.id === '6').type") == "IPAdapterAdvanced"
    # Something that is neither lcmgraph's nor ComfyUI's format is refused with a reason.
    before = editor.workflow()["nodes"]
    drop_file(editor, b'{"hello": "world"}', "other.json", "application/json")
    editor.page.wait_for_function("document.querySelector('#status').textContent.startsWith('other.json: ')")
    assert editor.page.locator("#status.error").count() == 1
    assert editor.workflow()["nodes"] == before
