"""Uploads (decoded, limited, re-encoded), thumbnails, node schema, models, examples, static page."""

import io
import json
import os
import re
import struct
import zlib

from aiohttp import FormData
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.server.harness import serve, solid_doc


def png_bytes(size=(32, 24), colour=(200, 10, 10), text=None):
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def bomb_png(width, height):
    """A valid PNG header declaring width x height, with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def form(data, filename="photo.png", **fields):
    payload = FormData()
    payload.add_field("image", data, filename=filename, content_type="application/octet-stream")
    for key, value in fields.items():
        payload.add_field(key, value)
    return payload


def test_upload_is_decoded_reencoded_and_stored_in_the_input_folder(tmp_path):
    async def body(h):
        jpeg = io.BytesIO()
        Image.new("RGB", (40, 30), (1, 2, 3)).save(jpeg, format="JPEG")
        _, stored = await h.call("POST", "/api/upload", 201, data=form(jpeg.getvalue(), "../../My Photo!.jpg"))
        assert stored == {"name": "My Photo.png", "folder": "input", "width": 40, "height": 30,
                          "source_format": "JPEG", "url": "/api/files/input/My%20Photo.png"}
        path = tmp_path / "models" / "input" / "My Photo.png"
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (40, 30))
        _, again = await h.call("POST", "/api/upload", 201, data=form(png_bytes(), "My Photo!.png"))
        assert again["name"] == "My Photo_1.png"
        _, replaced = await h.call("POST", "/api/upload", 201, data=form(png_bytes(), "My Photo!.png", overwrite="true"))
        assert replaced["name"] == "My Photo.png"
        _, fetched = await h.call("GET", stored["url"], 200)
        assert fetched.startswith(b"\x89PNG")
        assert "My Photo.png" in (await h.call("GET", "/api/models/input", 200))[1]["files"]

    serve(tmp_path, body)


def test_upload_keeps_an_embedded_workflow_and_drops_other_text(tmp_path):
    async def body(h):
        workflow = json.dumps(solid_doc(1))
        data = png_bytes(text={"lcmgraph.workflow": workflow, "Comment": "<script>"})
        _, stored = await h.call("POST", "/api/upload", 201, data=form(data, "wf.png"))
        with Image.open(tmp_path / "models" / "input" / stored["name"]) as image:
            image.load()
            assert image.text == {"lcmgraph.workflow": workflow}

    serve(tmp_path, body)


def test_a_painted_mask_becomes_the_alpha_of_the_image_it_masks(tmp_path):
    """The editor's mask painter sends only the mask (alpha 0 = repaint); the server keeps
    the original's colours, which a browser canvas would have lost under alpha 0."""
    async def body(h):
        photo = Image.new("RGB", (8, 6), (200, 10, 10))
        photo.putpixel((1, 1), (0, 255, 0))
        raw = io.BytesIO()
        photo.save(raw, format="PNG")
        _, original = await h.call("POST", "/api/upload", 201, data=form(raw.getvalue(), "photo.png"))
        mask = Image.new("RGBA", (8, 6), (0, 0, 0, 255))
        for xy in ((1, 1), (2, 1), (7, 5)):
            mask.putpixel(xy, (0, 0, 0, 0))
        raw = io.BytesIO()
        mask.save(raw, format="PNG")
        _, stored = await h.call("POST", "/api/upload", 201,
                                 data=form(raw.getvalue(), "photo-mask.png", mask_of=original["name"]))
        assert (stored["name"], stored["width"], stored["height"]) == ("photo-mask.png", 8, 6)
        with Image.open(tmp_path / "models" / "input" / "photo-mask.png") as image:
            assert image.mode == "RGBA"
            assert image.getpixel((1, 1)) == (0, 255, 0, 0)  # its colour kept under alpha 0
            assert image.getpixel((2, 1)) == (200, 10, 10, 0) and image.getpixel((7, 5)) == (200, 10, 10, 0)
            assert image.getpixel((0, 0)) == (200, 10, 10, 255)
        _, err = await h.call("POST", "/api/upload", 400,
                              data=form(png_bytes(size=(8, 6)), "m.png", mask_of=original["name"]))
        assert err["message"] == ("POST /api/upload: mask 'm.png' has no alpha channel: the mask is the "
                                  "image's alpha (0 = repaint)")
        small = io.BytesIO()
        Image.new("RGBA", (4, 4)).save(small, format="PNG")
        _, err = await h.call("POST", "/api/upload", 400, data=form(small.getvalue(), "m.png", mask_of=original["name"]))
        assert err["message"] == ("POST /api/upload: mask 'm.png' is 4x4 but the image it masks is 8x6; "
                                  "paint the mask at the image's size")
        assert err["error"] == "size_mismatch"
        _, err = await h.call("POST", "/api/upload", 404, data=form(small.getvalue(), "m.png", mask_of="nope.png"))
        assert err["message"] == "POST /api/upload: no file 'nope.png' in the input folder"
        _, err = await h.call("POST", "/api/upload", 400, data=form(small.getvalue(), "m.png", mask_of="../x.png"))
        assert "x.png" in err["message"] and not (tmp_path / "models" / "m.png").exists()
        assert sorted(os.listdir(tmp_path / "models" / "input")) == ["photo-mask.png", "photo.png"]

    serve(tmp_path, body)


def test_bad_uploads_are_refused(tmp_path):
    async def body(h):
        _, err = await h.call("POST", "/api/upload", 400, data=form(b"<svg>hello</svg>", "x.png"))
        assert err["message"] == ("POST /api/upload: upload 'x.png' is not an image in a supported format "
                                  "(PNG, JPEG, WEBP, GIF, BMP)")
        _, err = await h.call("POST", "/api/upload", 413, data=form(bomb_png(100_000, 100_000), "bomb.png"))
        assert err["message"] == ("POST /api/upload: upload 'bomb.png' is 10000000000 pixels; "
                                  "the limits are 40000000 pixels and 16384 pixels a side")
        _, err = await h.call("POST", "/api/upload", 413, data=form(bomb_png(7000, 7000), "big.png"))
        assert err["error"] == "image_too_large"
        truncated = png_bytes(size=(64, 64))[:-40]
        _, err = await h.call("POST", "/api/upload", 400, data=form(truncated, "cut.png"))
        assert err["error"] == "not_an_image"
        assert err["message"].startswith("POST /api/upload: upload 'cut.png' is damaged and could not be decoded")
        _, err = await h.call("POST", "/api/upload", 413, data=form(b"\0" * 250_000, "huge.png"))
        assert err["message"] == "POST /api/upload: the image is larger than the limit of 200000 bytes"
        status, err = await h.call("POST", "/api/upload", 413, data=form(b"\0" * 300_000, "huger.png"))
        assert re.fullmatch(r"POST /api/upload: the upload is 3001\d\d bytes; the limit is 200000 bytes", err["message"])
        _, err = await h.call("POST", "/api/upload", 400, data=form(png_bytes(), "a.png", colour="red"))
        assert err["message"] == "POST /api/upload: unknown form field 'colour'; known: image, overwrite, mask_of"
        _, err = await h.call("POST", "/api/upload", 415, json={"image": "x"})
        assert err["message"] == "POST /api/upload expects multipart/form-data with an 'image' file field"
        payload = FormData(default_to_multipart=True)
        payload.add_field("overwrite", "true")
        _, err = await h.call("POST", "/api/upload", 400, data=payload)
        assert err["message"] == "POST /api/upload: missing or empty 'image' file field"
        assert os.listdir(tmp_path / "models" / "input") == [] if (tmp_path / "models" / "input").exists() else True

    serve(tmp_path, body, limits={"max_upload_bytes": 200_000, "max_image_pixels": 40_000_000})


def test_upload_does_not_follow_a_symlink_planted_at_the_name(tmp_path):
    async def body(h):
        target = tmp_path / "outside.png"
        target.write_bytes(b"original")
        inputs = tmp_path / "models" / "input"
        inputs.mkdir(parents=True)
        os.symlink(target, inputs / "trap.png")
        _, stored = await h.call("POST", "/api/upload", 201, data=form(png_bytes(), "trap.png", overwrite="true"))
        assert stored["name"] == "trap.png"
        assert target.read_bytes() == b"original"
        assert not (inputs / "trap.png").is_symlink()

    serve(tmp_path, body)


def test_thumbnails(tmp_path):
    async def body(h):
        _, stored = await h.call("POST", "/api/upload", 201, data=form(png_bytes(size=(400, 100)), "wide.png"))
        _, thumb = await h.call("GET", stored["url"] + "?thumbnail=100", 200)
        with Image.open(io.BytesIO(thumb)) as image:
            assert (image.format, image.size) == ("JPEG", (100, 25))
        _, default = await h.call("GET", stored["url"] + "?thumbnail", 400)
        assert default["message"] == ("GET /api/files/input/wide.png: query parameter 'thumbnail' must be an "
                                      "integer from 16 to 1024, got ''")
        await h.call("GET", stored["url"] + "?thumbnail=5000", 400)

    serve(tmp_path, body)


def test_schema_models_and_example_workflows(tmp_path):
    examples = tmp_path / "workflows"
    examples.mkdir()
    (examples / "grey.json").write_text(json.dumps({**solid_doc(9), "meta": {"title": "Grey", "description": "a tile"}}))
    (examples / "broken.json").write_text("{")
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "loras" / "style.safetensors").write_bytes(b"x")
    # links out of the folder are not offered: a file elsewhere, and a whole folder elsewhere
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere" / "secret.safetensors").write_bytes(b"s")
    (tmp_path / "elsewhere" / "deep" / "other.safetensors").write_bytes(b"o")
    os.symlink(tmp_path / "elsewhere" / "secret.safetensors", tmp_path / "models" / "loras" / "leak.safetensors")
    os.symlink(tmp_path / "elsewhere" / "deep", tmp_path / "models" / "loras" / "linked")
    # a link that stays inside is fine
    os.symlink(tmp_path / "models" / "loras" / "style.safetensors", tmp_path / "models" / "loras" / "alias.safetensors")

    async def body(h):
        _, schema = await h.call("GET", "/api/nodes", 200)
        assert schema == h.server.engine.registry.schema()
        assert "SolidImage" in schema["nodes"]
        _, models = await h.call("GET", "/api/models", 200)
        assert models["folders"]["loras"] == ["alias.safetensors", "style.safetensors"]
        _, loras = await h.call("GET", "/api/models/loras", 200)
        assert loras == {"folder": "loras", "files": ["alias.safetensors", "style.safetensors"]}
        _, err = await h.call("GET", "/api/models/secrets", 404)
        assert err["message"] == ("GET /api/models/secrets: no model folder 'secrets' (folders: annotators, "
                                  "bert-base-uncased, checkpoints, clip_vision, controlnet, embeddings, grounding-dino, "
                                  "input, ipadapter, loras, sams, unet, upscale_models, vae)")
        _, listing = await h.call("GET", "/api/workflows", 200)
        assert listing["workflows"][1] == {"name": "grey", "file": "grey.json", "title": "Grey",
                                           "description": "a tile"}
        assert listing["workflows"][0]["name"] == "broken" and "error" in listing["workflows"][0]
        _, grey = await h.call("GET", "/api/workflows/grey", 200)
        assert grey["meta"]["title"] == "Grey"
        await h.call("GET", "/api/workflows/grey.json", 200)
        _, err = await h.call("GET", "/api/workflows/..%2Fsecret", 404)
        assert err["error"] == "no_such_workflow"
        _, info = await h.call("GET", "/api", 200)
        assert info["api_version"] == 1 and info["auth"] is False and info["limits"]["max_queue"] == 1000

    serve(tmp_path, body)


def test_static_editor_files(tmp_path):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<html>editor</html>")
    (web / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "private.txt").write_text("private")
    os.symlink(tmp_path / "private.txt", web / "assets" / "leak.js")

    async def body(h):
        _, page = await h.call("GET", "/", 200)
        assert page == b"<html>editor</html>"
        async with h.client.get("/assets/app.js") as response:
            assert response.status == 200 and response.content_type in ("text/javascript", "application/javascript")
        await h.call("GET", "/assets/leak.js", 403)
        await h.call("GET", "/assets/missing.js", 404)
        async with h.client.delete("/api/queue") as response:
            assert response.status == 405 and response.headers["Allow"] == "GET,HEAD,POST"  # POST: ComfyUI's /api/queue
            assert await response.json() == {"error": "method_not_allowed", "status": 405,
                                              "message": "method DELETE is not allowed on /api/queue"}
        _, err = await h.call("GET", "/api/unknown", 404)
        assert err["message"] == "GET /api/unknown: no such endpoint: GET /api/unknown"

    serve(tmp_path, body, web_dir=web)
