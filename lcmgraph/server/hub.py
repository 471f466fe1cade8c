"""WebSocket fan-out: every message goes to the clients that should see it.

A job's messages carry its owner's ``client_id``; they reach that client and
every client subscribed to scope "all". Messages without ``client_id``
(queue changes) reach everyone. Each client has its own bounded buffer and
sender task, so one slow client never delays the others: when its buffer is
full, progress messages for it are dropped, and if it is still full for a
message that matters it is disconnected (it can re-read /api/queue and
/api/history after reconnecting). Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, web

from .errors import dumps

log = logging.getLogger("lcmgraph.server")

SCOPES = ("own", "all")


class Client:
    def __init__(self, ws: web.WebSocketResponse, client_id: str, scope: str, buffer: int):
        self.ws = ws
        self.client_id = client_id
        self.scope = scope
        self._buffer: deque[str] = deque()
        self._limit = buffer
        self._ready = asyncio.Event()
        self._closing = False
        self.dropped = 0
        self.task: asyncio.Task | None = None

    def wants(self, owner: str | None) -> bool:
        return owner is None or self.scope == "all" or owner == self.client_id

    def offer(self, text: str, droppable: bool) -> None:
        if self._closing:
            return
        if len(self._buffer) >= self._limit:
            if droppable:
                self.dropped += 1
                return
            self._closing = True
            log.warning("websocket client %s is too slow; disconnecting", self.client_id)
            asyncio.ensure_future(self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER,
                                                message=b"client too slow; reconnect and re-read the queue"))
            return
        self._buffer.append(text)
        self._ready.set()

    async def run_sender(self) -> None:
        try:
            while not self.ws.closed:
                await self._ready.wait()
                self._ready.clear()
                while self._buffer and not self.ws.closed:
                    await self.ws.send_str(self._buffer.popleft())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass


class Hub:
    def __init__(self, buffer: int):
        self._clients: set[Client] = set()
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self._clients)

    def attach(self, ws: web.WebSocketResponse, client_id: str, scope: str) -> Client:
        client = Client(ws, client_id, scope, self._buffer)
        self._clients.add(client)
        client.task = asyncio.ensure_future(client.run_sender())
        return client

    async def detach(self, client: Client) -> None:
        self._clients.discard(client)
        if client.task is not None:
            client.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.task

    def send(self, client: Client, message: dict[str, Any]) -> None:
        client.offer(dumps(message), droppable=False)

    def publish(self, message: dict[str, Any], droppable: bool = False) -> None:
        """Deliver to every interested client (``message["client_id"]`` is the job's owner)."""
        owner = message.get("client_id") if "job" in message else None
        text: str | None = None
        for client in self._clients:
            if client.wants(owner):
                text = text or dumps(message)
                client.offer(text, droppable)

    async def close_all(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            await self.detach(client)
