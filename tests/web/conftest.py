"""Browser tests of the graph editor (web/).

The real server runs as a subprocess (`python -m lcmgraph.server --port 0`)
with temporary data and models folders and serves the built editor from
web/dist; Debian's Chromium is driven through Playwright for Python. These
tests never skip: without Chromium or Playwright they fail and say what to
install. web/dist is rebuilt (`npm run build`) when it is older than the
editor's sources and web/node_modules exists (`make setup` installs it).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
DIST = WEB / "dist"
PACKS = Path(__file__).resolve().parent / "packs"
CHROMIUM = Path(os.environ.get("LCMGRAPH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 850}
# The machines running CI may be busy: generous waits, but every wait names what it waited for.
JOB_TIMEOUT_MS = 60_000


def _require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the editor tests need Playwright for Python: pip install playwright "
                    "(in the dev extras; do not run `playwright install`, Debian's chromium is used)",
                    pytrace=False)
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the editor tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(or point LCMGRAPH_CHROMIUM at a Chromium binary). They fail rather than skip.",
                    pytrace=False)


def _sources() -> list[Path]:
    files = [WEB / "index.html", WEB / "vite.config.js", WEB / "package.json", WEB / "package-lock.json"]
    files += [p for p in (WEB / "src").rglob("*") if p.is_file()]
    return [p for p in files if p.exists()]


def ensure_dist() -> None:
    """Build web/dist when it is missing or older than the editor's sources."""
    newest = max(p.stat().st_mtime for p in _sources())
    index = DIST / "index.html"
    if index.exists() and index.stat().st_mtime >= newest:
        return
    if not (WEB / "node_modules").is_dir():
        pytest.fail("web/dist is missing or older than web/src, and web/node_modules is not installed: "
                    "run `make setup` (or `cd web && npm ci && npm run build`)", pytrace=False)
    with open(WEB / ".build.lock", "w") as lock:  # pytest-xdist workers build once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if index.exists() and index.stat().st_mtime >= newest:
            return
        done = subprocess.run(["npm", "run", "build"], cwd=WEB, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building the editor failed (npm run build in web/):\n{done.stdout}\n{done.stderr}",
                        pytrace=False)


class Server:
    def __init__(self, tmp: Path, plugins: bool = True):
        self.tmp = tmp
        env = {k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")}
        env["LCMGRAPH_HOME"] = str(tmp / "home")
        self.log = tmp / "server.log"
        command = [sys.executable, "-m", "lcmgraph.server", "--port", "0",
                   "--data-dir", str(tmp / "data"), "--models-dir", str(tmp / "models"),
                   "--web-dir", str(DIST)] + (["--plugins", str(PACKS)] if plugins else [])
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log.open("wb"),
                                     env=env, text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (http://\S+?)/? ", line)
        if not match:
            self.proc.kill()
            pytest.fail(f"the server did not start: {line!r}\n{self.log.read_text()[-3000:]}", pytrace=False)
        self.base = match.group(1).rstrip("/")

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            body = response.read()
            return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT_MS / 1000) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/jobs/{job_id}")["job"]
            if job["status"] in ("done", "failed", "interrupted", "cancelled"):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    _require_browser()
    ensure_dist()
    srv = Server(tmp_path_factory.mktemp("editor-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


class Editor:
    """A page with the editor open, and helpers that act with the real mouse and keyboard."""

    def __init__(self, page, server: Server):
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)
        # Subscribe to file choosers from the start: Playwright turns their interception on
        # asynchronously, and a chooser opened before that is lost (seen on a busy machine).
        page.on("filechooser", lambda chooser: None)

    def _console(self, msg) -> None:
        # The browser logs every 4xx response. Expected ones: 400 for an invalid workflow (shown on
        # the nodes) and 409 when live mode cancels a job that finished a moment earlier.
        if msg.type == "error" and "status of 400" not in msg.text and "status of 409" not in msg.text:
            self.errors.append(f"console.{msg.type}: {msg.text}")

    def open(self) -> Editor:
        self.page.goto(self.server.base + "/")
        self.page.wait_for_function("window.lcmgraph && window.lcmgraph.ready", timeout=30_000)
        return self

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def status(self) -> str:
        return self.page.inner_text("#status")

    # -- geometry from the test hook; actions with the mouse ---------------------

    def settle(self) -> None:
        """Wait for two drawn frames: litegraph hit-tests against what it last drew."""
        self.page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def slot(self, node: str, kind: str, name: str) -> tuple[float, float]:
        self.settle()
        p = self.js("([n, k, s]) => lcmgraph.slotPos(n, k, s)", [node, kind, name])
        return p["x"], p["y"]

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
        mouse = self.page.mouse
        mouse.move(*start)
        mouse.down()
        mouse.move(start[0] + 3, start[1] + 3, steps=2)
        mouse.move(*end, steps=steps)
        mouse.up()
        self.page.wait_for_timeout(50)

    def connect(self, src: str, output: str, dst: str, input_name: str) -> None:
        """Drag a link from an output socket to an input socket."""
        self.drag(self.slot(src, "output", output), self.slot(dst, "input", input_name))

    def palette_drop(self, node_type: str, x: float, y: float) -> str:
        """Drag a node type from the palette to page point (x, y); returns the new node's id."""
        before = set(self.js("lcmgraph.nodeIds()"))
        item = self.page.locator(f'.palette-item[data-type="{node_type}"]')
        item.scroll_into_view_if_needed()
        box = item.bounding_box()
        self.drag((box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), (x, y), steps=15)
        new = [i for i in self.js("lcmgraph.nodeIds()") if i not in before]
        assert len(new) == 1, f"dropping {node_type} from the palette added {new}"
        return new[0]

    def widget(self, node: str, name: str) -> dict:
        self.settle()
        return self.js("([n, w]) => lcmgraph.widgetRect(n, w)", [node, name])

    def set_number(self, node: str, name: str, value) -> None:
        """Click a number widget's middle: litegraph asks for the value in a dialog."""
        rect = self.widget(node, name)
        self.page.mouse.click(rect["center"]["x"], rect["center"]["y"])
        field = self.page.locator(".graphdialog input.value")
        field.wait_for(state="visible", timeout=5000)
        field.fill(str(value))
        field.press("Enter")
        self.page.wait_for_timeout(50)

    def set_text(self, node: str, name: str, text: str) -> None:
        """Click a text widget, type into the in-place editor, click away to commit."""
        rect = self.widget(node, name)
        self.page.mouse.click(rect["center"]["x"], rect["center"]["y"])
        editor = self.page.locator(".lcm-inline-editor")
        editor.wait_for(state="visible", timeout=5000)
        editor.fill(text)
        editor.press("Control+Enter")
        self.page.wait_for_timeout(50)

    # -- state ---------------------------------------------------------------------

    def workflow(self) -> dict:
        return self.js("lcmgraph.workflow()")

    def nodes(self) -> dict[str, dict]:
        return {n["id"]: n for n in self.js("lcmgraph.nodes()")}

    def links(self) -> set[tuple[str, str, str, str]]:
        return {tuple(link) for link in self.js("lcmgraph.links()")}

    def events(self, job: str | None = None, kind: str | None = None) -> list[dict]:
        return self.js("""([job, kind]) => lcmgraph.events
            .filter(e => (!job || e.job === job) && (!kind || e.type === kind))
            .map(e => { const { preview, ...rest } = e; return { ...rest, has_preview: !!preview } })""",
                       [job, kind])

    def jobs(self) -> list[dict]:
        return self.js("lcmgraph.jobs")

    def wait_for_jobs(self, count: int, timeout: int = JOB_TIMEOUT_MS) -> list[dict]:
        """Wait until at least `count` jobs of this page were submitted and all have finished."""
        self.page.wait_for_function(
            "n => lcmgraph.jobs.length >= n && lcmgraph.jobs.every(j => j.finished)", arg=count, timeout=timeout)
        return self.jobs()

    def queue_and_wait(self) -> dict:
        n = len(self.jobs())
        self.page.click("#queue")
        jobs = self.wait_for_jobs(n + 1)
        return jobs[-1]

    def load_doc(self, doc: dict) -> None:
        self.js("doc => lcmgraph.load(doc)", doc)


@pytest.fixture
def editor(browser, server, request):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    ed = Editor(page, server).open()
    yield ed
    shots = os.environ.get("LCMGRAPH_EDITOR_SHOTS")  # a folder: keep each test's last view for a look
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{request.node.name}.png"))
    context.close()
    assert not ed.errors, "the page logged errors:\n" + "\n".join(ed.errors)
