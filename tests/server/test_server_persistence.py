"""Nothing is lost: a real server process killed with SIGKILL mid-run restarts
with its queue, history and output files; the job that was running is failed."""

from tests.server.harness import ServerProcess, const_doc, slow_doc, solid_doc


def test_kill_9_and_restart_keeps_queue_history_and_outputs(tmp_path):
    first = ServerProcess(tmp_path, name="first")
    try:
        done = first.request("POST", "/api/jobs", {"workflow": solid_doc(11), "client_id": "p"}, 201)["job"]["id"]
        finished = first.wait(done)
        image = finished["outputs"]["img"]["images"][0]
        original = first.request("GET", image["url"])
        slow = first.request("POST", "/api/jobs", {"workflow": slow_doc(steps=1000, delay=0.05)}, 201)["job"]["id"]
        first.wait(slow, status=("running",))
        # what a node of the running job had written when the process died
        partial = tmp_path / "data" / "outputs" / slow / "half.png"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(original[:100])
        waiting = [first.request("POST", "/api/jobs", {"workflow": doc, "client_id": "p"}, 201)["job"]["id"]
                   for doc in (const_doc(1), solid_doc(12), const_doc(3), const_doc(4))]
        first.request("POST", f"/api/jobs/{waiting[3]}/cancel")
        first.request("POST", f"/api/jobs/{waiting[2]}/move", {"position": 0})
    finally:
        first.kill()
    assert first.proc.returncode == -9

    second = ServerProcess(tmp_path, name="second")
    try:
        crashed = second.request("GET", f"/api/jobs/{slow}")["job"]
        assert crashed["status"] == "failed"
        assert crashed["error"] == {"code": "server_restart",
                                    "message": "the server stopped while this job was running; it was not re-run "
                                               "(resubmit it to run it again)"}
        runs = [second.wait(job_id) for job_id in waiting[:3]]
        assert [r["status"] for r in runs] == ["done", "done", "done"]
        assert runs[2]["started"] < runs[0]["started"] < runs[1]["started"], "queue order survived the restart"
        assert runs[1]["outputs"]["img"]["images"][0]["name"] == f"{waiting[1]}/solid_12.png"
        assert second.request("GET", f"/api/jobs/{waiting[3]}")["job"]["status"] == "cancelled"
        history = second.request("GET", "/api/history?limit=10")
        assert history["total"] == 6
        kept = next(j for j in history["jobs"] if j["id"] == done)
        assert kept["outputs"] == finished["outputs"] and kept["status"] == "done"
        assert second.request("GET", image["url"]) == original
        assert "marked 1 job(s) interrupted by the last shutdown as failed" in second.log.read_text()
        # the crashed job's files are quarantined, not served
        second.request("GET", f"/api/files/output/{slow}/half.png", expect=404)
        assert not partial.exists()
        assert (tmp_path / "data" / "outputs" / ".quarantine" / slow / "half.png").is_file()
    finally:
        assert second.stop() == 0


def test_graceful_stop_interrupts_the_running_job_and_keeps_the_queue(tmp_path):
    import asyncio

    from lcmgraph.server.store import JobStore
    from tests.server.harness import serving

    async def main():
        async with serving(tmp_path) as h:
            running = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
            await h.wait(running, status=("running",))
            waiting = (await h.submit(const_doc(1)))["job"]["id"]
        return running, waiting

    running, waiting = asyncio.run(main())
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    stopped = store.get(running)
    assert stopped.status == "interrupted"
    assert stopped.error["code"] == "server_shutdown"
    assert stopped.error["message"] == "the server was stopped while this job was running; resubmit it"
    assert stopped.error["node"] in (None, "c", "slow")  # 'running' from the claim on; which node depends on timing
    assert store.get(waiting).status == "queued"
    store.close()
