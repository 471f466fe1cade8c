"""The queue panel names a cluster's workers (`serve --ray`, GET /api/workers);
a one-process server shows no such line."""

from __future__ import annotations

import json

#: GET /api/workers of a two-worker cluster, in the shape tests/cluster checks.
CLUSTER = {"cluster": True, "queued": 3, "workers": [
    {"name": "worker-0", "kind": "ray", "health": "ok", "device": "cpu", "running": 1, "loads": 1,
     "models": ["ckpt:builtin:tiny-shapes"]},
    {"name": "worker-1", "kind": "ray", "health": "lost: the actor died", "device": "cpu", "running": 0, "loads": 0,
     "models": []},
]}


def test_the_queue_panel_shows_a_clusters_workers(editor, server):
    # this server runs jobs in its own worker thread: no workers line
    assert server.get("/api/workers")["cluster"] is False
    editor.js("lcmgraph.app.workersAsked = 0; lcmgraph.app.refreshWorkers()")
    editor.page.wait_for_timeout(300)
    assert editor.page.locator("#workers-info").is_hidden()

    editor.page.route("**/api/workers", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(CLUSTER)))
    editor.js("lcmgraph.app.workersAsked = 0; lcmgraph.app.refreshWorkers()")
    info = editor.page.locator("#workers-info")
    info.wait_for(state="visible")
    assert info.inner_text() == "workers: 2, 1 busy, 1 not ok"
    assert info.get_attribute("title") == ("worker-0: ok · cpu · ckpt:builtin:tiny-shapes\n"
                                           "worker-1: lost: the actor died · cpu · no model loaded")
    assert "error" in info.get_attribute("class")
