"""ComfyUI's /upload/image, /upload/mask, /models, /embeddings, /features and
/free on `lcmgraph serve`: ComfyUI's form fields and answers, lcmgraph's
limits, and no way out of the input folder."""

from __future__ import annotations

import io
import json

from aiohttp import FormData
from PIL import Image

from lcmgraph import Engine, EngineConfig
from tests.server.harness import serve
from tests.server.test_server_comfyui import api_txt2img
from tests.server.test_server_users import ALICE, BOB, bearer, users_file

TOKEN = "sekrit"


def png(color=(10, 20, 30), size=(16, 16), mode="RGB", fmt="PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def form(data: bytes, filename: str = "pic.png", **fields: str) -> FormData:
    body = FormData()
    body.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        body.add_field(key, value)
    return body


def test_uploads_answer_in_comfyuis_shape_and_name_like_comfyui(tmp_path):
    async def body(h):
        root = h.server.folders.upload_root
        _, first = await h.call("POST", "/upload/image", 200, data=form(png()))
        assert first == {"name": "pic.png", "subfolder": "", "type": "input"}
        _, same = await h.call("POST", "/upload/image", 200, data=form(png()))
        assert same == first  # the very same image: its name again, no second copy
        _, other = await h.call("POST", "/api/upload/image", 200, data=form(png((1, 2, 3))))
        assert other["name"] == "pic (1).png"
        _, replaced = await h.call("POST", "/upload/image", 200, data=form(png((9, 9, 9)), overwrite="true"))
        assert replaced["name"] == "pic.png"
        with Image.open(root / "pic.png") as stored:
            assert stored.getpixel((0, 0)) == (9, 9, 9)
        # a file where the subfolder would be, a segment longer than the file system allows: refused, not 5xx
        for subfolder in ("pic.png", "pic.png/deeper", "y" * 300):
            _, refused = await h.call("POST", "/upload/image", 409, data=form(png(), subfolder=subfolder))
            assert refused["error"] == "cannot_create" and str(root) not in refused["message"]
        _, nested = await h.call("POST", "/upload/image", 200,
                                 data=form(png(fmt="JPEG"), "photo.jpg", subfolder="clipspace/a", type="input"))
        assert nested == {"name": "photo.png", "subfolder": "clipspace/a", "type": "input"}  # stored as PNG
        status, served = await h.call("GET", "/view", params={"filename": "photo.png", "subfolder": "clipspace/a",
                                                              "type": "input"})
        assert status == 200 and served == (root / "clipspace" / "a" / "photo.png").read_bytes()
        assert served.startswith(b"\x89PNG")
        # the format allow-list and the pixel limits of every upload
        _, refused = await h.call("POST", "/upload/image", 400, data=form(b"GIF89a not really", "x.gif"))
        assert refused["error"] == "not_an_image"
        await h.call("POST", "/upload/image", 413, data=form(png(size=(300, 10)), "big.png"))
        _, ignored = await h.call("POST", "/upload/image", 200, data=form(png(), "x.png", colour="red"))
        assert ignored["name"] == "x.png"  # an unknown field is ignored, as ComfyUI does
        await h.call("POST", "/upload/image", 400, data=form(png(), "x.png", colour="r" * 5000))
        await h.call("POST", "/upload/image", 415, json={"image": "x"})
        nested = (b'--out\r\nContent-Disposition: form-data; name="image"\r\nContent-Type: multipart/mixed; '
                  b'boundary=in\r\n\r\n--in\r\nContent-Disposition: form-data; name="image"; filename="a.png"'
                  b'\r\n\r\nxx\r\n--in--\r\n\r\n--out--\r\n')
        await h.call("POST", "/upload/image", 400, data=nested,
                     headers={"Content-Type": "multipart/form-data; boundary=out"})

    serve(tmp_path, body, limits={"max_image_side": 256})


#: ComfyUI-style ways out of the input folder: every one is refused and writes nothing.
ABUSE = [
    {"filename": "../evil.png"}, {"filename": "..\\evil.png"}, {"filename": "/tmp/evil.png"},
    {"filename": "sub/evil.png"}, {"filename": ".evil.png"}, {"filename": "..evil/../evil.png"},
    {"subfolder": ".."}, {"subfolder": "../"}, {"subfolder": "../../evil"}, {"subfolder": "a/../../evil"},
    {"subfolder": "/tmp"}, {"subfolder": "C:/evil"}, {"subfolder": "a\\..\\..\\evil"}, {"subfolder": ".git"},
    {"subfolder": "a//b"}, {"subfolder": "a/./b"}, {"subfolder": "x\x00y"},
    {"type": "output"}, {"type": "temp"}, {"type": "../input"},
]


def test_upload_paths_cannot_leave_the_input_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()

    async def body(h):
        root = h.server.folders.upload_root
        root.mkdir(parents=True, exist_ok=True)
        (root / "link").symlink_to(outside, target_is_directory=True)
        for case in [*ABUSE, {"subfolder": "link"}, {"subfolder": "link/deeper"}]:
            fields = {k: v for k, v in case.items() if k != "filename"}
            for path in ("/upload/image", "/api/upload/image"):
                status, answer = await h.call("POST", path, data=form(png(), case.get("filename", "evil.png"),
                                                                      **fields))
                assert status in (400, 403), (case, status, answer)
                assert answer["message"], answer  # says what was refused
        written = [p for p in tmp_path.rglob("*") if "evil" in p.name or p.parent == outside]
        assert written == [] and not any(outside.iterdir())
        # a mask's original_ref is confined the same way
        await h.call("POST", "/upload/image", 200, data=form(png(), "base.png"))
        for ref in ({"filename": "../base.png", "type": "input"}, {"filename": "base.png", "subfolder": "..",
                                                                   "type": "input"},
                    {"filename": "base.png", "subfolder": "/etc", "type": "input"},
                    {"filename": "passwd", "subfolder": "../../../../etc", "type": "output"},
                    {"filename": "base.png", "type": "models"}, "not json", {"subfolder": "x"}):
            text = ref if isinstance(ref, str) else json.dumps(ref)
            status, answer = await h.call("POST", "/upload/mask", data=form(png(mode="RGBA", color=(0, 0, 0, 0)),
                                                                            "evil.png", original_ref=text))
            assert status in (400, 403, 404), (ref, status, answer)
        assert not [p for p in tmp_path.rglob("*") if "evil" in p.name]

    serve(tmp_path, body)


def test_a_mask_goes_into_the_alpha_of_its_original(tmp_path):
    async def body(h):
        root = h.server.folders.upload_root
        _, base = await h.call("POST", "/upload/image", 200, data=form(png((200, 100, 50), (8, 8)), "photo.png"))
        mask = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
        mask.putpixel((0, 0), (0, 0, 0, 0))
        out = io.BytesIO()
        mask.save(out, format="PNG")
        ref = json.dumps({"filename": base["name"], "subfolder": "", "type": "input"})
        _, masked = await h.call("POST", "/upload/mask", 200, data=form(out.getvalue(), "clipspace-mask.png",
                                                                        original_ref=ref, subfolder="clipspace"))
        assert masked == {"name": "clipspace-mask.png", "subfolder": "clipspace", "type": "input"}
        with Image.open(root / "clipspace" / "clipspace-mask.png") as stored:
            assert stored.mode == "RGBA"
            assert stored.getpixel((0, 0)) == (200, 100, 50, 0) and stored.getpixel((5, 5)) == (200, 100, 50, 255)
        _, wrong = await h.call("POST", "/upload/mask", 400, data=form(png(size=(4, 4)), "m.png", original_ref=ref))
        assert wrong["error"] == "size_mismatch" and "8x8" in wrong["message"]
        missing = json.dumps({"filename": "nothing.png", "type": "input"})
        await h.call("POST", "/upload/mask", 404, data=form(png(size=(8, 8)), "m.png", original_ref=missing))
        await h.call("POST", "/upload/mask", 400, data=form(png(size=(8, 8)), "m.png"))  # no original_ref

    serve(tmp_path, body)


def test_uploads_and_masks_respect_users(tmp_path):
    async def body(h):
        _, mine = await h.call("POST", "/upload/image", 200, data=form(png(), "alice.png"), headers=bearer(ALICE))
        ref = json.dumps({"filename": mine["name"], "type": "input"})
        # bob can neither take alice's name nor read her image through a mask
        _, taken = await h.call("POST", "/upload/image", 409, data=form(png((5, 5, 5)), "alice.png", overwrite="1"),
                                headers=bearer(BOB))
        assert taken["error"] == "name_taken"
        _, copy = await h.call("POST", "/upload/image", 200, data=form(png(), "alice.png"), headers=bearer(BOB))
        assert copy["name"] == "alice (1).png"  # the same bytes, but alice's file is not his to share
        await h.call("POST", "/upload/mask", 404, data=form(png(), "m.png", original_ref=ref), headers=bearer(BOB))
        await h.call("POST", "/upload/mask", 200, data=form(png(), "m.png", original_ref=ref), headers=bearer(ALICE))
        # only an admin frees the server's memory
        await h.call("POST", "/free", 403, json={"unload_models": True}, headers=bearer(BOB))
        await h.call("POST", "/free", 200, json={"unload_models": True}, headers=bearer(TOKEN))

    serve(tmp_path, body, token=TOKEN, users=users_file(tmp_path))


def test_new_routes_need_the_token_and_the_same_origin(tmp_path):
    async def body(h):
        for method, path in (("POST", "/upload/image"), ("POST", "/upload/mask"), ("GET", "/models"),
                             ("GET", "/models/checkpoints"), ("GET", "/embeddings"), ("GET", "/features"),
                             ("POST", "/free"), ("POST", "/api/upload/image"), ("GET", "/api/features"),
                             ("POST", "/api/free")):
            status, _ = await h.call(method, path)
            assert status == 401, (method, path, status)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        evil = {**auth, "Origin": "http://evil.example"}
        await h.call("POST", "/upload/image", 403, data=form(png()), headers=evil)
        await h.call("POST", "/free", 403, json={"free_memory": True}, headers=evil)
        # ComfyUI's clients post JSON without a JSON Content-Type: accepted, but not from another site
        raw = json.dumps({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}})
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        _, refused = await h.call("POST", "/prompt", 400, data=raw, headers={**auth, **form_type})
        assert refused["error"]["type"] == "invalid_prompt"  # read as JSON, then judged
        await h.call("POST", "/prompt", 403, data=raw, headers={**evil, **form_type})
        await h.call("POST", "/prompt", 403, data=raw, headers={**auth, **form_type, "Sec-Fetch-Site": "cross-site"})
        await h.call("GET", "/features", 200, headers=auth)

    serve(tmp_path, body, token=TOKEN)


def _engine(tmp_path):
    return Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models"))


def test_models_features_and_free_reach_the_engine(tmp_path):
    models = tmp_path / "models"
    for rel in ("checkpoints/mine.safetensors", "embeddings/style.pt", "embeddings/sub/other.safetensors"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"x")
    engine = _engine(tmp_path)

    async def body(h):
        _, folders = await h.call("GET", "/models", 200)
        assert {"checkpoints", "loras", "vae", "embeddings", "controlnet"} <= set(folders)
        assert "input" not in folders
        _, checkpoints = await h.call("GET", "/models/checkpoints", 200)
        assert "mine.safetensors" in checkpoints and "builtin:tiny-random" in checkpoints
        await h.call("GET", "/models/input", 404)
        _, unknown = await h.call("GET", "/models/nope", 404)
        assert "checkpoints" in unknown["message"]
        _, names = await h.call("GET", "/embeddings", 200)
        assert names == ["style", "sub/other"]
        _, lcm_models = await h.call("GET", "/api/models", 200)  # lcmgraph's own keeps its shape
        assert "folders" in lcm_models
        _, features = await h.call("GET", "/api/features", 200)
        assert features == {"supports_preview_metadata": False, "max_upload_size": h.server.limits.max_upload_bytes}
        ws = await h.client.ws_connect("/ws?clientId=flags")
        assert (await ws.receive_json(timeout=10))["type"] == "status"
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        assert await ws.receive_json(timeout=10) == {"type": "feature_flags", "data": features}
        await ws.close()

        async def run(seed):
            prompt = api_txt2img()
            prompt["ks"]["inputs"]["seed"] = seed
            _, queued = await h.call("POST", "/prompt", 200, json={"prompt": prompt})
            job = await h.wait(queued["prompt_id"], timeout=120)
            assert job["status"] == "done", job

        manager = engine.service("diffusion.models")
        await run(1)
        loads = manager.loads
        assert manager.loaded_keys() and len(engine.cache.memory) > 0
        await h.call("POST", "/free", 200, json={"unload_models": True})
        assert manager.loaded_keys() == [] and len(engine.cache.memory) > 0
        await h.call("POST", "/api/free", 200, json={"free_memory": True})
        assert len(engine.cache.memory) == 0
        await h.call("POST", "/free", 200)  # nothing asked: nothing done
        await run(2)  # the next job loads what it needs again
        assert manager.loads > loads and manager.loaded_keys()

    serve(tmp_path, body, engine=engine, timeout=240)
