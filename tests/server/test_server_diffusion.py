"""End to end with the built-in diffusion pack: the repository's example
workflow is fetched, submitted and watched over the WebSocket to a PNG."""

import io

from PIL import Image

from lcmgraph import Engine, EngineConfig
from lcmgraph.pngmeta import WORKFLOW_KEY
from lcmgraph.server.app import REPO_ROOT
from tests.server.harness import serve


def test_example_workflow_runs_through_the_server(tmp_path):
    engine = Engine(EngineConfig(device="cpu", plugins_from_env=False, load_entry_points=True,
                                 home=tmp_path / "home", models_dir=tmp_path / "models"))

    async def body(h):
        _, listing = await h.call("GET", "/api/workflows", 200)
        assert "txt2img_lcm" in [w["name"] for w in listing["workflows"]]
        _, document = await h.call("GET", "/api/workflows/txt2img_lcm", 200)
        ws = await h.client.ws_connect("/api/ws?client_id=e2e")
        await ws.receive_json()
        job_id = (await h.submit(document, client_id="e2e"))["job"]["id"]
        seen = []
        while not seen or seen[-1]["type"] not in ("job_done", "job_failed"):
            seen.append(await ws.receive_json(timeout=120))
        assert seen[-1]["type"] == "job_done", seen[-1]
        steps = [m for m in seen if m["type"] == "node_progress" and m["node"] == "sampler"]
        assert steps and steps[-1]["step"] == steps[-1]["total"] == 4
        assert steps[-1]["preview"].startswith("data:image/jpeg;base64,")
        image = seen[-1]["outputs"]["save"]["images"][0]
        assert image["name"] == f"{job_id}/txt2img_lcm_00001.png"
        _, png = await h.call("GET", image["url"], 200)
        with Image.open(io.BytesIO(png)) as saved:
            saved.load()
            assert saved.size == (128, 128) and WORKFLOW_KEY in saved.text
        _, thumb = await h.call("GET", image["thumbnail"], 200)
        assert thumb.startswith(b"\xff\xd8")
        await ws.close()

    serve(tmp_path, body, engine=engine, workflows_dir=REPO_ROOT / "workflows", timeout=240)
