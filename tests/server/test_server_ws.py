"""The WebSocket event stream: own jobs, scope "all", previews, commands."""

import asyncio
import base64
import io

from PIL import Image

from tests.server.harness import const_doc, serve, slow_doc, workflow


async def receive_until(ws, predicate, timeout=10.0):
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive_json()
            seen.append(message)
            if predicate(message):
                return seen


async def drain(ws, quiet=0.2):
    """Every message that arrives until the socket is quiet for ``quiet`` seconds."""
    seen = []
    while True:
        try:
            seen.append(await ws.receive_json(timeout=quiet))
        except TimeoutError:
            return seen


def is_end(job_id):
    return lambda m: m.get("job") == job_id and m["type"] in ("job_done", "job_failed", "job_interrupted")


def test_a_client_sees_its_own_jobs_and_a_watcher_sees_all(tmp_path):
    async def body(h):
        alice = await h.client.ws_connect("/api/ws?client_id=alice")
        bob = await h.client.ws_connect("/api/ws?client_id=bob")
        watcher = await h.client.ws_connect("/api/ws?client_id=ops&scope=all")
        for ws, who, scope in ((alice, "alice", "own"), (bob, "bob", "own"), (watcher, "ops", "all")):
            hello = await ws.receive_json()
            assert hello == {"type": "hello", "client_id": who, "scope": scope,
                             "queue": {"type": "queue", "running": [], "queued": 0}}
        job_id = (await h.submit(workflow({"p": ("PreviewSteps", {"steps": 3})}), client_id="alice"))["job"]["id"]

        seen = await receive_until(alice, is_end(job_id))
        jobs = [m for m in seen if m["type"] != "queue"]
        kinds = [m["type"] for m in jobs]
        assert kinds[:4] == ["job_queued", "job_started", "run_start", "node_start"]
        assert kinds[-4:] == ["node_output", "node_done", "run_done", "job_done"]
        assert all(m["job"] == job_id and m["client_id"] == "alice" for m in jobs)
        progress = [m for m in jobs if m["type"] == "node_progress"]
        assert [p["step"] for p in progress][0] == 1 and progress[-1]["step"] == 3
        assert all(p["node"] == "p" and p["total"] == 3 for p in progress)
        preview = progress[-1]["preview"]
        assert preview.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(preview.split(",", 1)[1])))
        assert (image.format, image.size) == ("JPEG", (256, 160))
        done = jobs[-1]
        assert done["outputs"] == {"p": {"values": [3]}} and done["error"] is None
        assert done["executed"] == ["p"]

        watched = await receive_until(watcher, is_end(job_id))
        assert [m["type"] for m in watched if m["type"] != "queue"] == kinds

        await h.wait((await h.submit(const_doc(1), client_id="carol"))["job"]["id"])
        await asyncio.sleep(0.1)  # past the queue notice delay
        bob_saw = await drain(bob)
        assert {m["type"] for m in bob_saw} == {"queue"}, bob_saw
        for ws in (alice, bob, watcher):
            await ws.close()

    serve(tmp_path, body)


def test_commands_subscribe_ping_and_errors(tmp_path):
    async def body(h):
        ws = await h.client.ws_connect("/api/ws?client_id=dave")
        await ws.receive_json()
        await ws.send_json({"type": "ping", "data": 7})
        assert await ws.receive_json() == {"type": "pong", "data": 7}
        await ws.send_str("not json")
        assert await ws.receive_json() == {"type": "error", "message": "a WebSocket message must be a JSON object"}
        await ws.send_json({"type": "dance"})
        assert await ws.receive_json() == {"type": "error",
                                           "message": "unknown message type 'dance' (known: ping, subscribe)"}
        await ws.send_json({"type": "subscribe", "scope": "everything"})
        assert await ws.receive_json() == {"type": "error", "message": "subscribe: scope must be one of own, all"}
        await ws.send_bytes(b"\x00")
        assert await ws.receive_json() == {"type": "error",
                                           "message": "binary messages are not understood; send JSON text"}
        await ws.send_json({"type": "subscribe", "scope": "all"})
        assert await ws.receive_json() == {"type": "subscribed", "scope": "all"}
        job_id = (await h.submit(const_doc(2), client_id="someone-else"))["job"]["id"]
        seen = await receive_until(ws, is_end(job_id))
        assert any(m["type"] == "job_queued" and m["job"] == job_id for m in seen)
        await ws.close()

        big = await h.client.ws_connect("/api/ws")
        await big.receive_json()
        await big.send_str("x" * (64 * 1024 + 1))
        closing = await big.receive()
        assert (closing.type.name, big.close_code) == ("CLOSE", 1009)
        await big.close()

        status, err = await h.call("GET", "/api/ws?client_id=bad id", 400)
        assert err["message"] == "GET /api/ws: client_id must be 1-64 characters of letters, digits, _ . : -"
        status, err = await h.call("GET", "/api/ws?scope=some", 400)
        assert err["message"] == "GET /api/ws: scope must be one of own, all"

    serve(tmp_path, body)


def test_interruption_and_failure_reach_the_owner(tmp_path):
    async def body(h):
        ws = await h.client.ws_connect("/api/ws?client_id=erin")
        await ws.receive_json()
        job_id = (await h.submit(slow_doc(steps=1000, delay=0.02), client_id="erin"))["job"]["id"]
        await receive_until(ws, lambda m: m["type"] == "node_progress")
        await h.call("POST", "/api/interrupt", 200)
        seen = await receive_until(ws, is_end(job_id))
        assert [m["type"] for m in seen if m["type"] not in ("node_progress", "queue")][-2:] == [
            "interrupted", "job_interrupted"]
        assert seen[-1]["error"]["code"] == "interrupted"
        await ws.close()

    serve(tmp_path, body)


def test_many_clients_each_get_their_events(tmp_path):
    async def body(h):
        clients = [await h.client.ws_connect(f"/api/ws?client_id=c{i}") for i in range(20)]
        for ws in clients:
            await ws.receive_json()
        ids = [(await h.submit(const_doc(i), client_id=f"c{i}"))["job"]["id"] for i in range(20)]
        for ws, job_id in zip(clients, ids, strict=True):
            seen = await receive_until(ws, is_end(job_id))
            assert {m["job"] for m in seen if "job" in m} == {job_id}
            assert seen[-1]["type"] == "job_done"
            await ws.close()

    serve(tmp_path, body)


def test_websocket_client_limit_answers_429(tmp_path):
    async def body(h):
        first = await h.client.ws_connect("/api/ws")
        await first.receive_json()
        status, err = await h.call("GET", "/api/ws", 429, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                                   "Sec-WebSocket-Version": "13",
                                                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert err["message"] == "GET /api/ws: 1 WebSocket clients are connected (the limit)"
        await first.close()

    serve(tmp_path, body, limits={"max_ws_clients": 1})
