"""Fuzz the API on loopback: never a 5xx, and the server keeps serving and
running jobs afterwards. Seeded, bounded in count and time.

- a few thousand mutated lcmgraph workflows, malformed bodies, hostile paths
  and WebSocket junk;
- every route the router has (enumerated, so a new route is fuzzed without
  editing this file) with ComfyUI-shaped garbage: mutations of the real
  ComfyUI files in tests/comfy/workflows (tests/comfy/mutations.py), /prompt
  bodies, PNGs carrying them, deep graphs, junk path parameters, queries,
  headers and methods."""

import asyncio
import copy
import io
import json
import random
import re
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import FormData
from yarl import URL

from lcmgraph import Engine, EngineConfig
from lcmgraph.comfy import ComfyImportError, load_any
from tests.comfy import mutations
from tests.server.harness import PACKS, const_doc, link, serve, solid_doc, workflow

SEED = 20261126
WORKFLOWS = 3000
RAW_BODIES = 600
PATHS = 800
WS_MESSAGES = 200
TIME_BUDGET = 60.0

JUNK = [None, True, False, 0, -1, 1, 2**31, 2**70, -(2**63), 1e308, -1e-308, 0.5, "", "x", "x" * 5000,
        "../../etc/passwd", "builtin:", "builtin:nothing", "\u0000", "\ud800", "é😀", [], [1, 2], [[[]]], {},
        {"link": []}, {"link": ["c"]}, {"link": ["c", "value"]}, {"link": ["nowhere", "x"]}, {"link": [1, 2]},
        {"link": ["c", "value"], "x": 1}, {"value": {"a": 1}}, {"value": None}, {"other": 1}]
NODE_TYPES = ["Constant", "Add", "Scale", "Collect", "SolidImage", "Fail", "TensorSum", "MakeTensor",
              "Noise", "PreviewSteps", "Nope", "", "constant"]


def bases():
    chain = workflow({"c": ("Constant", {"value": 2}),
                      "s": ("Scale", {"x": link("c", "value"), "factor": 3, "repeat": 2, "mode": "pow"}),
                      "a": ("Add", {"a": link("s", "y"), "b": link("c", "value")}),
                      "out": ("Collect", {"value": link("a", "sum"), "label": "sum"})}, outputs=["out"])
    return [const_doc(1), solid_doc(3), chain, workflow({"p": ("PreviewSteps", {"steps": 2})})]


def paths_in(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_in(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_in(child, (*prefix, index))


def mutate(rng, doc):
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        targets = list(paths_in(doc))
        path = rng.choice(targets)
        if not path:
            doc = rng.choice([doc, rng.choice(JUNK), {"nodes": rng.choice(JUNK)}])
            if not isinstance(doc, dict):
                return doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = rng.random()
        if action < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.6:
            parent[key] = copy.deepcopy(rng.choice(JUNK))
        elif action < 0.75 and isinstance(parent, dict):
            parent[rng.choice(["type", "inputs", "link", "value", "x", "..", "ui", "meta", "zz"])] = \
                copy.deepcopy(rng.choice(JUNK))
        elif action < 0.9 and isinstance(parent, dict) and isinstance(parent.get("type"), str):
            parent["type"] = rng.choice(NODE_TYPES)
        elif isinstance(parent, dict):
            parent[rng.choice(["../x", "a" * 70, "ok_id", "\ud800", "", ".dot"])] = parent.pop(key)
    return doc


def submission(rng, doc):
    body = {"workflow": doc}
    if rng.random() < 0.3:
        body["client_id"] = rng.choice(["fuzz", "", "a b", "x" * 65, 7, None])
    if rng.random() < 0.2:
        body["outputs"] = rng.choice([["out"], [], "out", [1], None, ["nowhere"]])
    if rng.random() < 0.1:
        body[rng.choice(["front", "title", "extra"])] = rng.choice(JUNK)
    return body


def raw_body(rng):
    text = json.dumps({"workflow": rng.choice(bases())})
    kind = rng.randrange(6)
    if kind == 0:
        return text[: rng.randrange(len(text))].encode()
    if kind == 1:
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if kind == 3:
        depth = rng.choice([63, 64, 65, 1000, 100000])
        return ('{"workflow": ' + "[" * depth + "]" * depth + "}").encode()
    if kind == 4:
        return ('{"workflow": {"nodes": {"c": {"type": "Constant", "inputs": {"value": ' + "9" * rng.choice([10, 400, 5000])
                + "}}}}}").encode()
    return rng.choice([b"", b"null", b"[]", b'"x"', b"1e999", b"-Infinity", b'{"workflow": {}}', b"\xff\xfe"])


SEGMENTS = [".", "..", "%2e%2e", "%2E%2e%2f", "%2f", "%00", "%5c", "a", "solid_3.png", "~", "%252e%252e",
            "%c0%ae%c0%ae", "%C3%A9", "con", "x" * 300, "", "jobs.sqlite3", "..%2f", "%2e", "*", "?a=1", "#"]


def hostile_path(rng):
    tail = "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 5)))
    head = rng.choice(["/api/files/output/", "/api/files/input/", "/api/files/temp/", "/api/files/",
                       "/api/workflows/", "/api/models/", "/api/jobs/", "/", "/api/", "/api/jobs/x/"])
    return head + tail + rng.choice(["", ".png", "?thumbnail=64", "?thumbnail=-1", "?thumbnail=99999999999999999"])


def test_fuzzed_requests_never_cause_a_5xx(tmp_path):
    async def body(h):
        rng = random.Random(SEED)
        started = time.monotonic()
        statuses: dict[int, int] = {}
        base = f"http://127.0.0.1:{h.client.port}"

        async def send(method, path, **kwargs):
            async with h.client.session.request(method, URL(base + path, encoded=True), **kwargs) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                assert response.status < 500, (method, path, kwargs, response.status, await response.text())

        for _ in range(WORKFLOWS):
            doc = mutate(rng, rng.choice(bases()))
            data = json.dumps(submission(rng, doc), allow_nan=True).encode("utf-8", "surrogatepass")
            endpoint = "/api/jobs" if rng.random() < 0.8 else "/api/validate"
            await send("POST", endpoint, data=data, headers={"Content-Type": "application/json"})
        for _ in range(RAW_BODIES):
            method = rng.choice(["POST"] * 8 + ["PUT", "DELETE"])
            endpoint = rng.choice(["/api/jobs", "/api/validate", "/api/interrupt", "/api/queue/clear",
                                   "/api/jobs/abc/move", "/api/upload", "/api/jobs/abc/cancel"])
            ctype = rng.choice(["application/json", "application/json", "text/plain", "multipart/form-data",
                                "multipart/form-data; boundary=x", ""])
            await send(method, endpoint, data=raw_body(rng), headers={"Content-Type": ctype})
        for _ in range(PATHS):
            await send(rng.choice(["GET", "GET", "HEAD", "POST"]), hostile_path(rng))
        ws = await h.client.ws_connect("/api/ws?client_id=fuzz")
        for _ in range(WS_MESSAGES):
            choice = rng.random()
            if choice < 0.5:
                await ws.send_str(raw_body(rng).decode("utf-8", "replace")[:60000])  # under the 64 KiB limit
            elif choice < 0.8:
                await ws.send_json({"type": rng.choice(["ping", "subscribe", "x", None, 3]),
                                    "scope": rng.choice(JUNK[:12]), "data": rng.choice(JUNK[:12])})
            else:
                await ws.send_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        await ws.send_json({"type": "ping", "data": "last"})
        async with asyncio.timeout(10):
            while (await ws.receive_json()).get("data") != "last":
                pass
        await ws.close()
        assert time.monotonic() - started < TIME_BUDGET
        total = sum(statuses.values())
        assert total == WORKFLOWS + RAW_BODIES + PATHS
        assert statuses.get(201, 0) > 20, statuses  # some mutants are valid and were run

        await h.call("POST", "/api/queue/clear", 200)
        await h.call("POST", "/api/interrupt", 200)
        job = await h.wait((await h.submit(const_doc(42)))["job"]["id"], timeout=20)
        assert job["status"] == "done" and job["outputs"]["out"]["values"] == [42.0]

    serve(tmp_path, body, timeout=90)


# -- every route, ComfyUI-shaped garbage ------------------------------------------

ROUTE_REQUESTS = 5600  # besides the deep graphs and the few requests that set the scene
MIN_PER_ROUTE = 40
#: ComfyUI's upload form: its fields, ways out of the input folder among the values.
UPLOAD_FIELDS = ["image", "image", "image", "overwrite", "subfolder", "type", "original_ref", "x", "workflow"]
UPLOAD_NAMES = ["a.png", "../b.png", "", "é.png", "..\\c.png", "/tmp/d.png", ".e.png", "sub/f.png", "g.jpg",
                "%2e%2e%2fh.png", "x" * 300 + ".png"]
SUBFOLDERS = ["", "clipspace", "a/b", "..", "../..", "a/../../b", "/etc", "C:/x", ".git", "a\\..\\b", "\x00",
              "x" * 2000]
FOLDER_TYPES = ["input", "output", "temp", "", "models", "../input"]


def _original_ref(rng) -> str:
    ref = {"filename": rng.choice(UPLOAD_NAMES + ["scene.png"]), "subfolder": rng.choice(SUBFOLDERS),
           "type": rng.choice(FOLDER_TYPES)}
    for key in rng.sample(sorted(ref), rng.randint(0, 2)):
        ref[key] = mutations.junk(rng, 2)
    text = json.dumps(ref)
    return rng.choice([text, text, text[: rng.randrange(len(text) + 1)], "null", "[]"])


#: Sent to every POST route; 20,000 nodes are more than the 2 MB body limit allows (413).
DEEP_GRAPHS = [("api", 3000, "LoraLoaderModelOnly"), ("api", 3000, "ControlNetApply"), ("ui", 3000, "Reroute"),
               ("ui", 3000, "bypass"), ("api", 20000, "LoraLoaderModelOnly")]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
FIELDS = ["workflow", "allow_missing", "outputs", "client_id", "front", "title", "position", "job", "prompt",
          "extra_data", "id", "name", "token", "overwrite", "scope", "unload_models", "free_memory", "delete",
          "clear", "prompt_id", "number"]
QUERY_KEYS = ["client_id", "thumbnail", "workflow", "limit", "offset", "allow_missing", "name", "scope", "overwrite",
              "folder", "token", "before", "x", "filename", "subfolder", "type", "max_items", "clientId", "preview"]
QUERY_VALUES = ["", "1", "0", "-1", "true", "false", "all", "own", "x" * 300, "%00", "%ff", "99999999999999999999999",
                "1e3", "..%2f..", "%C3%A9", "a%20b", "NaN"]
PARAM_JUNK = ["x", "", "0", "-1", "..", "%2e%2e", "%2f", "%00", "%ff", "a" * 300, "%C3%A9", "con", "*", ".json",
              "output", "input", "temp", "checkpoints", "loras", "a.png", "..%2f..%2fetc%2fpasswd", "%252e%252e"]


def _png(rng) -> bytes:
    """A small PNG carrying ComfyUI text chunks (or lcmgraph's) made of mutants."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    api = rng.choice(mutations.API_DOCS)
    ui = rng.choice(mutations.UI_DOCS)
    for key, doc in (("prompt", api), ("workflow", ui), ("lcmgraph.workflow", const_doc(1))):
        if rng.random() < 0.6:
            text = json.dumps(mutations.mutate(rng, doc) if rng.random() < 0.7 else doc)
            info.add_text(key, text[: rng.randrange(len(text) + 1)] if rng.random() < 0.1 else text)
    buffer = io.BytesIO()
    Image.new("RGB", (rng.choice([1, 8, 16]), 8)).save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    if rng.random() < 0.1:
        data = data[: rng.randrange(8, len(data))]
    return data


def _comfy_body(rng, registry) -> dict:
    document = mutations.random_document(rng, max_depth=30)
    if rng.random() < 0.35:  # an lcmgraph document from a ComfyUI one, mutated: what /api/comfy/export gets
        try:
            document = load_any(document, registry)
            document = mutations.mutate(rng, document) if rng.random() < 0.5 else document
        except ComfyImportError:
            pass
    body = {"workflow": document} if rng.random() < 0.95 else {"prompt": document}
    for _ in range(rng.choice([0, 0, 0, 0, 0, 1, 1, 2])):
        body[rng.choice(FIELDS)] = mutations.junk(rng, 8)
    if rng.random() < 0.2:
        body["allow_missing"] = rng.choice([True, True, False, "yes", 1])
    return body


def _body(rng, pngs, registry, takes_files: bool) -> dict:
    """Keyword arguments for the request: data and Content-Type. Routes whose
    path speaks of images, uploads or files get images more often."""
    roll = 0.70 + 0.22 * rng.random() if takes_files and rng.random() < 0.6 else rng.random()
    if roll < 0.50:
        return {"data": json.dumps(_comfy_body(rng, registry)).encode(), "headers": {"Content-Type": "application/json"}}
    if roll < 0.60:
        document = rng.choice([mutations.random_document(rng, max_depth=30), mutations.junk(rng, 8),
                               {rng.choice(FIELDS): mutations.junk(rng, 8)}])
        return {"data": json.dumps(document).encode(), "headers": {"Content-Type": "application/json"}}
    if roll < 0.70:
        ctype = rng.choice(["application/json", "text/plain", "multipart/form-data; boundary=x", ""])
        return {"data": raw_body(rng), "headers": {"Content-Type": ctype}}
    if roll < 0.82:
        ctype = rng.choice(["image/png", "image/png", "application/octet-stream", "image/jpeg", "text/plain"])
        return {"data": rng.choice(pngs), "headers": {"Content-Type": ctype}}
    if roll < 0.92:
        form = FormData()
        if rng.random() < 0.3:  # a plausible upload, so that some get past the form to the decoder
            form.add_field("image", rng.choice(pngs), filename=rng.choice(["a.png", "é.png", "g.jpg"]),
                           content_type="image/png")
            form.add_field("subfolder", rng.choice(["", "clipspace", "a/b"]))
            if rng.random() < 0.5:
                form.add_field("original_ref", json.dumps({"filename": "scene.png", "type": "input"}))
            return {"data": form}
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            field = rng.choice(UPLOAD_FIELDS)
            if field == "image":
                form.add_field("image", rng.choice(pngs), filename=rng.choice(UPLOAD_NAMES),
                               content_type="image/png")
            elif field == "subfolder":
                form.add_field(field, rng.choice(SUBFOLDERS))
            elif field == "type":
                form.add_field(field, rng.choice(FOLDER_TYPES))
            elif field == "original_ref":
                form.add_field(field, _original_ref(rng))
            else:
                form.add_field(field, rng.choice(["true", "false", "1", "x" * 100]))
        return {"data": form}
    return {}


def _path(rng, canonical: str, known: dict[str, list[str]]) -> str:
    def fill(match) -> str:
        name = match.group(1).split(":")[0]
        roll = rng.random()
        if roll < 0.4 and known.get(name):
            return quote(rng.choice(known[name]), safe="", errors="surrogatepass")
        if roll < 0.5:
            return quote(str(mutations.junk(rng, 2)), safe="", errors="surrogatepass")[:400]
        return "/".join(rng.choice(PARAM_JUNK) for _ in range(rng.choice([1, 1, 1, 2, 3])))
    path = re.sub(r"\{([^}]+)\}", fill, canonical)
    if rng.random() < 0.5:
        query = "&".join(f"{rng.choice(QUERY_KEYS)}={rng.choice(QUERY_VALUES)}" for _ in range(rng.randint(1, 3)))
        path += "?" + query
    return path


def _engine(tmp_path: Path) -> Engine:
    """The test packs and the installed packs: the diffusion pack's ComfyUI mappings convert the mutants."""
    return Engine(EngineConfig(plugin_dirs=PACKS, plugins_from_env=False, load_entry_points=True,
                               home=tmp_path / "home", models_dir=tmp_path / "models", output_dir=tmp_path / "out"))


def _examples(folder: Path, rng) -> None:
    """The workflow folder the server lists: ComfyUI files, mutants, a broken and a deeply nested one."""
    folder.mkdir()
    for i, document in enumerate([*mutations.SEEDS[:6], *(mutations.random_document(rng) for _ in range(6))]):
        (folder / f"comfy_{i}.json").write_text(json.dumps(document))
    (folder / "broken.json").write_text('{"meta": ')
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "digits.json").write_text('{"meta": ' + "7" * 5000 + "}")


def test_every_route_survives_comfy_shaped_garbage(tmp_path):
    rng = random.Random(SEED + 1)
    pngs = [_png(rng) for _ in range(40)]
    _examples(tmp_path / "examples", rng)

    async def body(h):
        started = time.monotonic()
        app = h.client.server.app
        routes = sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None})
        assert len(routes) >= 20, routes  # the enumeration sees the server's routes
        base = f"http://127.0.0.1:{h.client.port}"
        hits: dict[tuple[str, str], int] = dict.fromkeys(routes, 0)
        statuses: dict[tuple[str, int], int] = {}
        known: dict[str, list[str]] = {"job_id": [], "folder": ["output", "input", "temp", "checkpoints"],
                                       "name": ["comfy_0", "comfy_7.json", "broken", "deep.json", "digits"],
                                       "path": ["index.html", "assets/x.js", "api", "favicon.ico"]}

        async def send(method, path, route, **kwargs):
            async with h.client.session.request(method, URL(base + path, encoded=True), **kwargs) as response:
                raw = await response.read()
                assert response.status < 500, (method, path, str(kwargs)[:2000], response.status, raw[:2000])
            statuses[(route[1], response.status)] = statuses.get((route[1], response.status), 0) + 1
            if response.status in (200, 201) and response.content_type == "application/json" and raw:
                try:
                    reply = json.loads(raw)
                except (ValueError, RecursionError):  # an example file served as it is
                    return
                job = reply.get("job") if isinstance(reply, dict) else None
                if isinstance(job, dict) and isinstance(job.get("id"), str):
                    known["job_id"].append(job["id"])
                if isinstance(reply, dict) and isinstance(reply.get("name"), str) and reply.get("folder"):
                    known["name"].append(reply["name"])

        async def hit(route):
            method = route[0] if rng.random() < 0.9 else rng.choice(METHODS)
            takes_files = any(word in route[1] for word in ("image", "upload", "file"))
            wants_body = method not in ("GET", "HEAD") or rng.random() < 0.05
            kwargs = _body(rng, pngs, h.server.engine.registry, takes_files) if wants_body else {}
            if rng.random() < 0.05:
                kwargs.setdefault("headers", {})["Origin"] = rng.choice(["http://evil.example", "null", "x"])
            hits[route] += 1
            await send(method, _path(rng, route[1], known), route, **kwargs)

        # Scene: a job that runs, an upload, so that ids and names in paths are sometimes real.
        known["job_id"].append((await h.submit(const_doc(7)))["job"]["id"])
        form = FormData()
        form.add_field("image", pngs[0], filename="scene.png", content_type="image/png")
        await h.call("POST", "/api/upload", data=form)
        for route in routes:
            for _ in range(MIN_PER_ROUTE):
                await hit(route)
        # POSTs weigh more, the converters most (the assertions below are about them; their weight
        # is fixed against the route count, so that routes added later do not starve them)
        converters = sum(1 for method, path in routes if method == "POST" and ("/comfy/" in path or "from-image" in path))
        heavy = max(6, len(routes) // max(1, converters))
        weights = [(heavy if "/comfy/" in path or "from-image" in path else 4) if method == "POST" else 1
                   for method, path in routes]
        for route in rng.choices(routes, weights, k=ROUTE_REQUESTS - MIN_PER_ROUTE * len(routes)):
            await hit(route)
        posts = [r for r in routes if r[0] == "POST"]
        for kind, length, node_kind in DEEP_GRAPHS:
            document = mutations.api_chain(length, node_kind) if kind == "api" else mutations.ui_chain(length, node_kind)
            data = json.dumps({"workflow": document}).encode()
            for route in posts:
                hits[route] += 1
                await send("POST", re.sub(r"\{[^}]+\}", "x", route[1]), route, data=data,
                           headers={"Content-Type": "application/json"})
        elapsed = time.monotonic() - started

        total = sum(hits.values())
        assert total >= 5000 and min(hits.values()) >= MIN_PER_ROUTE, hits
        print(f"\nfuzzed {total} requests in {elapsed:.1f} s")  # a speed figure, not a test condition
        # The garbage reached the converters, not only the doors: some imports succeed, some are refused.
        assert statuses.get(("/api/comfy/import", 200), 0) > 20, statuses
        assert statuses.get(("/api/comfy/import", 400), 0) > 20, statuses
        assert statuses.get(("/api/workflow/from-image", 200), 0) > 5, statuses
        assert statuses.get(("/api/comfy/export", 200), 0) + statuses.get(("/api/comfy/export", 400), 0) > 20

        # ComfyUI's uploads took images (into the input folder and nowhere else)
        assert statuses.get(("/upload/image", 200), 0) + statuses.get(("/api/upload/image", 200), 0) > 5, statuses
        server = h.server
        places = [server.folders.upload_root, server.output_root, server.engine.home, tmp_path / "examples",
                  tmp_path / "data"]
        strays = [p for p in tmp_path.rglob("*") if p.is_file() and not any(r in p.parents for r in places)]
        assert strays == [], strays

        await h.call("POST", "/api/queue/clear", 200)
        await h.call("POST", "/api/interrupt", 200)
        job = await h.wait((await h.submit(const_doc(42)))["job"]["id"], timeout=20)
        assert job["status"] == "done" and job["outputs"]["out"]["values"] == [42.0]

    serve(tmp_path, body, timeout=150, engine=_engine(tmp_path), workflows_dir=tmp_path / "examples")
