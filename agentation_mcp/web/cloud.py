"""The cloud proxy: with an API key, the toolbar's routes are served by the hosted API.

In cloud mode the HTTP server answers `OPTIONS`, `/health`, `/status` and
`/mcp` itself and hands every other request to `proxy`, which forwards it to
`<base><path><query>` with the same method, the incoming Content-Type, the
body (except for GET and HEAD) and `x-api-key: <key>`, then relays the answer:

* an event stream is passed through chunk by chunk as it arrives;
* anything else is relayed whole: status, Content-Type and body;
* if the cloud cannot be reached, the client gets 502
  `{"error":"Cloud proxy error: <what went wrong>"}`, never a traceback.

`CloudProxy` is the ASGI application the HTTP API mounts (as it mounts
`/mcp`); `proxy` is the forwarding of one request it is built on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import httpx2
import trio

from ..models import to_json
from .asgi import Receive, Scope, Send, cancel_after, disconnected

log = logging.getLogger(__name__)


Headers = Sequence[tuple[bytes, bytes]]

# No read timeout: an event stream may stay quiet for as long as it likes.
_TIMEOUT = httpx2.Timeout(None, connect=10.0)
_EVENT_STREAM = b"text/event-stream"


def _short(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _content_type(response: httpx2.Response) -> bytes | None:
    for name, value in response.headers.raw:
        if name.lower() == b"content-type":
            return value
    return None


async def _start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})


async def _pass_through(response: httpx2.Response, send: Send, receive: Receive | None) -> None:
    """Copy an event stream to the client as it arrives, until either side ends it."""
    async with trio.open_nursery() as nursery:
        if receive is not None:
            nursery.start_soon(cancel_after, partial(disconnected, receive), nursery.cancel_scope)
        try:
            async for chunk in response.aiter_bytes():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx2.HTTPError as exc:
            # Too late for a 502: the status went out with the first chunk.
            log.warning("[Cloud Proxy] Event stream ended: %s", _short(exc))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        nursery.cancel_scope.cancel()


async def proxy(
    client: httpx2.AsyncClient,
    base_url: str,
    api_key: str,
    method: str,
    path_and_query: str,
    content_type: str | None,
    body: bytes,
    send: Send,
    headers: Headers = (),
    *,
    receive: Receive | None = None,
) -> None:
    """Forward one request to `base_url + path_and_query` and answer it through `send`.

    `path_and_query` is the request target as received (`/sessions?x=1`);
    `body` is the whole request body; `headers` are added to every response
    (CORS). With `receive`, a client that hangs up stops an event stream.
    """
    request_headers = {"x-api-key": api_key}
    if content_type:
        request_headers["content-type"] = content_type
    content = None if method.upper() in ("GET", "HEAD") else body
    started = False
    try:
        async with client.stream(
            method, base_url.rstrip("/") + path_and_query, content=content, headers=request_headers, timeout=_TIMEOUT
        ) as response:
            upstream_type = _content_type(response)
            if upstream_type is not None and _EVENT_STREAM in upstream_type.lower():
                stream_headers = [(b"content-type", _EVENT_STREAM), (b"cache-control", b"no-cache"), *headers]
                started = True
                await _start(send, response.status_code, stream_headers)
                await _pass_through(response, send, receive)
                return
            data = await response.aread()
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        log.warning("[Cloud Proxy] Error: %s", _short(exc))
        if started:
            return
        error = {"error": f"Cloud proxy error: {_short(exc)}"}
        await _start(send, 502, [(b"content-type", b"application/json"), *headers])
        await send({"type": "http.response.body", "body": to_json(error).encode()})
        return
    await _start(send, response.status_code, [(b"content-type", upstream_type or b"application/json"), *headers])
    await send({"type": "http.response.body", "body": data})


class CloudProxy:
    """The cloud proxy as an ASGI application: each request it gets is forwarded with `proxy`."""

    def __init__(self, client: httpx2.AsyncClient, base_url: str, api_key: str) -> None:
        self.client = client
        self.base_url = base_url
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                break
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        target = bytes(scope["raw_path"]).decode("latin-1") + (f"?{query}" if query else "")
        content_type = next(
            (bytes(v).decode("latin-1") for n, v in scope.get("headers", []) if bytes(n).lower() == b"content-type"),
            None,
        )
        await proxy(
            self.client,
            self.base_url,
            self.api_key,
            scope["method"],
            target,
            content_type,
            b"".join(chunks),
            send,
            receive=receive,
        )
