"""Validation problems on the nodes, live mode, plugin nodes and the link rule."""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path

from PIL import Image

from lcmgraph.types import link_compatible

REPO = Path(__file__).resolve().parents[2]
DEFAULT = json.loads((REPO / "workflows" / "txt2img_lcm.json").read_text())


def red_pixels(editor, node_id: str) -> int:
    """Pixels of litegraph's error colour (#E00) drawn around a node."""
    editor.settle()
    box = editor.js("""id => {
        const n = lcmgraph.app.nodeById(id), c = lcmgraph.app.canvas
        const r = c.canvas.getBoundingClientRect()
        const [x, y] = c.ds.convertOffsetToCanvas([n.pos[0] - 20, n.pos[1] - 50])
        return { x: r.left + x, y: r.top + y, width: (n.size[0] + 40) * c.ds.scale, height: (n.size[1] + 70) * c.ds.scale }
    }""", node_id)
    shot = Image.open(BytesIO(editor.page.screenshot(clip=box))).convert("RGB")
    return sum(1 for r, g, b in shot.get_flattened_data() if r > 150 and g < 50 and b < 50)


def test_invalid_graph_shows_problems_on_the_offending_nodes(editor):
    editor.js("lcmgraph.resetView()")
    assert red_pixels(editor, "sampler") == 0
    # Delete the latent node with the mouse and keyboard: the sampler loses a required input.
    title = editor.js("lcmgraph.titlePos('latent')")
    editor.page.mouse.click(title["x"], title["y"])
    editor.page.keyboard.press("Delete")
    assert "latent" not in editor.js("lcmgraph.nodeIds()")

    editor.page.click("#queue")
    editor.page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'sampler').hasErrors")
    problems = editor.nodes()["sampler"]["problems"]
    assert [p["input"] for p in problems] == ["latent"], problems
    assert "problem" in editor.status()
    assert editor.jobs() == [], "an invalid workflow is not queued"
    assert red_pixels(editor, "sampler") > 200, "the offending node has a red outline"
    assert red_pixels(editor, "ckpt") == 0

    # Out-of-range literals from a file are reported on their node and input, all at once.
    doc = json.loads(json.dumps(DEFAULT))
    doc["nodes"]["sampler"]["inputs"]["steps"] = 0
    doc["nodes"]["latent"]["inputs"]["width"] = 3
    doc["nodes"]["decode"]["inputs"]["latent"] = {"link": ["positive", "conditioning"]}
    editor.load_doc(doc)
    editor.page.click("#queue")
    editor.page.wait_for_function("lcmgraph.nodes().filter(n => n.hasErrors).length === 3")
    nodes = editor.nodes()
    assert nodes["sampler"]["problems"][0]["input"] == "steps"
    assert "minimum 1" in nodes["sampler"]["problems"][0]["message"]
    assert nodes["latent"]["problems"][0]["input"] == "width"
    assert nodes["decode"]["problems"][0]["input"] == "latent"
    assert "type mismatch" in nodes["decode"]["problems"][0]["message"] or "CONDITIONING" in nodes["decode"]["problems"][0]["message"]

    # Fixing an input clears its problem; a valid graph then runs.
    editor.set_number("sampler", "steps", 4)
    assert editor.nodes()["sampler"]["problems"] == []
    editor.load_doc(DEFAULT)
    assert not any(n["hasErrors"] for n in editor.nodes().values())


def started(editor, job: str) -> set[str]:
    return {e["node"] for e in editor.events(job, "node_start")}


def cached(editor, job: str) -> set[str]:
    return {e["node"] for e in editor.events(job, "node_cached")}


def submitted_seed(editor, job: str) -> int:
    return editor.server.get(f"/api/jobs/{job}?workflow=1")["job"]["workflow"]["nodes"]["sampler"]["inputs"]["seed"]


def test_live_mode_reruns_only_what_changed(editor):
    first = editor.queue_and_wait()  # warm the engine's cache
    assert first["status"] == "done"

    editor.page.check("#live")  # turning live mode on queues once (everything is cached)
    jobs = editor.wait_for_jobs(2)
    assert jobs[-1]["live"] and jobs[-1]["status"] == "done"
    assert started(editor, jobs[-1]["id"]) == {"save"}

    # One click on the seed's "+" arrow: after the debounce the graph is re-queued, and
    # only the sampler and what follows it run; the rest comes from the cache.
    seed = editor.js("lcmgraph.widgetValue('sampler', 'seed')")
    plus = editor.widget("sampler", "seed")["increment"]
    editor.page.mouse.click(plus["x"], plus["y"])
    jobs = editor.wait_for_jobs(3)
    job = jobs[-1]["id"]
    assert jobs[-1]["status"] == "done"
    assert started(editor, job) == {"sampler", "decode", "save"}
    assert cached(editor, job) == {"ckpt", "lcm_lora", "positive", "latent"}
    assert submitted_seed(editor, job) == seed + 1

    # Three quick clicks inside the debounce window make one job, with the last value.
    editor.js("window.__downs = []; window.addEventListener('pointerdown', e => __downs.push(e.timeStamp), true)")
    for index in range(3):
        if index:  # a person's quick clicks, well inside the 300 ms window the debounce restarts
            editor.page.wait_for_timeout(150)
        editor.page.mouse.click(plus["x"], plus["y"])
    editor.page.wait_for_timeout(800)
    downs = editor.js("__downs")
    gaps = [b - a for a, b in zip(downs, downs[1:], strict=False)]
    assert len(downs) == 3
    # How many of three clicks milliseconds apart the canvas counts as increments depends on
    # its gesture timing (a long suite's page merged some); what matters is that the value
    # the widget ends with is what gets submitted, and that one burst makes one job.
    final = editor.js("lcmgraph.widgetValue('sampler', 'seed')")
    assert seed + 1 < final <= seed + 4, final
    deadline = time.monotonic() + 60  # bounded wait: a busy machine may split the burst
    while True:
        jobs = editor.wait_for_jobs(4)
        if submitted_seed(editor, jobs[-1]["id"]) == final or time.monotonic() > deadline:
            break
        editor.page.wait_for_timeout(200)
    assert submitted_seed(editor, jobs[-1]["id"]) == final
    if max(gaps) < 250:  # the clicks really came within the 300 ms window (a busy machine may be slower)
        assert len(jobs) == 4, f"clicks {gaps} ms apart made {len(jobs) - 3} jobs"
    else:
        assert len(jobs) <= 6

    # A newer edit interrupts the running job: a long run (40 steps) is superseded by 2 steps.
    count = len(editor.jobs())
    editor.set_number("sampler", "steps", 40)
    editor.page.wait_for_function("""n => {
        const j = lcmgraph.jobs[lcmgraph.jobs.length - 1]
        return lcmgraph.jobs.length === n + 1 && lcmgraph.events.some(e => e.job === j.id && e.type === 'node_progress' && e.node === 'sampler')
    }""", arg=count, timeout=60_000)
    long_job = editor.jobs()[-1]["id"]
    # While it runs: the sampler is marked running with a progress bar, and its step preview shows.
    sampler = editor.nodes()["sampler"]
    assert sampler["running"] and 0 < sampler["progress"] <= 1 and sampler["hasPreview"], sampler
    assert editor.page.locator("#progress").is_visible()
    assert "sampler: step" in editor.page.inner_text("#progress-label")
    assert editor.page.get_attribute("#progress-preview", "src").startswith("data:image/jpeg;base64,")
    editor.set_number("sampler", "steps", 2)
    jobs = editor.wait_for_jobs(count + 2)
    final = {e["job"]: e["type"] for e in editor.events() if e["type"].startswith("job_") and e["type"] not in ("job_queued", "job_started")}
    assert final[long_job] == "job_interrupted"
    assert jobs[-1]["status"] == "done"
    assert started(editor, jobs[-1]["id"]) == {"sampler", "decode", "save"}

    editor.page.uncheck("#live")
    editor.set_number("sampler", "steps", 3)
    editor.page.wait_for_timeout(600)
    assert len(editor.jobs()) == count + 2, "no re-queue once live mode is off"


def test_plugin_nodes_appear_with_their_widgets_and_types(editor):
    palette = editor.page.locator('.palette-category:has(h3:text-is("editor test")) .palette-item')
    assert sorted(palette.evaluate_all("els => els.map(e => e.dataset.type)")) == ["MakePalette", "Posterize"]
    editor.js("lcmgraph.resetView()")
    make = editor.palette_drop("MakePalette", 300, 620)
    post = editor.palette_drop("Posterize", 640, 620)

    # INT widget with step 2, min 2, max 16: "+" adds a step, typed values are clamped.
    assert editor.js("lcmgraph.widgetValue('make_palette', 'levels')") == 4
    plus = editor.widget(make, "levels")["increment"]
    editor.page.mouse.click(plus["x"], plus["y"])
    assert editor.js("lcmgraph.widgetValue('make_palette', 'levels')") == 6
    editor.set_number(make, "levels", 99)
    assert editor.js("lcmgraph.widgetValue('make_palette', 'levels')") == 16
    # ENUM widget: litegraph's menu offers the declared choices.
    mode = editor.widget(make, "mode")
    editor.page.mouse.click(mode["center"]["x"], mode["center"]["y"])
    menu = editor.page.locator(".litecontextmenu .litemenu-entry")
    menu.first.wait_for()
    assert menu.all_inner_texts() == ["round", "floor"]
    editor.page.locator('.litecontextmenu .litemenu-entry:text-is("floor")').click()
    assert editor.js("lcmgraph.widgetValue('make_palette', 'mode')") == "floor"

    # The pack's own type links to its own kind only.
    editor.connect(make, "palette", "decode", "latent")
    assert (make, "palette", "decode", "latent") not in editor.links()
    load = editor.palette_drop("LoadImage", 300, 420)
    editor.connect(make, "palette", post, "palette")
    editor.connect(load, "image", post, "image")
    assert {(make, "palette", post, "palette"), (load, "image", post, "image")} <= editor.links()
    assert editor.workflow()["nodes"][make]["inputs"] == {"levels": 16, "mode": "floor"}


def test_link_rule_matches_the_engine(editor, server):
    schema = server.get("/api/nodes")
    types = {"*"} | {s["type"] for n in schema["nodes"].values() for s in n["inputs"] + n["outputs"]}
    pairs = [[a, b] for a in sorted(types) for b in sorted(types)]
    js = editor.js("pairs => pairs.map(([a, b]) => lcmgraph.linkCompatible(a, b))", pairs)
    assert js == [link_compatible(a, b) for a, b in pairs]
    assert len(pairs) > 100


def test_connection_rules_are_the_served_ones(browser, server):
    """The editor has no link rule of its own: INT -> FLOAT connects and FLOAT -> INT does not
    because /api/nodes says so; served the other way round, the editor follows."""
    from conftest import VIEWPORT, Editor

    def swap(route):
        response = route.fetch()
        schema = response.json()
        assert schema["link_rules"]["also_accepts"] == {"ENUM": ["STRING"], "FLOAT": ["INT"]}
        schema["link_rules"]["also_accepts"] = {"INT": ["FLOAT"]}
        route.fulfill(response=response, json=schema)

    for rules in ("served", "swapped"):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(15_000)
        if rules == "swapped":
            page.route("**/api/nodes", swap)
        editor = Editor(page, server).open()
        editor.js("lcmgraph.resetView()")
        assert editor.js("lcmgraph.linkCompatible('INT', 'FLOAT')") == (rules == "served")
        number = editor.palette_drop("Int", 300, 640)
        real = editor.palette_drop("Float", 620, 640)
        editor.connect(number, "value", "sampler", "guidance")  # INT -> FLOAT
        editor.connect(real, "value", "sampler", "steps")  # FLOAT -> INT
        links = editor.links()
        context.close()
        assert not editor.errors, editor.errors
        int_to_float, float_to_int = (number, "value", "sampler", "guidance"), (real, "value", "sampler", "steps")
        if rules == "served":
            assert int_to_float in links and float_to_int not in links, links
        else:
            assert float_to_int in links and int_to_float not in links, links


def test_node_ids_follow_the_served_pattern(editor, server):
    """The schema's node_id_pattern, run by the browser's RegExp, accepts exactly what the engine's parser does."""
    from tests.server.test_server_schema_rules import NODE_ID_SAMPLES, parse_accepts

    pattern = server.get("/api/nodes")["node_id_pattern"]
    got = editor.js("""([pattern, ids]) => ids.map(id => [new RegExp(pattern).test(id), new RegExp(pattern, "u").test(id),
                                                          lcmgraph.isNodeId(id)])""", [pattern, NODE_ID_SAMPLES])
    for node_id, answers in zip(NODE_ID_SAMPLES, got, strict=True):
        assert answers == [parse_accepts(node_id)] * 3, (node_id, answers)


def test_links_into_widget_inputs(editor):
    """A primitive node wired into widget inputs: the link replaces the literal (INT also feeds FLOAT)."""
    editor.js("lcmgraph.resetView()")
    number = editor.palette_drop("Int", 300, 640)
    editor.set_number(number, "value", 7)
    editor.connect(number, "value", "sampler", "seed")
    editor.connect(number, "value", "sampler", "guidance")  # INT -> FLOAT is allowed
    text = editor.palette_drop("String", 620, 640)
    editor.connect(text, "value", "sampler", "steps")  # STRING -> INT is not
    links = editor.links()
    assert {(number, "value", "sampler", "seed"), (number, "value", "sampler", "guidance")} <= links
    assert (text, "value", "sampler", "steps") not in links
    inputs = editor.workflow()["nodes"]["sampler"]["inputs"]
    assert inputs["seed"] == {"link": [number, "value"]}
    assert inputs["guidance"] == {"link": [number, "value"]}
    assert inputs["steps"] == 4
    job = editor.queue_and_wait()
    assert job["status"] == "done", editor.status()


def test_catches_up_after_a_lost_websocket(editor, server):
    """Events missed while disconnected: on reconnect the editor asks how its jobs ended."""
    editor.js("lcmgraph.app.api.close()")  # stay disconnected until told
    editor.page.wait_for_function("document.querySelector('#connection').textContent.startsWith('reconnecting')")
    editor.page.click("#queue")
    editor.page.wait_for_function("lcmgraph.jobs.length === 1")
    job = editor.jobs()[0]
    assert not job["finished"]
    assert server.wait_job(job["id"])["status"] == "done"
    editor.js("lcmgraph.app.api.connect()")
    editor.wait_for_jobs(1)
    assert editor.jobs()[0]["status"] == "done"
    editor.page.wait_for_function("lcmgraph.nodes().find(n => n.id === 'save').loadedImages === 1")
    assert editor.page.locator(f'#outputs img[data-job="{job["id"]}"]').count() == 1
