"""The settings and user files ComfyUI's frontend keeps on `lcmgraph serve --frontend comfy`:
ComfyUI's shapes, one folder per user, and no way out of it."""

from __future__ import annotations

from tests.server.harness import serve


def test_userdata_round_trip_and_confinement(tmp_path):
    async def body(h):
        assert (await h.call("GET", "/api/users", 200))[1] == {"storage": "server", "migrated": True}
        # settings: a fresh user's defaults, then what the frontend posts
        _, settings = await h.call("GET", "/api/settings", 200)
        assert settings["Comfy.TutorialCompleted"] is True
        await h.call("POST", "/api/settings/Comfy.Locale", 200, json="en")
        await h.call("POST", "/api/settings", 200, json={"Comfy.UseNewMenu": "Top"})
        assert (await h.call("GET", "/api/settings/Comfy.Locale", 200))[1] == "en"
        assert (await h.call("GET", "/api/settings", 200))[1]["Comfy.UseNewMenu"] == "Top"
        # a saved workflow (the frontend encodes the '/' of its path)
        _, saved = await h.call("POST", "/api/userdata/workflows%2Fmine.json?full_info=true", 200,
                                data=b'{"nodes": []}')
        assert saved["path"] == "workflows/mine.json" and saved["size"] == 13
        _, listed = await h.call("GET", "/api/userdata?dir=workflows&recurse=true&full_info=true", 200)
        assert [f["path"] for f in listed] == ["mine.json"]
        assert (await h.call("GET", "/api/userdata?dir=subgraphs", 200))[1] == []
        status, data = await h.call("GET", "/api/userdata/workflows%2Fmine.json", 200)
        assert data == b'{"nodes": []}'
        await h.call("POST", "/api/userdata/workflows%2Fmine.json?overwrite=false", 409, data=b"{}")
        _, moved = await h.call("POST", "/api/userdata/workflows%2Fmine.json/move/workflows%2Fb.json", 200)
        assert moved == "workflows/b.json"
        _, tree = await h.call("GET", "/api/v2/userdata", 200)
        assert [(e["type"], e["path"]) for e in tree] == [  # folders first, then by name (as ComfyUI)
            ("directory", "workflows"), ("file", "workflows/b.json"), ("file", "comfy.settings.json")]
        await h.call("DELETE", "/api/userdata/workflows%2Fb.json", 204)
        await h.call("GET", "/api/userdata/workflows%2Fb.json", 404)
        # nothing outside the user's folder, however the path is spelled
        for bad in ("..%2F..%2Fjobs.sqlite3", "%2E%2E%2Fsecret", "workflows%2F..%2F..%2Fx", "%2Fetc%2Fpasswd",
                    "a%5Cb", "%252E%252E%252Fx"):
            status, answer = await h.call("GET", f"/api/userdata/{bad}")
            assert status in (400, 403), (bad, status, answer)
            status, _ = await h.call("POST", f"/api/userdata/{bad}", data=b"x")
            assert status in (400, 403), (bad, status)
        status, _ = await h.call("GET", "/api/userdata?dir=..%2F..")
        assert status in (400, 403)
        assert not (tmp_path / "data" / "x").exists() and not (tmp_path / "x").exists()
        # user.css: an empty sheet until the user saves one, served as CSS; other files as downloads
        status, css = await h.call("GET", "/api/userdata/user.css", 200)
        assert css == b""
        await h.call("POST", "/api/userdata/page.html", 200, data=b"<script>alert(1)</script>")
        async with h.client.get("/api/userdata/page.html") as response:
            assert response.headers["Content-Disposition"] == "attachment"
            assert response.headers["Content-Type"] == "application/octet-stream"

    serve(tmp_path, body, frontend="comfy")


def test_frontend_routes_need_the_token_and_a_same_origin_page(tmp_path):
    async def body(h):
        for path in ("/api/settings", "/api/userdata?dir=workflows", "/api/jobs", "/internal/folder_paths"):
            assert (await h.call("GET", path))[0] == 401, path
        h.headers["Authorization"] = "Bearer " + "t" * 32
        status, _ = await h.call("POST", "/api/userdata/x.json", data=b"{}",
                                 headers={"Origin": "http://evil.example"})
        assert status == 403
        await h.call("POST", "/api/userdata/x.json", 200, data=b"{}")

    serve(tmp_path, body, frontend="comfy", token="t" * 32)
