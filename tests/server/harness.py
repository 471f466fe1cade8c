"""Helpers for the server tests: an in-process server on loopback
(aiohttp's TestServer), workflows from the test packs, job polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from lcmgraph import Engine, EngineConfig
from lcmgraph.server import Limits, ServerApp, ServerConfig
from lcmgraph.server.application import web_application
from lcmgraph.server.connections import limit_connections, runner_options

TESTS = Path(__file__).resolve().parents[1]
PACKS = [TESTS / "packs", Path(__file__).resolve().parent / "packs"]
TEST_TIMEOUT = 30.0
FINISHED = ("done", "failed", "interrupted", "cancelled")


def make_engine(tmp_path: Path) -> Engine:
    return Engine(EngineConfig(plugin_dirs=PACKS, plugins_from_env=False, load_entry_points=False,
                               home=tmp_path / "home", models_dir=tmp_path / "models",
                               output_dir=tmp_path / "out"))


def workflow(nodes: dict[str, tuple[str, dict]], **extra: Any) -> dict:
    out = {"format": "lcmgraph.workflow", "version": 1,
           "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}
    out.update(extra)
    return out


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}


def const_doc(value: float) -> dict:
    return workflow({"c": ("Constant", {"value": value}), "out": ("Collect", {"value": link("c", "value")})})


def solid_doc(value: int) -> dict:
    return workflow({"c": ("Constant", {"value": value}), "img": ("SolidImage", {"value": link("c", "value")})})


def slow_doc(steps: int = 1000, delay: float = 0.01, tag: float = 0.0) -> dict:
    return workflow({"c": ("Constant", {"value": tag}),
                     "slow": ("Slow", {"x": link("c", "value"), "steps": steps, "delay": delay}),
                     "out": ("Collect", {"value": link("slow", "y")})})


class Harness:
    def __init__(self, client: TestClient, server: ServerApp, tmp: Path):
        self.client = client
        self.server = server
        self.tmp = tmp
        #: Headers every call sends (e.g. an Authorization header), under the call's own.
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> tuple[int, Any]:
        if self.headers:
            kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
        async with self.client.request(method, path, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else await response.read()
            if expect is not None:
                assert response.status == expect, (method, path, response.status, body)
            return response.status, body

    async def submit(self, doc: dict, client_id: str = "tester", expect: int = 201, **fields: Any) -> dict:
        _, body = await self.call("POST", "/api/jobs", expect, json={"workflow": doc, "client_id": client_id,
                                                                     **fields})
        return body

    async def job(self, job_id: str) -> dict:
        return (await self.call("GET", f"/api/jobs/{job_id}", 200))[1]["job"]

    async def wait(self, job_id: str, timeout: float = 10.0, status: tuple[str, ...] = FINISHED) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] in status:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, engine: Engine | None = None, limits: dict | None = None,
                  access_log: Any = None, **config: Any):
    """A server as ``lcmgraph serve`` runs it (aiohttp's connection settings included)."""
    web_dir = config.pop("web_dir", None)
    settings = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                            workflows_dir=config.pop("workflows_dir", tmp_path / "workflows"),
                            web_dir=web_dir, limits=Limits(**(limits or {})), **config)
    server = ServerApp(settings, engine or make_engine(tmp_path))
    server.web_dir = web_dir  # None: the placeholder page, whatever the repository's web/ holds
    test_server = TestServer(web_application(server), host="127.0.0.1")
    await test_server.start_server(**runner_options(settings.limits, access_log))  # (its constructor drops them)
    client = TestClient(test_server)
    await client.start_server()
    limit_connections(client.server.runner.server, settings.limits.max_connections)
    try:
        yield Harness(client, server, tmp_path)
    finally:
        await client.close()


def serve(tmp_path: Path, body, timeout: float = TEST_TIMEOUT, **options: Any) -> None:
    """Run ``await body(harness)`` against a fresh server; everything inside one event loop."""

    async def main() -> None:
        async with serving(tmp_path, **options) as harness:
            await asyncio.wait_for(body(harness), timeout)

    asyncio.run(main())


# -- a real server process ---------------------------------------------------

class ServerProcess:
    """``python -m lcmgraph.server`` on a free loopback port, driven with urllib."""

    def __init__(self, tmp_path: Path, *args: str, name: str = "server", env: dict[str, str] | None = None,
                 entry_points: bool = False):
        """``entry_points``: also load the installed packs (the diffusion pack's tiny built-in models)."""
        import os
        import subprocess
        import sys

        env = {**{k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")},
               **(env or {})}
        command = [sys.executable, "-m", "lcmgraph.server", "--port", "0",
                   *([] if entry_points else ["--no-entry-points"]),
                   "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "models"),
                   "--workflows-dir", str(tmp_path / "workflows"), *args]
        for pack in PACKS:
            command += ["--plugins", str(pack)]
        self.log = tmp_path / f"{name}.log"
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log.open("wb"), env=env,
                                     text=True)
        line = self.proc.stdout.readline()  # the server prints its address once it listens
        assert "serving on" in line, f"server did not start: {line!r}\n{self.log.read_text()}"
        self.base = line.split("serving on ", 1)[1].split()[0].rstrip("/")

    def request(self, method: str, path: str, body: Any = None, expect: int | None = 200,
                headers: dict[str, str] | None = None) -> Any:
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if data else {}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={**sent, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                status, raw, ctype = response.status, response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get_content_type()
        if expect is not None:
            assert status == expect, (method, path, status, raw[:500])
        return json.loads(raw) if ctype == "application/json" else raw

    def wait(self, job_id: str, status: tuple[str, ...] = FINISHED, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.request("GET", f"/api/jobs/{job_id}")["job"]
            if job["status"] in status:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
            time.sleep(0.05)

    def kill(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        return self.proc.returncode


def rss_bytes() -> int:
    """This process's resident memory (an in-process server's included)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
