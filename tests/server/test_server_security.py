"""Token, Host and Origin checks; the bind policy; file access confined to the folders."""

import asyncio
import os

from aiohttp import ClientSession, WSServerHandshakeError
from yarl import URL

from lcmgraph.server.cli import bind_problem, is_loopback, main
from lcmgraph.server.security import split_host
from tests.server.harness import const_doc, serve, solid_doc

TOKEN = "s3cret-token-0123456789"


def test_token_is_required_on_every_api_request(tmp_path):
    async def body(h):
        for method, path in (("GET", "/api"), ("GET", "/api/queue"), ("GET", "/api/nodes"),
                             ("POST", "/api/jobs"), ("GET", "/api/files/output/x.png"), ("GET", "/api/nope")):
            status, err = await h.call(method, path, 401)
            assert err == {"error": "unauthorized", "status": 401,
                           "message": f"{method} {path}: no token; send 'Authorization: Bearer <token>' "
                                      "(or ?token= on WebSocket and file URLs)"}
        _, err = await h.call("GET", "/api/queue", 401, headers={"Authorization": "Bearer wrong"})
        assert err["message"].startswith("GET /api/queue: a wrong token;")
        _, err = await h.call("GET", f"/api/queue?token={TOKEN}", 401)  # query tokens: WS and files only
        auth = {"Authorization": f"Bearer {TOKEN}"}
        await h.call("GET", "/api/queue", 200, headers=auth)
        job = (await h.call("POST", "/api/jobs", 201, headers=auth, json={"workflow": solid_doc(3)}))[1]["job"]
        await asyncio.sleep(0.3)
        url = f"/api/files/output/{job['id']}/solid_3.png"
        await h.call("GET", f"{url}?token={TOKEN}", 200)
        await h.call("GET", url, 401)
        try:
            await h.client.ws_connect("/api/ws")
            raise AssertionError("a WebSocket without the token was accepted")
        except WSServerHandshakeError as exc:
            assert exc.status == 401
        ws = await h.client.ws_connect(f"/api/ws?token={TOKEN}")
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()
        ws = await h.client.ws_connect("/api/ws", headers=auth)
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()
        status, page = await h.call("GET", "/", 200)  # the editor's page itself is public
        assert b"lcmgraph server" in page

    serve(tmp_path, body, token=TOKEN)


def test_unknown_host_header_is_refused(tmp_path):
    async def body(h):
        _, err = await h.call("GET", "/api/queue", 421, headers={"Host": "attacker.example:8188"})
        assert err["message"] == ("GET /api/queue: Host 'attacker.example' is not a name of this server "
                                  "(accepted: 127.0.0.1, ::1, editor.lan, localhost; add one with --allow-host)")
        for host in ("localhost:1234", "127.0.0.1", "[::1]:8188", "editor.lan:80", "LOCALHOST."):
            await h.call("GET", "/api/queue", 200, headers={"Host": host})

    serve(tmp_path, body, allow_hosts=("editor.lan",))


def test_cross_origin_state_changes_and_websockets_are_refused(tmp_path):
    async def body(h):
        host = f"127.0.0.1:{h.client.port}"
        evil = {"Origin": "http://evil.example"}
        _, err = await h.call("POST", "/api/jobs", 403, headers=evil, json={"workflow": const_doc(1)})
        assert err["message"] == (f"POST /api/jobs: refused a cross-origin request from Origin 'http://evil.example' "
                                  f"(this server is '{host}'; allow an editor elsewhere with --allow-origin)")
        await h.call("POST", "/api/interrupt", 403, headers={"Origin": "null"})
        await h.call("POST", "/api/interrupt", 403, headers={"Origin": f"http://127.0.0.1:{h.client.port + 1}"})
        await h.call("POST", "/api/interrupt", 403, headers={"Sec-Fetch-Site": "cross-site"})
        try:
            await h.client.ws_connect("/api/ws", headers=evil)
            raise AssertionError("a cross-origin WebSocket was accepted")
        except WSServerHandshakeError as exc:
            assert exc.status == 403
        await h.call("GET", "/api/queue", 200, headers=evil)  # reads: the browser keeps them from the page
        await h.call("POST", "/api/interrupt", 200, headers={"Origin": f"http://{host}"})
        await h.call("POST", "/api/interrupt", 200, headers={"Origin": "https://editor.example"})
        ws = await h.client.ws_connect("/api/ws", headers={"Origin": f"http://{host}"})
        await ws.close()

    serve(tmp_path, body, allow_origins=("https://editor.example",))


def test_file_names_cannot_leave_the_folders(tmp_path):
    async def body(h):
        job = await h.wait((await h.submit(solid_doc(5)))["job"]["id"])
        good = job["outputs"]["img"]["images"][0]["url"]
        await h.call("GET", good, 200)
        secret = tmp_path / "secret.png"
        secret.write_bytes(b"\x89PNG top secret")
        out_root = h.server.output_root
        os.symlink(secret, out_root / "link.png")
        os.symlink(tmp_path, out_root / "up")
        base = f"http://127.0.0.1:{h.client.port}"
        attempts = {
            "/api/files/output/../data/jobs.sqlite3": 400,
            "/api/files/output/%2e%2e/%2e%2e/secret.png": 400,
            "/api/files/output/%2E%2E%2Fsecret.png": 400,
            "/api/files/output/..%2f..%2fsecret.png": 400,
            "/api/files/output/%2Fetc%2Fpasswd": 400,
            "/api/files/output//etc/passwd": 400,
            "/api/files/output/a%5c..%5csecret.png": 400,
            "/api/files/output/x%00.png": 400,
            "/api/files/output/.hidden.png": 400,
            "/api/files/output/C:%5cwindows.png": 400,
            "/api/files/output/link.png": 403,
            "/api/files/output/up/secret.png": 403,
            "/api/files/output/nothing.png": 404,
            "/api/files/output/up": 404,
            "/api/files/models/x.png": 404,
            "/api/files/output/%252e%252e/secret.png": 404,
        }
        async with ClientSession() as session:
            for path, expected in attempts.items():
                async with session.get(URL(base + path, encoded=True), headers={"Host": "127.0.0.1"},
                                       allow_redirects=False) as response:
                    body = await response.read()
                    assert response.status == expected, (path, response.status, body)
                    assert b"top secret" not in body
        _, err = await h.call("GET", "/api/files/output/link.png", 403)
        assert err["message"] == "GET /api/files/output/link.png: 'link.png' resolves outside the output folder; refused"
        _, err = await h.call("GET", "/api/files/output/nothing.png", 404)
        assert err["message"] == "GET /api/files/output/nothing.png: no file 'nothing.png' in the output folder"

    serve(tmp_path, body)


def test_bind_policy():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    assert bind_problem("127.0.0.1", None, False) is None
    assert bind_problem("0.0.0.0", "t" * 20, False) is None
    assert bind_problem("0.0.0.0", None, True) is None
    assert bind_problem("0.0.0.0", None, False) == (
        "refusing to listen on '0.0.0.0' without a token: anyone who can reach it could run workflows and read "
        "every output. Pass --token T (or set LCMGRAPH_TOKEN), or --insecure to accept that.")
    assert split_host("[::1]:8188") == ("::1", "8188")
    assert split_host("Example.COM.:80") == ("example.com", "80")


def test_serve_refuses_a_public_host_without_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LCMGRAPH_TOKEN", raising=False)
    code = main(["--host", "0.0.0.0", "--data-dir", str(tmp_path), "--no-entry-points"])
    assert code == 2
    assert "refusing to listen on '0.0.0.0' without a token" in capsys.readouterr().err
    assert not (tmp_path / "jobs.sqlite3").exists()
