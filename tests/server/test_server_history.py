"""The history stays bounded: retention by count and age, deleting jobs with
their files, and a database that does not grow under a submit/cancel loop."""

import asyncio
import time

from lcmgraph.server.config import Retention
from tests.server.harness import const_doc, rss_bytes, serve, slow_doc, solid_doc


def test_history_and_cancelled_jobs_are_pruned_by_count_and_age(tmp_path):
    async def body(h):
        ids = [(await h.wait((await h.submit(const_doc(i)))["job"]["id"]))["id"] for i in range(8)]
        _, history = await h.call("GET", "/api/history?limit=100", 200)
        assert history["total"] <= 4  # 3 kept, pruned once a tenth (at least one) past the limit
        assert [j["id"] for j in history["jobs"]][:3] == ids[::-1][:3]  # the newest stay
        assert (await h.call("GET", f"/api/jobs/{ids[0]}", 404))[1]["error"] == "no_such_job"
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        for i in range(5):
            queued = (await h.submit(const_doc(i)))["job"]["id"]
            await h.call("POST", f"/api/jobs/{queued}/cancel", 200)
        assert h.server.store.count("cancelled") <= 3
        await h.call("POST", "/api/interrupt", 200)
        await h.wait(blocker)
        h.server.queue.retention = Retention(keep_history=100, keep_cancelled=100, max_age=0.5)
        await asyncio.sleep(0.6)
        assert h.server.queue.prune()  # everything is older than half a second now
        _, history = await h.call("GET", "/api/history", 200)
        assert history["total"] == 0

    serve(tmp_path, body, retention=Retention(keep_history=3, keep_cancelled=2))


def test_deleting_finished_jobs_removes_their_records_files_and_index_entries(tmp_path):
    async def body(h):
        first = await h.wait((await h.submit(solid_doc(1)))["job"]["id"])
        second = await h.wait((await h.submit(solid_doc(2)))["job"]["id"])
        third = await h.wait((await h.submit(solid_doc(3)))["job"]["id"])
        url = first["outputs"]["img"]["images"][0]["url"]
        await h.call("GET", url, 200)
        out = h.server.output_root
        assert (out / first["id"] / "solid_1.png").is_file()

        _, deleted = await h.call("DELETE", f"/api/history/{first['id']}", 200)
        assert deleted == {"deleted": [first["id"]], "files_removed": 1}
        assert not (out / first["id"]).exists()
        await h.call("GET", url, 404)
        assert h.server.store.file_owner("output", f"{first['id']}/solid_1.png") is None
        _, err = await h.call("DELETE", f"/api/history/{first['id']}", 404)
        assert err["message"] == f"DELETE /api/history/{first['id']}: no job '{first['id']}'"

        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        waiting = (await h.submit(const_doc(1)))["job"]["id"]
        _, err = await h.call("DELETE", f"/api/history/{blocker}", 409)
        assert err == {"error": "job_not_finished", "status": 409, "job_status": "running", "ids": [blocker],
                       "message": f"DELETE /api/history/{blocker}: job '{blocker}' is running; only finished jobs "
                                  "can be deleted from the history (cancel or interrupt it first, then delete it)"}
        _, err = await h.call("POST", "/api/history/delete", 409, json={"ids": [second["id"], waiting]})
        assert err["error"] == "job_not_finished" and err["ids"] == [waiting]
        assert (await h.job(second["id"]))["status"] == "done"  # all or nothing
        _, err = await h.call("POST", "/api/history/delete", 404, json={"ids": ["nope"]})
        assert err["error"] == "no_such_job"
        _, err = await h.call("POST", "/api/history/delete", 400, json={})
        assert err["message"] == ("POST /api/history/delete: give either 'ids' (a list of job ids) or "
                                  "\"all\": true")
        _, deleted = await h.call("POST", "/api/history/delete", 200, json={"ids": [second["id"]]})
        assert deleted == {"deleted": [second["id"]], "files_removed": 1}
        _, deleted = await h.call("POST", "/api/history/delete", 200, json={"all": True})
        assert deleted["deleted"] == [third["id"]]  # not the running or the queued job
        assert (await h.job(waiting))["status"] == "queued"
        _, history = await h.call("GET", "/api/history", 200)
        assert history["total"] == 0
        await h.call("POST", "/api/queue/clear", 200)
        await h.call("POST", "/api/interrupt", 200)

    serve(tmp_path, body)


def test_the_database_and_memory_stay_bounded_under_a_submit_cancel_loop(tmp_path):
    """1000 jobs of 100 kB submitted and cancelled: the database grew by 100 MB;
    now a cancelled job keeps no document and at most keep_cancelled are kept."""
    doc = const_doc(1)
    doc["meta"] = {"description": "x" * 100_000}
    rounds = 1000

    async def body(h):
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.1)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        for _ in range(20):  # warm up: caches, pools, the first pages
            job = (await h.submit(doc))["job"]["id"]
            await h.call("POST", f"/api/jobs/{job}/cancel", 200)
        before = rss_bytes()
        started = time.monotonic()
        peak = before
        for i in range(rounds):
            job = (await h.submit(doc))["job"]["id"]
            await h.call("POST", f"/api/jobs/{job}/cancel", 200)
            if i % 100 == 0:
                peak = max(peak, rss_bytes())
        seconds = time.monotonic() - started
        size = h.server.store.size_bytes()
        grown = max(peak, rss_bytes()) - before
        print(f"\n{rounds} submit+cancel of 100 kB jobs: {seconds:.1f} s, database {size / 2**20:.1f} MiB, "
              f"RSS +{grown / 2**20:.1f} MiB")
        # a few kB per kept cancelled job, up to 4 MB of write-ahead log; it was 100 MB
        assert size < 12 * 2**20, size
        assert grown < 80 * 2**20, grown
        assert h.server.store.count("cancelled") <= 110
        await h.call("POST", "/api/interrupt", 200)

    serve(tmp_path, body, timeout=120)


def test_cancelled_jobs_keep_no_document_and_finished_ones_keep_theirs_within_a_budget(tmp_path):
    big = const_doc(1)
    big["meta"] = {"description": "x" * 1_900_000}

    async def body(h):
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.1)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        start = h.server.store.size_bytes()
        for _ in range(30):  # 57 MB of documents, submitted and cancelled
            job = (await h.submit(big))["job"]["id"]
            await h.call("POST", f"/api/jobs/{job}/cancel", 200)
        grown = h.server.store.size_bytes() - start
        print(f"\n30 submit+cancel of 1.9 MB jobs: the database grew {grown / 2**20:.1f} MiB")
        assert grown < 12 * 2**20, grown  # the write-ahead log and reused pages, not 57 MB
        _, full = await h.call("GET", f"/api/jobs/{job}?workflow=1", 200)
        assert full["job"]["status"] == "cancelled" and full["job"]["workflow"] is None
        await h.call("POST", "/api/interrupt", 200)
        await h.wait(blocker)
        h.server.queue.retention = Retention(max_workflow_bytes=3_000_000)
        done = [(await h.wait((await h.submit(big))["job"]["id"]))["id"] for _ in range(3)]
        kept = [(await h.call("GET", f"/api/jobs/{j}?workflow=1", 200))[1]["job"] for j in done]
        assert [k["workflow"] is not None for k in kept] == [False, False, True]  # only the newest fits
        assert all(k["status"] == "done" for k in kept)  # the jobs themselves stay

    serve(tmp_path, body, timeout=120)
