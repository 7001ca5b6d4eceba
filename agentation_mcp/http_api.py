"""The HTTP API the toolbar and other tools use, as one ASGI application.

Routes, status codes, JSON field names and error texts follow the reference
(spec section 2.4), with its weak spots fixed: bodies are checked and errors
name the field, no internal error text reaches a client, bodies over the
limit get 413 before they are read whole, `HEAD /health` answers, and every
write goes through the writer, so a 2xx means committed. SSE streams follow
the hub; `/mcp` is handed to the MCP SDK's Streamable HTTP transport.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from . import sse
from .access import AccessPolicy
from .commands import (
    AddThreadMessage,
    CreateAnnotation,
    CreateSession,
    DeleteAnnotation,
    NewThreadMessage,
    RequestAction,
    UpdateAnnotation,
)
from .errors import AgentationError, AnnotationNotFound, InvalidInput, SessionNotFound, StoreBusy, StoreClosed
from .hub import Hub
from .models import ANNOTATION_CREATED, Event, JsonObject, now_iso, parse_js_float, to_json
from .store import StoreReader
from .writer import Writer

log = logging.getLogger("agentation_mcp")

Scope = Mapping[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
CloudProxy = Callable[[str, str, str | None, bytes, Send, Headers, Receive], Awaitable[None]]
"""`proxy(method, path_and_query, content_type, body, send, cors_headers, receive)`."""

DEFAULT_MAX_BODY = 1024 * 1024
_FRAME_CACHE = 512


class _Reply(Exception):
    """Answer the request now with this status and JSON body."""

    def __init__(self, status: int, body: JsonObject) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": message})


def url_host(url: str | None) -> str | None:
    """The `host[:port]` of a page URL, as JavaScript's `URL.host` gives it."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in ("http", "https", "ws", "wss", "ftp"):
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}[parts.scheme]
    return host if port in (None, default) else f"{host}:{port}"


@dataclass(eq=False, slots=True)
class Listener:
    """One open SSE stream, for `/status` and the action's delivery count."""

    agent: bool
    session_id: str | None
    domain: str | None


@dataclass(slots=True)
class HttpOptions:
    policy: AccessPolicy
    max_body: int = DEFAULT_MAX_BODY
    cloud: bool = False
    ping_interval: float = sse.PING_INTERVAL
    webhook_count: int = 0
    fire_webhooks: Callable[[str, JsonObject], int] | None = None
    cloud_proxy: CloudProxy | None = None
    mcp_app: Callable[..., Awaitable[None]] | None = None
    listeners: set[Listener] = field(default_factory=set)


class HttpApi:
    """The ASGI application; one per server process."""

    def __init__(self, writer: Writer, hub: Hub, reader: StoreReader, options: HttpOptions) -> None:
        self.writer = writer
        self.hub = hub
        self.reader = reader
        self.options = options
        self.listeners = options.listeners
        self._hosts: dict[str, str | None] = {}
        self._frames: OrderedDict[int, bytes] = OrderedDict()

    # --- the pipeline -------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = _header_map(scope)
        origin = headers.get("origin")
        policy = self.options.policy
        if not policy.host_allowed(headers.get("host")):
            await _send_json(send, 403, {"error": "Host not allowed"}, [])
            return
        if not policy.origin_allowed(origin):
            await _send_json(send, 403, {"error": "Origin not allowed"}, [(b"vary", b"Origin")])
            return
        cors = policy.cors_headers(origin)
        method = scope["method"]
        path = scope.get("raw_path", scope["path"].encode()).split(b"?", 1)[0].decode("latin-1")
        if method == "OPTIONS":
            await _send(send, 204, b"", [*cors, (b"access-control-max-age", b"86400")])
            return
        if path != "/health" and not policy.key_accepted(headers.get("x-api-key")):
            await _send_json(send, 401, {"error": "A valid x-api-key header is required"}, cors)
            return
        if path != "/health":
            log.info("[HTTP] %s %s", method, path)
        try:
            await self._route(scope, receive, send, method, path, headers, cors)
        except _Reply as reply:
            await _send_json(send, reply.status, reply.body, cors)
        except _ClientGone:
            pass

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str, headers: dict[str, str], cors: Headers
    ) -> None:
        if path == "/health" and method in ("GET", "HEAD"):
            body = to_json({"status": "ok", "mode": "cloud" if self.options.cloud else "local"}).encode()
            await _send(send, 200, b"" if method == "HEAD" else body, [*cors, _JSON], length=len(body))
            return
        if path == "/status" and method == "GET":
            await _send_json(send, 200, self.status(), cors)
            return
        if path == "/mcp" and self.options.mcp_app is not None:
            await self._mcp(scope, receive, send, method, headers, cors)
            return
        if self.options.cloud and self.options.cloud_proxy is not None:
            query = scope.get("query_string", b"").decode("latin-1")
            body = await self._read_body(receive, headers) if method not in ("GET", "HEAD") else b""
            target = path + (f"?{query}" if query else "")
            await self.options.cloud_proxy(method, target, headers.get("content-type"), body, send, cors, receive)
            return
        parts = path.split("/")[1:]
        if "" in parts:
            raise _error(404, "Not found")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            if parts[0] == "events" and len(parts) == 1 and method == "GET":
                await self._events(send, receive, headers, cors, None, query)
                return
            if parts[0] == "sessions" and len(parts) == 3 and parts[2] == "events" and method == "GET":
                if not self.reader.session_exists(parts[1]):
                    raise _error(404, "Session not found")
                await self._events(send, receive, headers, cors, parts[1], query)
                return
            status, result = await self._json_route(method, parts, receive, headers)
        except AgentationError as exc:
            raise _domain_error(exc) from None
        except (_Reply, _ClientGone):
            raise
        except Exception:
            log.exception("[HTTP] %s %s failed", method, path)
            raise _error(500, "Internal server error") from None
        await _send_json(send, status, result, cors)

    async def _json_route(
        self, method: str, parts: list[str], receive: Receive, headers: dict[str, str]
    ) -> tuple[int, Any]:
        reader, writer = self.reader, self.writer
        match method, parts:
            case "GET", ["sessions"]:
                return 200, reader.list_sessions()
            case "POST", ["sessions"]:
                body = await self._json_body(receive, headers)
                return 201, await writer.submit(CreateSession.from_body(body))
            case "GET", ["sessions", session_id]:
                return 200, reader.get_session(session_id)
            case "GET", ["sessions", session_id, "pending"]:
                pending = reader.pending_annotations(session_id)
                return 200, {"count": len(pending), "annotations": pending}
            case "GET", ["pending"]:
                pending = reader.pending_annotations(None)
                return 200, {"count": len(pending), "annotations": pending}
            case "POST", ["sessions", session_id, "annotations"]:
                body = await self._json_body(receive, headers)
                return 201, await writer.submit(CreateAnnotation.from_body(session_id, body))
            case "POST", ["sessions", session_id, "action"]:
                body = await self._json_body(receive, headers)
                if not reader.session_exists(session_id):
                    raise SessionNotFound(session_id)
                return 200, await self._request_action(RequestAction.from_body(session_id, body))
            case "GET", ["annotations", annotation_id]:
                return 200, reader.get_annotation(annotation_id)
            case "PATCH", ["annotations", annotation_id]:
                body = await self._json_body(receive, headers)
                return 200, await writer.submit(UpdateAnnotation.from_body(annotation_id, body))
            case "DELETE", ["annotations", annotation_id]:
                return 200, await writer.submit(DeleteAnnotation(annotation_id))
            case "POST", ["annotations", annotation_id, "thread"]:
                body = await self._json_body(receive, headers)
                message = NewThreadMessage.from_body(body)
                return 201, await writer.submit(AddThreadMessage(annotation_id, message))
        raise _error(404, "Not found")

    async def _request_action(self, command: RequestAction) -> JsonObject:
        result = await self.writer.submit(command)
        listeners = sum(1 for listener in tuple(self.listeners) if self._receives(listener, command.session_id))
        webhooks = 0
        if self.options.fire_webhooks is not None:
            webhooks = self.options.fire_webhooks(command.session_id, result["payload"])
        return {
            "success": True,
            "annotationCount": result["annotationCount"],
            "delivered": {"sseListeners": listeners, "webhooks": webhooks, "total": listeners + webhooks},
        }

    def status(self) -> JsonObject:
        listeners = tuple(self.listeners)
        return {
            "mode": "cloud" if self.options.cloud else "local",
            "webhooksConfigured": self.options.webhook_count > 0,
            "webhookCount": self.options.webhook_count,
            "activeListeners": len(listeners),
            "agentListeners": sum(1 for listener in listeners if listener.agent),
        }

    # --- bodies ---------------------------------------------------------------

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.options.max_body
        too_large = _error(413, f"Request body too large: the limit is {limit} bytes.")
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _json_body(self, receive: Receive, headers: dict[str, str]) -> Any:
        raw = await self._read_body(receive, headers)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_reject_constant, parse_float=parse_js_float)
        except (ValueError, UnicodeDecodeError):
            raise _error(400, "Invalid JSON") from None

    # --- server-sent events -------------------------------------------------------

    def _host_of(self, session_id: str) -> str | None:
        if session_id not in self._hosts:
            self._hosts[session_id] = url_host(self.reader.session_url(session_id))
        return self._hosts[session_id]

    def _frame(self, event: Event) -> bytes:
        """The event's SSE frame, encoded once however many listeners send it."""
        frame = self._frames.get(event.sequence)
        if frame is None:
            frame = self._frames[event.sequence] = sse.event_frame(event)
            if len(self._frames) > _FRAME_CACHE:
                self._frames.popitem(last=False)
        return frame

    def _receives(self, listener: Listener, session_id: str) -> bool:
        """Whether an agent listener gets this session's events."""
        if not listener.agent:
            return False
        if listener.session_id is not None:
            return listener.session_id == session_id
        return listener.domain is None or listener.domain == self._host_of(session_id)

    def _wanted(self, listener: Listener, event: Event) -> bool:
        if listener.session_id is not None:
            return event.session_id == listener.session_id
        return listener.domain is None or listener.domain == self._host_of(event.session_id)

    async def _events(
        self,
        send: Send,
        receive: Receive,
        headers: dict[str, str],
        cors: Headers,
        session_id: str | None,
        query: dict[str, list[str]],
    ) -> None:
        agent = query.get("agent", [""])[0] == "true"
        domain = query.get("domain", [None])[0] if session_id is None else None
        listener = Listener(agent=agent, session_id=session_id, domain=domain)
        resume = sse.parse_last_event_id(headers.get("last-event-id"))
        cursor = self.reader.last_sequence() if resume is None else resume
        lock = trio.Lock()

        async def write(frame: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": frame, "more_body": True})

        self.listeners.add(listener)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        *cors,
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        (b"connection", b"keep-alive"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await write(sse.connected(domain))
            if agent and session_id is None:
                await self._initial_sync(write, domain)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                nursery.start_soon(self._keepalive, write)
                async with aclosing(self.hub.follow(cursor)) as events:
                    async for event in events:
                        if self._wanted(listener, event):
                            await write(self._frame(event))
        finally:
            self.listeners.discard(listener)

    async def _initial_sync(self, write: Callable[[bytes], Awaitable[None]], domain: str | None) -> None:
        count = 0
        for annotation in self.reader.pending_annotations(None):
            if domain is not None and self._host_of(annotation["sessionId"]) != domain:
                continue
            data = {
                "type": ANNOTATION_CREATED,
                "sessionId": annotation["sessionId"],
                "timestamp": annotation["createdAt"],
                "sequence": 0,
                "payload": annotation,
            }
            await write(sse.sync_frame(data, ANNOTATION_CREATED, 0))
            count += 1
        complete = {"domain": domain if domain is not None else "all", "count": count, "timestamp": now_iso()}
        await write(sse.sync_frame(complete, "sync.complete", None))

    async def _keepalive(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        while True:
            await trio.sleep(self.options.ping_interval)
            await write(sse.PING)

    # --- /mcp ---------------------------------------------------------------------

    async def _mcp(
        self, scope: Scope, receive: Receive, send: Send, method: str, headers: dict[str, str], cors: Headers
    ) -> None:
        assert self.options.mcp_app is not None
        if method == "POST":
            # Read the body here so that invalid JSON gets a JSON-RPC parse error.
            body = await self._read_body(receive, headers)
            try:
                json.loads(body)
            except (ValueError, UnicodeDecodeError):
                error = {
                    "jsonrpc": "2.0",
                    "error": {"code": -32700, "message": "Parse error: invalid JSON"},
                    "id": None,
                }
                await _send_json(send, 400, error, cors)
                return
            receive = _replay(body, receive)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.options.mcp_app(scope, receive, send_with_cors)


_JSON = (b"content-type", b"application/json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header_map(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _domain_error(exc: AgentationError) -> _Reply:
    if isinstance(exc, SessionNotFound):
        return _error(404, "Session not found")
    if isinstance(exc, AnnotationNotFound):
        return _error(404, "Annotation not found")
    if isinstance(exc, InvalidInput):
        return _error(400, str(exc))
    if isinstance(exc, StoreBusy | StoreClosed):
        return _error(503, str(exc))
    return _error(500, str(exc))


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _send(send: Send, status: int, body: bytes, headers: Headers, *, length: int | None = None) -> None:
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, body: Any, headers: Headers) -> None:
    await _send(send, status, to_json(body).encode(), [*headers, _JSON])
