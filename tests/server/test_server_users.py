"""Per-user tokens: a user sees and controls only its own jobs, files and
events; an admin sees and controls all."""

import asyncio
import hashlib
import json

import pytest

from lcmgraph.server.users import UsersFileError, UserTable
from tests.server.harness import const_doc, serve, slow_doc, solid_doc
from tests.server.test_server_ws import drain, is_end, receive_until

ADMIN = "admin-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef01"
OPS = "ops-token-0123456789abcdef012"


def users_file(tmp_path):
    path = tmp_path / "users.txt"
    bob_hash = hashlib.sha256(BOB.encode()).hexdigest()
    path.write_text(f"# name:token\nalice:{ALICE}\nbob:sha256:{bob_hash}\n\nops:{OPS}:admin\n")
    return UserTable.from_file(path)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_users_see_and_control_only_their_own_jobs(tmp_path):
    async def body(h):
        alice, bob, ops, admin = bearer(ALICE), bearer(BOB), bearer(OPS), bearer(ADMIN)
        h.headers = alice
        _, info = await h.call("GET", "/api", 200)
        assert info["user"] == {"name": "alice", "admin": False} and info["auth"] is True
        done = await h.wait((await h.submit(solid_doc(4), client_id="ed"))["job"]["id"])
        assert done["owner"] == "alice"
        image = done["outputs"]["img"]["images"][0]["url"]
        running = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(running, status=("running",))
        queued = [(await h.submit(const_doc(i)))["job"]["id"] for i in range(2)]

        h.headers = bob
        bobs = (await h.submit(const_doc(9), client_id="ed"))["job"]["id"]
        for path in (f"/api/jobs/{done['id']}", f"/api/jobs/{running}"):
            _, err = await h.call("GET", path, 404)
            assert err["error"] == "no_such_job"
        await h.call("POST", f"/api/jobs/{queued[0]}/cancel", 404)
        await h.call("POST", f"/api/jobs/{queued[0]}/move", 404, json={"position": 1})
        await h.call("DELETE", f"/api/history/{done['id']}", 404)
        await h.call("POST", "/api/history/delete", 404, json={"ids": [done["id"]]})
        await h.call("GET", image, 404)
        await h.call("GET", f"{image}?thumbnail=32", 404)
        _, queue = await h.call("GET", "/api/queue", 200)
        assert queue["running"] == [] and [j["id"] for j in queue["queued"]] == [bobs]
        assert queue["queued"][0]["position"] == 2  # its place in the whole queue
        _, history = await h.call("GET", "/api/history", 200)
        assert history["total"] == 0
        _, stopped = await h.call("POST", "/api/interrupt", 200)
        assert stopped == {"interrupted": []}
        _, stopped = await h.call("POST", "/api/interrupt", 200, json={"job": running})
        assert stopped == {"interrupted": []}
        _, cleared = await h.call("POST", "/api/queue/clear", 200)
        assert cleared == {"cancelled": [bobs]}
        _, deleted = await h.call("POST", "/api/history/delete", 200, json={"all": True})
        assert deleted["deleted"] == [bobs]

        h.headers = alice
        _, queue = await h.call("GET", "/api/queue", 200)
        assert [j["id"] for j in queue["running"]] == [running] and len(queue["queued"]) == 2
        _, moved = await h.call("POST", f"/api/jobs/{queued[1]}/move", 200, json={"position": 0})
        assert moved == {"job": queued[1], "position": 0}
        await h.call("GET", image, 200)
        _, history = await h.call("GET", "/api/history", 200)
        assert [j["id"] for j in history["jobs"]] == [done["id"]]

        h.headers = ops  # an admin from the users file
        _, history = await h.call("GET", "/api/history", 200)
        assert [j["id"] for j in history["jobs"]] == [done["id"]]  # alice's (bob deleted his)
        _, queue = await h.call("GET", "/api/queue", 200)
        assert len(queue["running"]) == 1 and len(queue["queued"]) == 2
        await h.call("GET", image, 200)
        h.headers = admin  # --token
        _, info = await h.call("GET", "/api", 200)
        assert info["user"] == {"name": "admin", "admin": True}
        _, stopped = await h.call("POST", "/api/interrupt", 200)
        assert stopped == {"interrupted": [running]}
        await h.call("POST", "/api/queue/clear", 200)

    serve(tmp_path, body, token=ADMIN, users=users_file(tmp_path))


def test_a_user_moves_its_jobs_only_among_its_own_places(tmp_path):
    async def body(h):
        h.headers = bearer(ADMIN)
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        order = []
        for who in (ALICE, BOB, ALICE, BOB):
            h.headers = bearer(who)
            order.append((await h.submit(const_doc(len(order))))["job"]["id"])
        h.headers = bearer(BOB)
        _, moved = await h.call("POST", f"/api/jobs/{order[3]}/move", 200, json={"position": 0})
        assert moved["position"] == 1  # before bob's other job, not before alice's
        front = (await h.submit(const_doc(7), front=True))
        assert front["position"] == 1
        h.headers = bearer(ADMIN)
        _, queue = await h.call("GET", "/api/queue", 200)
        assert [j["id"] for j in queue["queued"]] == [order[0], front["job"]["id"], order[2], order[3], order[1]]
        await h.call("POST", "/api/queue/clear", 200)
        await h.call("POST", "/api/interrupt", 200)

    serve(tmp_path, body, token=ADMIN, users=users_file(tmp_path))


def test_websocket_events_reach_only_the_owner_and_admins(tmp_path):
    async def body(h):
        alice_ws = await h.client.ws_connect("/api/ws?client_id=a&scope=all", headers=bearer(ALICE))
        bob_ws = await h.client.ws_connect("/api/ws?client_id=a&scope=all", headers=bearer(BOB))  # same label
        ops_ws = await h.client.ws_connect(f"/api/ws?client_id=o&scope=all&token={OPS}")
        for ws in (alice_ws, bob_ws, ops_ws):
            await ws.receive_json()
        h.headers = bearer(ALICE)
        job = (await h.submit(const_doc(1), client_id="a"))["job"]["id"]
        seen = await receive_until(alice_ws, is_end(job))
        assert seen[-1]["type"] == "job_done"
        watched = await receive_until(ops_ws, is_end(job))
        assert [m["type"] for m in watched if "job" in m] == [m["type"] for m in seen if "job" in m]
        await asyncio.sleep(0.1)
        assert {m["type"] for m in await drain(bob_ws)} <= {"queue"}  # counts only, never alice's job
        for ws in (alice_ws, bob_ws, ops_ws):
            await ws.close()

    serve(tmp_path, body, token=ADMIN, users=users_file(tmp_path))


def test_uploads_of_other_users_are_hidden(tmp_path):
    import io

    from aiohttp import FormData
    from PIL import Image

    def png():
        out = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(out, format="PNG")
        return out.getvalue()

    async def body(h):
        form = FormData()
        form.add_field("image", png(), filename="mine.png", content_type="image/png")
        _, uploaded = await h.call("POST", "/api/upload", 201, data=form, headers=bearer(ALICE))
        await h.call("GET", uploaded["url"], 200, headers=bearer(ALICE))
        await h.call("GET", uploaded["url"], 404, headers=bearer(BOB))
        await h.call("GET", uploaded["url"], 200, headers=bearer(ADMIN))
        _, listing = await h.call("GET", "/api/models/input", 200, headers=bearer(BOB))
        assert "mine.png" not in listing["files"]
        _, listing = await h.call("GET", "/api/models/input", 200, headers=bearer(ALICE))
        assert "mine.png" in listing["files"]
        form = FormData()
        form.add_field("image", png(), filename="mine.png", content_type="image/png")
        form.add_field("overwrite", "true")
        _, err = await h.call("POST", "/api/upload", 409, data=form, headers=bearer(BOB))
        assert err["error"] == "name_taken"

    serve(tmp_path, body, token=ADMIN, users=users_file(tmp_path))


def test_without_users_everything_is_as_before(tmp_path):
    async def body(h):
        _, info = await h.call("GET", "/api", 200)
        assert info["auth"] is False and info["user"] == {"name": None, "admin": True}
        job = await h.wait((await h.submit(const_doc(1)))["job"]["id"])
        assert "owner" not in job

    serve(tmp_path, body)


@pytest.mark.parametrize(("text", "message"), [
    ('{"users": [{"name": "a", "token": "t1"}, {"name": "a", "token": "t2"}]}', "user 'a' appears twice"),
    ('{"users": [{"name": "a", "token": "t1"}, {"name": "b", "token": "t1"}]}', "two users have the same token"),
    ('{"users": [{"name": "a b", "token": "t1"}]}', "users[0]: the name must be 1-64 characters"),
    ('{"users": [{"name": "a", "token_sha256": "00"}]}', "users[0]: user 'a': the sha256 must be 64 hex digits"),
    ('{"users": [{"name": "a", "token": "t", "role": "x"}]}', "users[0]: unknown field 'role'"),
    ("alice:t1\n\nbob:\n", "line 3: expected NAME:TOKEN"),
    ("# nobody\n", "no users in it"),
])
def test_users_file_errors_name_the_place(tmp_path, text, message):
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(UsersFileError) as caught:
        UserTable.from_file(path)
    assert str(caught.value).startswith(f"users file {path}") and message in str(caught.value)


def test_users_file_formats(tmp_path):
    path = tmp_path / "users.json"
    digest = hashlib.sha256(b"ops-token").hexdigest()
    path.write_text(json.dumps({"users": [{"name": "alice", "token": "alice-token"},
                                          {"name": "ops", "token_sha256": digest, "admin": True}]}))
    table = UserTable.from_file(path)
    assert table.authenticate("alice-token").name == "alice"
    assert table.authenticate("ops-token").admin is True
    assert table.authenticate("nope") is None
    both = UserTable.build("the-admin-token", table)
    assert both.authenticate("the-admin-token").name == "admin" and both.names == ["admin", "alice", "ops"]
