"""ComfyUI's official frontend (PyPI comfyui-frontend-package) on `lcmgraph serve
--frontend comfy`, in Debian's Chromium: it loads without errors, knows lcmgraph's
nodes as ComfyUI classes, and runs ComfyUI's classic default txt2img graph
(tests/comfy/corpus/frontend_default.json, mapped to a built-in tiny model) to
the image it shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GRAPH = REPO / "tests" / "comfy" / "corpus" / "frontend_default.json"
#: Files ComfyUI itself answers 404 for on a fresh install (the frontend reads that as "none").
EXPECTED_404 = {"/api/userdata/comfy.templates.json"}
VIEWPORT = {"width": 1400, "height": 850}
JOB_TIMEOUT_MS = 90_000  # generous for a busy CI machine; the run itself takes seconds


class ComfyServer:
    def __init__(self, tmp: Path):
        env = {k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")}
        env["LCMGRAPH_HOME"] = str(tmp / "home")
        self.log = tmp / "server.log"
        command = [sys.executable, "-m", "lcmgraph.server", "--port", "0", "--frontend", "comfy",
                   "--data-dir", str(tmp / "data"), "--models-dir", str(tmp / "models")]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log.open("wb"), env=env,
                                     text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (http://\S+?)/? ", line)
        if not match:
            self.proc.kill()
            pytest.fail(f"the server did not start: {line!r}\n{self.log.read_text()[-3000:]}", pytrace=False)
        self.base = match.group(1).rstrip("/")

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def comfy_server(browser, tmp_path):  # the browser fixture says what to install when Chromium is missing
    server = ComfyServer(tmp_path)
    yield server
    server.stop()


def tiny_default_graph() -> dict:
    """ComfyUI's default graph with a built-in model and a small, short run (its widget values, by position)."""
    graph = json.loads(DEFAULT_GRAPH.read_text())
    for node in graph["nodes"]:
        values = node.get("widgets_values")
        if node["type"] == "CheckpointLoaderSimple":
            values[0] = "builtin:tiny-shapes"
        elif node["type"] == "EmptyLatentImage":
            values[:2] = [64, 64]
        elif node["type"] == "KSampler":  # seed, control_after_generate, steps, cfg, sampler, scheduler, denoise
            values[1:4] = ["fixed", 2, 1.0]
    return graph


def test_comfyuis_frontend_loads_lists_lcmgraphs_nodes_and_runs_the_default_graph(browser, comfy_server):
    server = comfy_server
    expected_404 = set(EXPECTED_404)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    answered_404: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: answered_404.append(r.url.replace(server.base, "").split("?")[0])
            if r.status == 404 else None)
    try:
        page.goto(server.base + "/")
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=30_000)

        # lcmgraph's nodes, as ComfyUI classes, are the frontend's node types.
        offered = set(server.get("/object_info"))
        registered = set(page.evaluate("Object.keys(LiteGraph.registered_node_types)"))
        assert {"KSampler", "CheckpointLoaderSimple", "LoraLoader", "SaveImage"} <= offered
        assert offered <= registered, offered - registered
        # ... and the node library's search finds them.
        page.keyboard.press("Escape")
        page.evaluate("window.app.canvas.canvas.focus()")
        page.get_by_role("button", name=re.compile("Node Library", re.I)).first.click()
        page.get_by_placeholder(re.compile("Search", re.I)).first.fill("KSampler")
        page.get_by_text("KSampler (Advanced)").first.wait_for(timeout=10_000)

        # Queue the default graph with the Run button; the image comes back over /ws and /api/view.
        page.evaluate("graph => window.app.loadGraphData(graph)", tiny_default_graph())
        with page.expect_response(lambda r: "/api/view?" in r.url, timeout=JOB_TIMEOUT_MS) as shown:
            page.get_by_role("button", name="Run").first.click()
        response = shown.value
        assert response.status == 200
        with Image.open(BytesIO(response.body())) as image:
            assert image.size == (64, 64)
        outputs = page.evaluate("JSON.stringify(window.app.nodeOutputs)")
        (saved,) = json.loads(outputs)["9"]["images"]
        page.locator(f"img[src*='{saved['filename']}']").first.wait_for(timeout=10_000)
        # lcmgraph ran the job it received: ComfyUI's history has it, with that image.
        history = server.get("/history")
        (item,) = history.values()
        assert item["status"]["status_str"] == "success"
        assert item["outputs"]["9"]["images"][0]["filename"] == saved["filename"]
        assert item["prompt"][2]["4"]["inputs"]["ckpt_name"] == "builtin:tiny-shapes"
        # The queue panel's list (ComfyUI's Jobs API) shows it as completed.
        jobs = server.get("/api/jobs?status=completed,failed,cancelled&limit=10&offset=0")["jobs"]
        assert [j["status"] for j in jobs] == ["completed"] and jobs[0]["preview_output"]["nodeId"] == "9"
    finally:
        context.close()
    unexpected_404 = set(answered_404) - expected_404
    assert not unexpected_404, f"the frontend asked for routes lcmgraph does not answer: {unexpected_404}"
    # The browser logs each 404 answer as an error; those are the expected ones above.
    real = [e for e in errors if "status of 404" not in e]
    assert not real, "the page logged errors:\n" + "\n".join(real)
