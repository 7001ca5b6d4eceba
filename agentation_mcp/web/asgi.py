"""ASGI, for the two mounted applications: `/mcp` (the MCP SDK's) and the cloud proxy.

The toolbar's routes are plain functions on `Request`; only what comes as an
ASGI application goes through `run_asgi`, which gives it one request as an
HTTP scope and writes what it sends back: a response with a Content-Length
whole, anything else as a chunked stream. Once the body has been read,
`receive` waits for the client to disconnect.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import trio

from .wire import Headers, Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def cancel_after(done: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    """Cancel `scope` once `done` returns: a stream's writing stops when its client has gone."""
    await done()
    scope.cancel()


async def disconnected(receive: Receive) -> None:
    """Return once an ASGI `receive` says the client has disconnected."""
    while (await receive())["type"] != "http.disconnect":
        pass


def http_scope(request: Request) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version,
        "method": request.method,
        "scheme": "http",
        "path": unquote(request.path),
        "raw_path": request.path.encode("latin-1"),
        "query_string": request.query.encode("latin-1"),
        "root_path": "",
        "headers": request.raw_headers,
        "client": request.client,
        "server": request.server,
        "state": {},
    }


async def run_asgi(
    app: AsgiApp, request: Request, *, body: bytes | None = None, extra_headers: Headers | None = None
) -> None:
    """Serve `request` with `app`; `body` is the request body when it was already read.

    `extra_headers` are added to the response (CORS).
    """
    chunks = None if body is not None else request.body_chunks()
    body_done = False
    status = 200
    headers: Headers = []
    whole = False

    async def receive() -> Message:
        nonlocal body_done
        if not body_done:
            if chunks is None:
                body_done = True
                return {"type": "http.request", "body": body, "more_body": False}
            piece = await anext(chunks, None)
            if piece is not None:
                return {"type": "http.request", "body": piece, "more_body": True}
            body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await request.wait_disconnect()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers, whole
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
            headers += extra_headers or []
            whole = any(name == b"content-length" for name, _ in headers)
            if whole:
                headers = [(n, v) for n, v in headers if n != b"content-length"]
        elif kind == "http.response.body":
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if whole and not request.started and not more:
                await request.respond(status, headers, data)
                return
            if not request.started:
                await request.start_stream(status, headers)
            await request.send(data)
            if not more:
                await request.end_stream()

    await app(http_scope(request), receive, send)


_PARSE_ERROR = b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error: invalid JSON"},"id":null}'


class Mount:
    """An ASGI application serving the requests routed to it: `/mcp`, or every route in cloud mode.

    The body is read first, so the body limit holds for mounted applications
    too; with `json_rpc`, a POST body that is not JSON gets a JSON-RPC parse
    error (400) without reaching the application.
    """

    def __init__(self, app: AsgiApp, *, json_rpc: bool = False) -> None:
        self.app = app
        self.json_rpc = json_rpc

    async def serve(self, request: Request, cors: Headers) -> None:
        body = None
        if request.method not in ("GET", "HEAD"):
            body = await request.body()
            if self.json_rpc and request.method == "POST":
                try:
                    json.loads(body)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    await request.respond(400, [*cors, (b"content-type", b"application/json")], _PARSE_ERROR)
                    return
        await run_asgi(self.app, request, body=body, extra_headers=cors)
