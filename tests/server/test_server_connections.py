"""Connections cannot be held open for free: slow-loris request heads and
bodies time out, idle keep-alive connections close, and the number of open
connections is bounded."""

import asyncio
import socket
import time

from tests.server.harness import serve


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.05)
    return sock


def _closed_after(sock: socket.socket, trickle: bytes = b"", limit: float = 6.0) -> float | None:
    """Seconds until the server closes ``sock`` while we send ``trickle`` a byte every 0.1 s; None if it never did."""
    started = time.monotonic()
    position = 0
    while time.monotonic() - started < limit:
        try:
            if position < len(trickle):
                sock.send(trickle[position:position + 1])
                position += 1
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_slow_loris_heads_and_silent_connections_are_closed_within_the_timeout(tmp_path):
    async def body(h):
        loop = asyncio.get_running_loop()
        port = h.client.port
        trickle = b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 200
        slow, silent = _connect(port), _connect(port)
        slow_after, silent_after = await asyncio.gather(
            loop.run_in_executor(None, _closed_after, slow, trickle),
            loop.run_in_executor(None, _closed_after, silent))
        print(f"\nslow loris closed after {slow_after} s, a silent connection after {silent_after} s "
              f"(header timeout 1 s)")
        assert slow_after is not None and slow_after < 3.0, slow_after
        assert silent_after is not None and silent_after < 3.0, silent_after
        slow.close()
        silent.close()
        # A WebSocket open longer than the timeout is not touched, nor a keep-alive connection in use.
        ws = await h.client.ws_connect("/api/ws")
        await ws.receive_json()
        await asyncio.sleep(1.6)
        await ws.send_json({"type": "ping", "data": 1})
        assert await ws.receive_json() == {"type": "pong", "data": 1}
        await ws.close()
        await h.call("GET", "/api", 200)

    serve(tmp_path, body, limits={"header_timeout": 1.0})


def _send_half_a_body(port: int, trickle: float | None = None) -> tuple[bytes, float]:
    """POST a body announced as 1000 bytes, send 12 of them (one more every ``trickle`` s); the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.05 if trickle else 5)
    sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"workflow\": ")
    started = time.monotonic()
    answer = b""
    while b"\r\n\r\n" not in answer and time.monotonic() - started < 10:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            sock.sendall(b" ")
            time.sleep(trickle)
            continue
        if not chunk:
            break
        answer += chunk
    seconds = time.monotonic() - started
    while True:
        try:
            more = sock.recv(4096)
        except TimeoutError:
            break
        if not more:
            break
        answer += more
    sock.close()
    return answer, seconds


def test_a_body_that_does_not_arrive_in_time_is_answered_408(tmp_path):
    async def body(h):
        loop = asyncio.get_running_loop()
        answer, seconds = await loop.run_in_executor(None, _send_half_a_body, h.client.port, 0.1)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"POST /api/jobs: the request body did not arrive within 1 s" in answer
        assert 0.9 < seconds < 3.0

    serve(tmp_path, body, limits={"body_timeout": 1.0})


def test_a_body_that_stops_arriving_is_answered_408(tmp_path):
    async def body(h):
        loop = asyncio.get_running_loop()
        answer, seconds = await loop.run_in_executor(None, _send_half_a_body, h.client.port)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"POST /api/jobs: the request body stopped arriving for more than 0.5 s" in answer
        assert seconds < 3.0

    serve(tmp_path, body, limits={"body_idle_timeout": 0.5})


def test_open_connections_are_bounded(tmp_path):
    async def body(h):
        loop = asyncio.get_running_loop()
        held = [await loop.run_in_executor(None, _connect, h.client.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        extra = await loop.run_in_executor(None, _connect, h.client.port)
        closed = await loop.run_in_executor(None, _closed_after, extra, b"", 2.0)
        assert closed is not None and closed < 1.0, closed
        for sock in [*held, extra]:
            sock.close()
        await asyncio.sleep(0.2)
        await h.call("GET", "/api", 200)  # room again

    serve(tmp_path, body, limits={"max_connections": 3})


def test_request_heads_are_bounded(tmp_path):
    async def body(h):
        loop = asyncio.get_running_loop()

        def ask(head: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", h.client.port)) as sock:
                sock.settimeout(5)
                sock.sendall(head)
                return sock.recv(200)

        many = b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
        assert (await loop.run_in_executor(None, ask, many + b"\r\n"))[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400")
        long_line = b"GET /api?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        assert (await loop.run_in_executor(None, ask, long_line))[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400")

    serve(tmp_path, body)
