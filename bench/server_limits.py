"""What one client can make the API server hold: the figures behind the
"Limits and guarantees" table of docs/api.md (issue #13), measured on a real
``python -m lcmgraph.server`` process over loopback (its RSS read from
/proc/PID/status). Not a test; the tests in tests/server check the same
bounds with margins.

    python bench/server_limits.py [--only queue,cancel,ws,validate,loris,connections]

Each part prints one line. Against the code before #13 the same attacks
gave (figures from the issue): GET /api/queue with 100 queued 2 MB jobs
0.37 s and +170 MB; 30 submit+cancel pairs of 2 MB +64 MB of database; 8
never-reading WebSocket clients +810 MB; one node with 150 000 unknown
inputs a 20 MB answer after 1.4 s on the event loop, 8 at once a 8.6 s stall;
slow-loris connections never closed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "tests" / "packs"
HOST = "127.0.0.1"  # loopback only, always
MB = 2**20


class Server:
    def __init__(self, data_dir: Path, *args: str):
        env = {k: v for k, v in os.environ.items() if k not in ("LCMGRAPH_PLUGINS", "LCMGRAPH_TOKEN")}
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lcmgraph.server", "--host", HOST, "--port", "0", "--no-entry-points",
             "--plugins", str(PACKS), "--data-dir", str(data_dir), "--models-dir", str(data_dir / "models"),
             *args], stdout=subprocess.PIPE, stderr=(data_dir / "server.log").open("wb"), env=env, text=True)
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            raise SystemExit(f"the server did not start: {line!r}\n{(data_dir / 'server.log').read_text()}")
        self.base = line.split("serving on ", 1)[1].split()[0].rstrip("/")
        self.port = int(self.base.rsplit(":", 1)[1])

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def database_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.glob("jobs.sqlite3*"))

    def call(self, method: str, path: str, body: bytes | dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def doc(value: float, padding: int = 0) -> dict:
    out = {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "c": {"type": "Constant", "inputs": {"value": value}},
        "out": {"type": "Collect", "inputs": {"value": {"link": ["c", "value"]}}}}}
    if padding:
        out["meta"] = {"description": "x" * padding}
    return out


def slow_doc() -> dict:
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "c": {"type": "Constant", "inputs": {"value": -1}},
        "slow": {"type": "Slow", "inputs": {"x": {"link": ["c", "value"]}, "steps": 1000, "delay": 0.5}},
        "out": {"type": "Collect", "inputs": {"value": {"link": ["slow", "y"]}}}}}


def busy(server: Server) -> str:
    status, raw = server.call("POST", "/api/jobs", {"workflow": slow_doc()})
    assert status == 201, raw
    job = json.loads(raw)["job"]["id"]
    while json.loads(server.call("GET", f"/api/jobs/{job}")[1])["job"]["status"] != "running":
        time.sleep(0.05)
    return job


def part_queue(tmp: Path) -> None:
    server = Server(tmp / "queue")
    try:
        busy(server)
        body = json.dumps({"workflow": doc(1, 1_900_000)}).encode()
        for _ in range(100):
            assert server.call("POST", "/api/jobs", body)[0] == 201
        before = server.rss()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            status, raw = server.call("GET", "/api/queue")
            times.append(time.perf_counter() - t0)
        print(f"queue: 100 queued jobs of 1.9 MB (database {server.database_bytes() / MB:.0f} MiB): GET /api/queue "
              f"{statistics.median(times) * 1000:.1f} ms median, answer {len(raw) / 1024:.0f} kB, "
              f"RSS +{(server.rss() - before) / MB:.1f} MiB over the listing")
    finally:
        server.stop()


def part_cancel(tmp: Path) -> None:
    server = Server(tmp / "cancel")
    try:
        busy(server)
        start = server.database_bytes()
        big = json.dumps({"workflow": doc(1, 1_900_000)}).encode()
        for _ in range(30):
            job = json.loads(server.call("POST", "/api/jobs", big)[1])["job"]["id"]
            server.call("POST", f"/api/jobs/{job}/cancel")
        after_big = server.database_bytes()
        small = json.dumps({"workflow": doc(1, 100_000)}).encode()
        rss0, t0 = server.rss(), time.perf_counter()
        for _ in range(1000):
            job = json.loads(server.call("POST", "/api/jobs", small)[1])["job"]["id"]
            server.call("POST", f"/api/jobs/{job}/cancel")
        seconds = time.perf_counter() - t0
        print(f"cancel: 30 submit+cancel of 1.9 MB: database {start / MB:.1f} -> {after_big / MB:.1f} MiB; "
              f"then 1000 of 100 kB in {seconds:.1f} s: database {server.database_bytes() / MB:.1f} MiB, "
              f"RSS +{(server.rss() - rss0) / MB:.1f} MiB")
    finally:
        server.stop()


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else (
        bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big"))
    return head + b"\0\0\0\0" + payload  # the zero mask


def _raw_websocket(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.sendall(b"GET /api/ws?scope=all HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock


def part_ws(tmp: Path) -> None:
    server = Server(tmp / "ws")
    try:
        sockets = [_raw_websocket(server.port) for _ in range(8)]
        before = server.rss()
        ping = _frame(json.dumps({"type": "ping", "data": "p" * 60_000}).encode())

        def flood(sock: socket.socket) -> None:
            sock.settimeout(5)
            try:
                for _ in range(400):
                    sock.sendall(ping)
            except OSError:
                pass

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(flood, sockets))
        time.sleep(0.5)
        grown = server.rss() - before
        small = _frame(json.dumps({"type": "ping", "data": 1}).encode()) * 200

        def chatter(sock: socket.socket) -> bool:
            sock.settimeout(2)
            try:
                for _ in range(200):
                    sock.sendall(small)
            except OSError:
                return True
            return False

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(chatter, sockets))
        time.sleep(1.5)
        left = json.loads(server.call("GET", "/api")[1])["websocket_clients"]
        print(f"ws: 8 never-reading clients x 400 pings of 60 kB: RSS +{grown / MB:.1f} MiB; after a flood of "
              f"small pings {8 - left} of 8 were disconnected (1013), RSS +{(server.rss() - before) / MB:.1f} MiB")
        for sock in sockets:
            sock.close()
    finally:
        server.stop()


def part_validate(tmp: Path) -> None:
    server = Server(tmp / "validate")
    try:
        inputs = {"value": 1, **{f"u{i}": 1 for i in range(150_000)}}
        body = json.dumps({"workflow": {"format": "lcmgraph.workflow", "version": 1,
                                        "nodes": {"c": {"type": "Constant", "inputs": inputs}}}}).encode()
        t0 = time.perf_counter()
        status, raw = server.call("POST", "/api/validate", body)
        one = time.perf_counter() - t0
        latencies: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                server.call("GET", "/api/queue")
                latencies.append(time.perf_counter() - t)
                time.sleep(0.02)

        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = [s for s, _ in pool.map(lambda _: server.call("POST", "/api/validate", body), range(8))]
        eight = time.perf_counter() - t0
        stop.set()
        prober.join()
        print(f"validate: 150 001 problems: {len(raw) / 1024:.0f} kB answer in {one:.2f} s; 8 at once: "
              f"{eight:.1f} s, statuses {sorted(set(statuses))}, slowest GET /api/queue meanwhile "
              f"{max(latencies) * 1000:.0f} ms (median {statistics.median(latencies) * 1000:.0f} ms)")
    finally:
        server.stop()


def part_loris(tmp: Path) -> None:
    server = Server(tmp / "loris", "--header-timeout", "2")
    try:
        sock = socket.create_connection((HOST, server.port))
        sock.settimeout(0.1)
        head = b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
        t0 = time.perf_counter()
        closed = None
        for byte in head:
            try:
                sock.send(bytes([byte]))
                if sock.recv(100) == b"":
                    closed = time.perf_counter() - t0
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = time.perf_counter() - t0
                break
        print(f"loris: a request head trickled a byte every 0.1 s was closed after "
              f"{closed if closed is None else round(closed, 2)} s (--header-timeout 2)")
    finally:
        server.stop()


def part_connections(tmp: Path) -> None:
    server = Server(tmp / "connections", "--max-connections", "50")
    try:
        held = [socket.create_connection((HOST, server.port)) for _ in range(50)]
        time.sleep(0.2)
        extra = [socket.create_connection((HOST, server.port)) for _ in range(10)]
        refused = 0
        for sock in extra:
            sock.settimeout(1)
            try:
                refused += sock.recv(10) == b""
            except (TimeoutError, OSError):
                refused += isinstance(sys.exc_info()[1], ConnectionResetError)
        for sock in held + extra:
            sock.close()
        time.sleep(0.2)
        print(f"connections: with 50 open (--max-connections 50), {refused} of 10 more were closed at once; "
              f"afterwards GET /api answers {server.call('GET', '/api')[0]}")
    finally:
        server.stop()


PARTS = {"queue": part_queue, "cancel": part_cancel, "ws": part_ws, "validate": part_validate,
         "loris": part_loris, "connections": part_connections}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            PARTS[name.strip()](Path(tmp))


if __name__ == "__main__":
    main()
