"""``lcmgraph serve --ray local`` as a process: killed with SIGKILL while its
worker runs a job and others wait, then started again on the same data
directory. The SQLite queue is the truth: the waiting jobs run after the
restart, the running one is recorded as failed (server_restart), none is
lost or listed twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.server.harness import PACKS, const_doc, slow_doc

ROOT = Path(__file__).resolve().parents[2]


class RayServer:
    """``python -m lcmgraph.server --ray local`` in a session of its own, so that
    its local Ray's helper processes can be ended with it."""

    def __init__(self, tmp_path: Path, name: str):
        env = {**{k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")},
               "RAY_USAGE_STATS_ENABLED": "0"}
        command = [sys.executable, "-m", "lcmgraph.server", "--port", "0", "--no-entry-points",
                   "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "models"),
                   "--workflows-dir", str(tmp_path / "workflows"), "--ray", "local", "--workers", "1"]
        for pack in PACKS:
            command += ["--plugins", str(pack)]
        self.log = tmp_path / f"{name}.log"
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log.open("wb"), env=env,
                                     text=True, cwd=ROOT, start_new_session=True)
        line = self.proc.stdout.readline()
        assert "serving on" in line, f"server did not start: {line!r}\n{self.log.read_text()[-3000:]}"
        self.base = line.split("serving on ", 1)[1].split()[0].rstrip("/")

    def request(self, method: str, path: str, body=None):
        import json
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    def wait(self, job_id: str, statuses: tuple[str, ...], timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.request("GET", f"/api/jobs/{job_id}")["job"]
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}\n{self.log.read_text()[-3000:]}"
            time.sleep(0.1)

    def end(self, sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stdout.close()


def test_a_ray_server_killed_and_restarted_loses_no_job(tmp_path):
    first = RayServer(tmp_path, "first")
    try:
        running = first.request("POST", "/api/jobs", {"workflow": slow_doc(steps=1000, delay=0.02)})["job"]["id"]
        waiting = [first.request("POST", "/api/jobs", {"workflow": const_doc(v)})["job"]["id"] for v in (1.0, 2.0)]
        first.wait(running, ("running",))
        os.kill(first.proc.pid, signal.SIGKILL)  # the server only; its Ray worker is running the job
        first.proc.wait(10)
    finally:
        first.end(signal.SIGKILL)

    second = RayServer(tmp_path, "second")
    try:
        done = [second.wait(job_id, ("done", "failed")) for job_id in waiting]
        assert [j["status"] for j in done] == ["done", "done"]
        assert [j["outputs"]["out"]["values"] for j in done] == [[1.0], [2.0]]
        lost = second.request("GET", f"/api/jobs/{running}")["job"]
        assert lost["status"] == "failed" and lost["error"]["code"] == "server_restart"
        history = [j["id"] for j in second.request("GET", "/api/history?limit=50")["jobs"]]
        assert sorted(history) == sorted([running, *waiting])
        workers = second.request("GET", "/api/workers")["workers"]
        assert [w["kind"] for w in workers] == ["ray"] and workers[0]["jobs_done"] == 2
    finally:
        second.end()
