"""Make docs/editor.png: the editor with the default workflow after a run.

    .venv/bin/python tests/web/screenshot.py [docs/editor.png]

Starts the server like the browser tests do (web/dist must be built) and
drives Debian's chromium. Not a test: pytest collects test_*.py only.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import CHROMIUM, CHROMIUM_ARGS, REPO, Editor, Server, ensure_dist  # noqa: E402


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    ensure_dist()
    server = Server(Path(tempfile.mkdtemp(prefix="lcmgraph-shot-")), plugins=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 760}, device_scale_factor=1.25)
            editor = Editor(page, server).open()
            # The default workflow, arranged compactly the way a user might (layout lives in "ui").
            doc = json.loads((REPO / "workflows" / "txt2img_lcm.json").read_text())
            doc["ui"] = {"nodes": {
                "ckpt": {"pos": [0, 0], "size": [250, 110]},
                "latent": {"pos": [0, 170], "size": [250, 110]},
                "positive": {"pos": [290, 0], "size": [260, 290]},
                "sampler": {"pos": [590, 0], "size": [260, 400]},
                "decode": {"pos": [890, 0], "size": [280, 80]},
                "save": {"pos": [890, 130], "size": [280, 270]},
            }}
            editor.load_doc(doc)
            page.click("#fit")
            job = editor.queue_and_wait()
            assert job["status"] == "done", editor.status()
            page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'save').loadedImages === 1")
            page.wait_for_function("[...document.querySelectorAll('#outputs img')].every(i => i.complete && i.naturalWidth)")
            # Select the sampler, so the picture shows what a selected node looks like.
            title = editor.js("lcmgraph.titlePos('sampler')")
            page.mouse.click(title["x"], title["y"])
            page.mouse.move(title["x"], title["y"] + 400)
            editor.settle()
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "editor.png")
