"""Validation never stalls the event loop, runs a few at a time, and answers
with a bounded problem list."""

import asyncio
import json
import time

from lcmgraph.server.checking import too_costly
from tests.server.harness import const_doc, serve, workflow

UNKNOWN = 150_000


def many_unknown_inputs() -> dict:
    """One node, 150 000 inputs it does not have: 150 000 problems (a 2 MB body)."""
    return workflow({"c": ("Constant", {"value": 1, **{f"u{i}": 1 for i in range(UNKNOWN)}})})


def test_cost_is_judged_by_values_not_only_nodes():
    assert not too_costly(const_doc(1), 200)
    assert too_costly(workflow({"c": ("Constant", {"value": 1, **{f"u{i}": 1 for i in range(300)}})}), 200)
    assert too_costly(workflow({f"n{i}": ("Constant", {"value": i}) for i in range(100)}), 200)
    assert too_costly({"a": [[0] * 10] * 50}, 200)  # any JSON: ComfyUI's formats alike
    huge = {"nodes": {f"n{i}": {"inputs": {}} for i in range(200_000)}}
    started = time.perf_counter()
    assert too_costly(huge, 200)
    assert time.perf_counter() - started < 0.01  # it stops as soon as it knows


def test_a_workflow_with_150000_problems_gets_a_short_answer(tmp_path):
    async def body(h):
        doc = many_unknown_inputs()
        for path in ("/api/jobs", "/api/validate"):
            async with h.client.post(path, json={"workflow": doc}) as response:
                raw = await response.read()
            answer = json.loads(raw)
            assert len(raw) < 50_000, len(raw)  # was 20 MB
            assert len(answer["problems"]) == 100
            assert answer["problem_count"] == UNKNOWN + 1
            assert answer["problems"][0] == {"node": "c", "input": "u0", "code": "unknown_input",
                                             "message": "Constant has no input 'u0' (its inputs: value)"}
        assert response.status == 200 and answer["ok"] is False
        _, err = await h.call("POST", "/api/jobs", 400, json={"workflow": doc})
        assert err["message"] == ("POST /api/jobs: the workflow has 150,001 problems: node 'c' input 'u0': "
                                  "Constant has no input 'u0' (its inputs: value) (and 150,000 more); "
                                  "the first 100 are listed")

    serve(tmp_path, body)


def test_big_validations_run_off_the_event_loop(tmp_path):
    """Four 1-second validations at once: the API keeps answering meanwhile
    (on the loop they stalled it for their whole sum). The probe runs on its
    own thread, so it sees a stalled loop."""
    import threading
    import urllib.request

    async def body(h):
        doc = many_unknown_inputs()
        data = json.dumps({"workflow": doc}).encode()
        headers = {"Content-Type": "application/json"}
        url = f"http://127.0.0.1:{h.client.port}/api/queue"
        latencies: list[float] = []
        answered_at: list[float] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                t0 = time.monotonic()
                with urllib.request.urlopen(url, timeout=30) as response:
                    response.read()
                answered_at.append(time.monotonic())
                latencies.append(answered_at[-1] - t0)
                time.sleep(0.02)

        async def validate():
            async with h.client.post("/api/validate", data=data, headers=headers) as response:
                assert response.status == 200
                return await response.json()

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        answers = await asyncio.gather(*(validate() for _ in range(4)))
        seconds = time.monotonic() - started
        stop.set()
        await asyncio.get_running_loop().run_in_executor(None, prober.join, 30)
        worst = max(latencies)
        print(f"\n4 validations of 150 000 problems took {seconds:.1f} s; slowest of {len(latencies)} "
              f"GET /api/queue meanwhile {worst * 1000:.0f} ms")
        assert all(a["problem_count"] == UNKNOWN + 1 for a in answers)
        # On the loop, the four would block every other request until all were done. Off it, the
        # API goes on answering while they run (not a timing bound: the latency above is printed
        # for the record; the garbage collector's passes over big documents pause every thread).
        during = [t for t in answered_at if started < t < started + seconds]
        assert len(during) >= 3, (len(during), seconds, worst)

    serve(tmp_path, body, timeout=120)


def test_too_many_big_validations_at_once_are_answered_503(tmp_path):
    async def body(h):
        engine = h.server.engine
        real = engine.check

        def slow_check(document, outputs=None):
            time.sleep(0.5)
            return real(document, outputs)

        engine.check = slow_check
        nodes = {f"n{i}": ("Constant", {"value": i}) for i in range(300)}  # costly by count
        doc = workflow({**nodes, "out": ("Collect", {"value": {"link": ["n0", "value"]}})})

        async def submit():
            async with h.client.post("/api/jobs", json={"workflow": doc}) as response:
                return response.status, await response.json(), response.headers.get("Retry-After")

        first = asyncio.ensure_future(submit())
        await asyncio.sleep(0.2)
        status, err, retry = await submit()
        assert (status, retry) == (503, "2")
        assert err == {"error": "busy", "status": 503, "limit": 1,
                       "message": "POST /api/jobs: 1 large workflow is being checked and none may wait "
                                  "(the limits); retry in a moment"}
        assert (await first)[0] == 201
        small = await h.submit(const_doc(1))  # small ones are checked on the loop, never refused
        assert small["job"]["status"] == "queued"

    serve(tmp_path, body, limits={"validation_workers": 1, "max_validation_waiting": 0})
