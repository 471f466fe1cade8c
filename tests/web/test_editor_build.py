"""Build a txt2img graph from an empty canvas with the mouse, run it, see the image."""

from __future__ import annotations

# (node type, page x, page y) where each node is dropped; the canvas starts at about x=221, y=42.
LAYOUT = {
    "LoadCheckpoint": (280, 90),
    "EmptyLatent": (280, 360),
    "TextEncode": (540, 90),
    "VAEDecode": (540, 520),
    "LCMSampler": (800, 90),
    "SaveImage": (800, 450),
}
WIRES = [
    ("LoadCheckpoint", "model", "LCMSampler", "model"),
    ("LoadCheckpoint", "clip", "TextEncode", "clip"),
    ("TextEncode", "conditioning", "LCMSampler", "positive"),
    ("EmptyLatent", "latent", "LCMSampler", "latent"),
    ("LCMSampler", "latent", "VAEDecode", "latent"),
    ("LoadCheckpoint", "vae", "VAEDecode", "vae"),
    ("VAEDecode", "image", "SaveImage", "image"),
]


def test_build_txt2img_from_empty_canvas_and_run(editor, server):
    editor.page.click("#clear")
    assert editor.js("lcmgraph.nodeIds()") == []
    editor.js("lcmgraph.resetView()")

    ids = {t: editor.palette_drop(t, x, y) for t, (x, y) in LAYOUT.items()}
    assert ids == {"LoadCheckpoint": "load_checkpoint", "EmptyLatent": "empty_latent",
                   "TextEncode": "text_encode", "VAEDecode": "vae_decode",
                   "LCMSampler": "lcm_sampler", "SaveImage": "save_image"}

    for src, output, dst, input_name in WIRES:
        editor.connect(ids[src], output, ids[dst], input_name)
    expected = {(ids[s], o, ids[d], i) for s, o, d, i in WIRES}
    assert editor.links() == expected

    # A type-incompatible link is refused: CLIP cannot feed the sampler's MODEL input.
    editor.connect(ids["LoadCheckpoint"], "clip", ids["LCMSampler"], "model")
    assert editor.links() == expected
    # ...and so is LATENT into a CONDITIONING input (the link made earlier stays).
    editor.connect(ids["EmptyLatent"], "latent", ids["LCMSampler"], "positive")
    assert editor.links() == expected

    # Widgets: numbers through litegraph's value dialog (clamped to min/max), text in place.
    editor.set_number(ids["EmptyLatent"], "width", 64)
    editor.set_number(ids["EmptyLatent"], "height", 10)  # below the minimum 64: clamped
    assert editor.js("lcmgraph.widgetValue('empty_latent', 'height')") == 64
    editor.set_text(ids["TextEncode"], "text", "a blue square\non a red background")

    doc = editor.workflow()
    assert doc["nodes"]["empty_latent"]["inputs"] == {"width": 64, "height": 64, "batch": 1}
    assert doc["nodes"]["text_encode"]["inputs"]["text"] == "a blue square\non a red background"
    assert doc["nodes"]["lcm_sampler"]["inputs"]["positive"] == {"link": ["text_encode", "conditioning"]}

    job = editor.queue_and_wait()
    assert job["status"] == "done", editor.status()
    # The image shows in the SaveImage node and in the outputs panel, and really loads.
    editor.page.wait_for_function(
        "lcmgraph.nodes().find(n => n.id === 'save_image').loadedImages === 1", timeout=15_000)
    img = editor.page.locator(f'#outputs img[data-job="{job["id"]}"]')
    img.wait_for(state="visible")
    editor.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())

    # The server ran exactly the graph that was drawn.
    ran = server.get(f"/api/jobs/{job['id']}?workflow=1")["job"]["workflow"]
    assert ran["nodes"] == doc["nodes"]
    executed = server.get(f"/api/jobs/{job['id']}")["job"]["executed"]
    assert set(executed) == set(ids.values())


def test_search_box_and_palette_filter(editor):
    """The palette's search box filters by name, type and category; Enter adds the first match."""
    search = editor.page.locator("#palette-search")
    search.fill("vae dec")
    visible = editor.page.locator(".palette-item:not([hidden])")
    assert visible.count() == 1
    assert visible.first.get_attribute("data-type") == "VAEDecode"
    before = set(editor.js("lcmgraph.nodeIds()"))
    search.press("Enter")
    added = set(editor.js("lcmgraph.nodeIds()")) - before
    assert added == {"vae_decode"}
    # Double-clicking the canvas opens litegraph's node search box with the schema's types.
    box = editor.page.locator(".litesearchbox input")
    for _ in range(3):  # a double click is two clicks within 500 ms: a busy machine may miss it
        editor.page.mouse.dblclick(700, 780)
        try:
            box.wait_for(state="visible", timeout=3000)
            break
        except Exception:
            continue
    box.wait_for(state="visible")
    box.type("Empty Lat")
    # The box filters on a timer: wait until the results are those of the whole query.
    editor.page.wait_for_function("""() => {
        const items = [...document.querySelectorAll('.litesearchbox .lite-search-item')]
        return items.length > 0 && items[0].textContent.includes('Empty Latent')
            && items.every(e => /latent/i.test(e.textContent))
    }""")
    box.press("Enter")
    assert "empty_latent" in editor.js("lcmgraph.nodeIds()")
