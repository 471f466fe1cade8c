"""Fuzz the API on loopback with a few thousand mutated workflows, malformed
bodies, hostile paths and WebSocket junk: never a 5xx, and the server keeps
serving and running jobs afterwards. Seeded, bounded in count and time."""

import asyncio
import copy
import json
import random
import time

from yarl import URL

from tests.server.harness import const_doc, link, serve, solid_doc, workflow

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
