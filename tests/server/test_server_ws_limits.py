"""WebSocket clients cannot make the server hold memory: buffers are bounded in
bytes, pings echo only small data, and clients that never read are cut off."""

import asyncio
import json
import os
import socket
import time

from lcmgraph.server.hub import Hub
from tests.server.harness import rss_bytes, serve


class StuckSocket:
    """A WebSocket whose peer never reads: every send waits forever."""

    def __init__(self):
        self.closed, self.close_code = False, None

    async def send_str(self, text):
        await asyncio.Event().wait()

    async def close(self, code, message):
        self.closed, self.close_code = True, code
        return True


def test_a_client_buffer_is_bounded_in_bytes_not_only_in_messages():
    async def main():
        hub = Hub(buffer=2000, buffer_bytes=1024 * 1024, total_bytes=64 * 1024 * 1024)
        stuck = StuckSocket()
        client = hub.attach(stuck, "slow", "all")
        big = "x" * 100_000
        for i in range(30):  # 3 MB of messages that matter: more than the client may hold
            hub.publish({"type": "node_output", "job": "j1", "client_id": "other", "data": big, "i": i})
        await asyncio.sleep(0.01)
        assert stuck.closed and stuck.close_code == 1013
        assert client.buffered_bytes == 0 and hub.buffered_bytes == 0  # freed at once, not when it goes
        await hub.detach(client)

    asyncio.run(main())


def test_all_clients_together_are_bounded_too():
    async def main():
        hub = Hub(buffer=2000, buffer_bytes=1024 * 1024, total_bytes=2 * 1024 * 1024)
        sockets = [StuckSocket() for _ in range(4)]
        clients = [hub.attach(s, f"c{i}", "all") for i, s in enumerate(sockets)]
        for i in range(7):  # 700 kB each: every client under its own limit, all together over 2 MB
            hub.publish({"type": "node_output", "job": "j1", "client_id": "x", "data": "y" * 100_000, "i": i})
        await asyncio.sleep(0.01)
        assert hub.buffered_bytes <= 2 * 1024 * 1024
        assert sum(s.closed for s in sockets) >= 2
        for client in clients:
            await hub.detach(client)

    asyncio.run(main())


def _frame(payload: bytes) -> bytes:
    """A masked client text frame."""
    header = bytearray([0x81])
    length = len(payload)
    if length < 126:
        header.append(0x80 | length)
    elif length < 65536:
        header += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frame_fast(payload: bytes) -> bytes:
    """A client text frame with the all-zero mask (masking is then the identity)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 65536:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


def _open_raw_websocket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/ws?client_id=sink&scope=all HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock  # from here on it never reads


def test_clients_that_never_read_cannot_grow_the_servers_memory(tmp_path):
    """8 clients each send 400 pings carrying 60 kB: echoed, that was 8 x 24 MB
    held for clients that never read (up to 8 x 120 MB with the old
    2000-message buffers); now a long ping is answered with a short error, and
    a client whose buffer fills is disconnected."""

    async def body(h):
        loop = asyncio.get_running_loop()
        port = h.client.port
        sockets = [await loop.run_in_executor(None, _open_raw_websocket, port) for _ in range(8)]
        await asyncio.sleep(0.1)
        assert len(h.server.hub) == 8
        before = rss_bytes()
        ping = _frame_fast(json.dumps({"type": "ping", "data": "p" * 60_000}).encode())
        started = time.monotonic()

        def flood(sock):
            sock.settimeout(5.0)
            try:
                for _ in range(400):
                    sock.sendall(ping)
            except OSError:  # the server stopped reading it (it might, while its replies pile up)
                pass

        await asyncio.gather(*(loop.run_in_executor(None, flood, s) for s in sockets))
        await asyncio.sleep(0.3)
        grown = rss_bytes() - before
        print(f"\n8 never-reading clients x 400 pings of 60 kB: RSS +{grown / 2**20:.1f} MiB, "
              f"{h.server.hub.buffered_bytes} bytes buffered, {time.monotonic() - started:.1f} s")
        assert grown < 32 * 2**20, grown
        assert h.server.hub.buffered_bytes < 8 * 64 * 1024
        status, info = await h.call("GET", "/api", 200)  # the server still answers
        small = _frame_fast(json.dumps({"type": "ping", "data": 1}).encode())

        def chatter(sock):  # small pings: each answered, none read, until the server cuts it off
            sock.settimeout(2.0)
            try:
                for _ in range(100):
                    sock.sendall(small * 200)
            except OSError:
                pass  # disconnected (or the server stopped reading it)

        await asyncio.gather(*(loop.run_in_executor(None, chatter, s) for s in sockets))
        deadline = time.monotonic() + 10
        while len(h.server.hub) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(h.server.hub) == 0, "clients that never read were not disconnected"
        assert h.server.hub.buffered_bytes == 0
        for sock in sockets:
            sock.close()
        ws = await h.client.ws_connect("/api/ws")  # others are served as before
        await ws.receive_json()
        await ws.send_json({"type": "ping", "data": "p" * 65})
        assert await ws.receive_json() == {"type": "error",
                                           "message": "ping: 'data' is longer than 64 characters; it is not echoed"}
        await ws.send_json({"type": "ping", "data": "p" * 64})
        assert await ws.receive_json() == {"type": "pong", "data": "p" * 64}
        await ws.close()

    serve(tmp_path, body, timeout=60)


def test_shutting_down_does_not_wait_for_clients_that_never_read(tmp_path):
    import threading

    from tests.server.harness import serving

    sockets = []

    async def main():
        async with serving(tmp_path, limits={"ws_buffer_bytes": 64 * 2**20}) as h:
            loop = asyncio.get_running_loop()
            for _ in range(3):
                sockets.append(await loop.run_in_executor(None, _open_raw_websocket, h.client.port))
            await asyncio.sleep(0.1)
            for _ in range(20):  # fill their pipes: the close frame cannot get through
                h.server.hub.publish({"type": "node_output", "job": "j", "client_id": "x", "data": "z" * 2**20})
            await asyncio.sleep(0.2)
        return time.monotonic()

    started = time.monotonic()
    result: list = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(main())), daemon=True)
    runner.start()
    runner.join(30)
    for sock in sockets:
        sock.close()
    assert result, "the server did not stop within 30 s"
    assert result[0] - started < 10
