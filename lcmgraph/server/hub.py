"""WebSocket fan-out: every message goes to the clients that should see it.

A job's messages carry its ``client_id``; they reach that client and every
client subscribed to scope "all". Messages without a job (queue changes)
reach everyone. With users (``--users``), a client that is not an admin gets
only the messages of its own user's jobs, whatever its scope.

Each client has its own buffer, bounded in bytes and in messages, and its own
sender task, so one slow client never delays the others: when its buffer is
full, progress messages for it are dropped; if a message that matters
does not fit, the client is disconnected (close code 1013; it can re-read
/api/queue and /api/history after reconnecting) and its buffer is freed at
once. All clients' buffers together are bounded too: past that, the client
holding the most is disconnected. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, web

from .errors import dumps

log = logging.getLogger("lcmgraph.server")

SCOPES = ("own", "all")
#: Counted per buffered message besides its text (the deque slot, the str header).
MESSAGE_OVERHEAD = 64
#: How long a disconnected slow client gets to take its close frame before the socket is cut.
CLOSE_GRACE = 1.0
TOO_SLOW = b"client too slow; reconnect and re-read the queue"


class Client:
    def __init__(self, ws: web.WebSocketResponse, client_id: str, scope: str, buffer: int,
                 buffer_bytes: int, user: str = "", admin: bool = True,
                 abort: Callable[[], None] | None = None):
        self.ws = ws
        self.client_id = client_id
        self.scope = scope
        self.user = user
        self.admin = admin
        self._buffer: deque[str | bytes] = deque()
        self._limit = buffer
        self._byte_limit = buffer_bytes
        self.buffered_bytes = 0
        self._ready = asyncio.Event()
        self._closing = False
        self._abort = abort
        self.dropped = 0
        self.task: asyncio.Task | None = None
        self.hub: Hub | None = None
        #: Rewrites each message for this client (ComfyUI's /ws: its own message
        #: types), giving zero or more messages (a dict: JSON text; bytes: a binary
        #: frame, e.g. a preview image); None: sent as they are.
        self.translate: Callable[[dict[str, Any]], list[dict[str, Any] | bytes]] | None = None

    def wants(self, client_id: str | None, owner: str | None, is_job: bool) -> bool:
        if not is_job:
            return True
        if not self.admin and owner != self.user:
            return False
        return self.scope == "all" or client_id == self.client_id

    @property
    def closing(self) -> bool:
        return self._closing

    def offer(self, text: str | bytes, droppable: bool) -> bool:
        """Buffer ``text`` (or a binary frame) for sending; False if it was dropped or
        the client is being cut off."""
        if self._closing:
            return False
        size = len(text) + MESSAGE_OVERHEAD  # dumps() writes ASCII: one byte a character
        if self.buffered_bytes + size > self._byte_limit or len(self._buffer) >= self._limit:
            if droppable:
                self.dropped += 1
                return False
            self.disconnect(f"{self.buffered_bytes + size} bytes / {len(self._buffer) + 1} messages "
                            "waiting for it")
            return False
        self._buffer.append(text)
        self.buffered_bytes += size
        if self.hub is not None:
            self.hub.buffered_bytes += size
        self._ready.set()
        return True

    def disconnect(self, why: str) -> None:
        """Cut a client that does not keep up: free its buffer now, close with 1013."""
        if self._closing:
            return
        self._closing = True
        log.warning("websocket client %s is too slow (%s); disconnecting", self.client_id, why)
        self._release()
        if self.task is not None:
            self.task.cancel()
        asyncio.ensure_future(self.close(WSCloseCode.TRY_AGAIN_LATER, TOO_SLOW))

    async def close(self, code: int, message: bytes) -> None:
        """Close within CLOSE_GRACE seconds; a client that does not even take its
        close frame in that time has its connection cut."""
        closed = False
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                closed = await self.ws.close(code=code, message=message)
        except (TimeoutError, ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        if not closed and self._abort is not None:
            with contextlib.suppress(Exception):
                self._abort()

    def _release(self) -> None:
        if self.hub is not None:
            self.hub.buffered_bytes -= self.buffered_bytes
        self.buffered_bytes = 0
        self._buffer.clear()

    async def run_sender(self) -> None:
        try:
            while not self.ws.closed and not self._closing:
                await self._ready.wait()
                self._ready.clear()
                while self._buffer and not self.ws.closed and not self._closing:
                    text = self._buffer.popleft()
                    size = len(text) + MESSAGE_OVERHEAD
                    self.buffered_bytes -= size
                    if self.hub is not None:
                        self.hub.buffered_bytes -= size
                    if isinstance(text, bytes):
                        await self.ws.send_bytes(text)
                    else:
                        await self.ws.send_str(text)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass


class Hub:
    def __init__(self, buffer: int, buffer_bytes: int = 4 * 1024 * 1024,
                 total_bytes: int = 64 * 1024 * 1024):
        self._clients: set[Client] = set()
        self._buffer = buffer
        self._buffer_bytes = buffer_bytes
        self._total_bytes = total_bytes
        #: Bytes waiting in all clients' buffers together.
        self.buffered_bytes = 0
        #: Running jobs' owners, for routing the events the worker posts.
        self._owners: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def configure(self, buffer: int, buffer_bytes: int, total_bytes: int) -> None:
        """Set the bounds for clients attached from now on (and the total)."""
        self._buffer, self._buffer_bytes, self._total_bytes = buffer, buffer_bytes, total_bytes

    def attach(self, ws: web.WebSocketResponse, client_id: str, scope: str, user: str = "",
               admin: bool = True, abort: Callable[[], None] | None = None) -> Client:
        client = Client(ws, client_id, scope, self._buffer, self._buffer_bytes, user, admin, abort)
        client.hub = self
        self._clients.add(client)
        client.task = asyncio.ensure_future(client.run_sender())
        return client

    async def detach(self, client: Client) -> None:
        self._clients.discard(client)
        client._release()
        if client.task is not None:
            client.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.task

    def track(self, job_id: str, owner: str) -> None:
        self._owners[job_id] = owner

    def untrack(self, job_id: str) -> None:
        self._owners.pop(job_id, None)

    def send(self, client: Client, message: dict[str, Any]) -> None:
        """Send ``message`` to one client, as is (never translated)."""
        client.offer(dumps(message), droppable=False)
        self._check_total()

    def publish(self, message: dict[str, Any], droppable: bool = False, owner: str | None = None) -> None:
        """Deliver to every interested client (``message["client_id"]`` is the job's
        client; ``owner`` its user, else the one ``track`` recorded)."""
        is_job = "job" in message
        client_id = message.get("client_id") if is_job else None
        if is_job and owner is None:
            owner = self._owners.get(message["job"])
        text: str | None = None
        for client in self._clients:
            if not client.wants(client_id, owner, is_job):
                continue
            if client.translate is not None:
                for translated in client.translate(message):
                    client.offer(translated if isinstance(translated, bytes) else dumps(translated), droppable)
                continue
            text = text or dumps(message)
            client.offer(text, droppable)
        self._check_total()

    def _check_total(self) -> None:
        while self.buffered_bytes > self._total_bytes:
            live = [c for c in self._clients if not c.closing and c.buffered_bytes]
            if not live:
                return
            worst = max(live, key=lambda c: c.buffered_bytes)
            worst.disconnect(f"all clients together have {self.buffered_bytes} bytes waiting; "
                             f"it holds {worst.buffered_bytes}")

    async def close_all(self) -> None:
        """At shutdown: close every client at once (never waiting on one that does not read)."""
        clients = list(self._clients)
        for client in clients:
            client._closing = True
            client._release()
            if client.task is not None:
                client.task.cancel()
        await asyncio.gather(*(c.close(WSCloseCode.GOING_AWAY, b"server shutting down") for c in clients),
                             return_exceptions=True)
        for client in clients:
            await self.detach(client)
