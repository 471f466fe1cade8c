"""GET /api/ws: the event stream. Query: client_id (default: a new one), scope=own|all.

A user who is not an admin only ever gets its own jobs' events (scope "all":
all of them, from any of its clients)."""

from __future__ import annotations

import json
import uuid

from aiohttp import WSMsgType, web

from ..bodies import CLIENT_ID, server_of, user_of, where
from ..errors import ApiError, bad_request
from ..hub import SCOPES


async def websocket(request: web.Request) -> web.WebSocketResponse:
    server = server_of(request)
    here = where(request)
    client_id = request.query.get("client_id") or uuid.uuid4().hex[:16]
    if not CLIENT_ID.match(client_id):
        raise bad_request(f"{here}: client_id must be 1-64 characters of letters, digits, _ . : -",
                          code="invalid_parameter", field="client_id")
    scope = request.query.get("scope", "own")
    if scope not in SCOPES:
        raise bad_request(f"{here}: scope must be one of {', '.join(SCOPES)}", code="invalid_parameter",
                          field="scope")
    if len(server.hub) >= server.limits.max_ws_clients:
        raise ApiError(429, "too_many_clients",
                       f"{here}: {server.limits.max_ws_clients} WebSocket clients are connected (the limit)",
                       headers={"Retry-After": "5"})
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=server.limits.max_ws_message)
    await ws.prepare(request)
    user = user_of(request)
    transport = request.transport
    client = server.hub.attach(ws, client_id, scope, user=user.name, admin=user.admin,
                               abort=transport.abort if transport is not None else None)
    server.hub.send(client, {"type": "hello", "client_id": client_id, "scope": scope,
                             "queue": server.queue.counts()})
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                reply = _command(client, message.data, server.limits.max_ping_data)
                if reply is not None:
                    server.hub.send(client, reply)
            elif message.type == WSMsgType.BINARY:
                server.hub.send(client, {"type": "error", "message": "binary messages are not understood; "
                                                                     "send JSON text"})
    finally:
        await server.hub.detach(client)
    return ws


def _command(client, text: str, max_ping_data: int) -> dict | None:
    try:
        command = json.loads(text)
    except (ValueError, RecursionError):
        return {"type": "error", "message": "a WebSocket message must be a JSON object"}
    if not isinstance(command, dict):
        return {"type": "error", "message": "a WebSocket message must be a JSON object"}
    kind = command.get("type")
    if kind == "ping":
        data = command.get("data")
        if isinstance(data, str) and len(data) > max_ping_data:
            return {"type": "error", "message": f"ping: 'data' is longer than {max_ping_data} characters; "
                                                f"it is not echoed"}
        if isinstance(data, int) and not isinstance(data, bool) and abs(data) >= 2**63:
            return {"type": "error", "message": "ping: 'data' is out of range; use a smaller number"}
        return {"type": "pong", "data": data if isinstance(data, str | int) else None}
    if kind == "subscribe":
        scope = command.get("scope")
        if scope not in SCOPES:
            return {"type": "error", "message": f"subscribe: scope must be one of {', '.join(SCOPES)}"}
        client.scope = scope
        return {"type": "subscribed", "scope": scope}
    return {"type": "error", "message": f"unknown message type {str(kind)[:40]!r} (known: ping, subscribe)"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/ws", websocket)
