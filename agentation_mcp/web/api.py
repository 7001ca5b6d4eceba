"""The HTTP API of one server process: every request passes the gate, then goes to its route.

    gate (Host, Origin, preflight, access key)
    ├── /health                                answered here
    ├── /status, /status/events                the status document (`status`)
    ├── /mcp                                   the MCP SDK's Streamable HTTP app (a mount)
    ├── everything else, in cloud mode         the cloud proxy (a mount)
    ├── /, /page.js, /page.css                 the live page (web/page.py)
    ├── /events, /sessions/:id/events          SSE streams
    └── the toolbar's JSON routes

Errors become `{"error": ...}` with the reference's status codes; no
internal error text reaches a client, and a body over the limit gets 413
before it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..config import DEFAULT_MAX_BODY
from ..errors import AgentationError
from ..models import json_bytes
from ..store import reads
from ..store.heartbeat import Heartbeat
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from . import sse
from .access import AccessPolicy
from .asgi import Mount
from .gate import Gate, refuse
from .page import Page
from .routes import NOT_FOUND, FireWebhooks, HttpError, JsonRoutes, domain_error
from .status import StatusSource, StatusStreams
from .streams import EventStreams, Listeners
from .wire import BodyTooLarge, Headers, Request, WireError

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")


@dataclass(slots=True)
class HttpOptions:
    policy: AccessPolicy
    max_body: int = DEFAULT_MAX_BODY
    ping_interval: float = sse.PING_INTERVAL
    webhook_count: int = 0
    fire_webhooks: FireWebhooks | None = None
    mcp: Mount | None = None
    cloud: Mount | None = field(default=None)
    """With an API key: the cloud proxy, which serves every toolbar route."""
    presence: Heartbeat | None = None
    """This process's presence: told of toolbar pages, refused origins and the port; read by `/status`."""
    store: str = ""
    """Where the store is, as `/status` names it."""


class HttpApi:
    """The request handler; one per server process."""

    def __init__(self, writer: Writer, hub: Hub, reader: Reader, options: HttpOptions) -> None:
        self.options = options
        self.reader = reader
        presence = options.presence
        self.gate = Gate(options.policy, presence.origin_refused if presence is not None else None)
        self.listeners = Listeners(reader)
        self.streams = EventStreams(hub, reader, self.listeners, options.ping_interval)
        self.routes = JsonRoutes(writer, reader, self.listeners, options.fire_webhooks)
        self.page = Page()
        self._mode = "cloud" if options.cloud is not None else "local"
        self._health = json_bytes({"status": "ok", "mode": self._mode})
        self.status_source = StatusSource(reader, self.status, presence, options.store)
        self.status_streams = StatusStreams(self.status_source, options.ping_interval)
        if presence is not None:
            presence.detail = self.status

    async def __call__(self, request: Request) -> None:
        cors = await self.gate.admit(request)
        if cors is None:
            return
        method, path = request.method, request.path
        if path == "/health" and method in ("GET", "HEAD"):
            await request.respond(200, [*cors, _JSON], self._health)
            return
        log.info("[HTTP] %s %s", method, path)
        try:
            await self._route(request, method, path, cors)
        except HttpError as exc:
            await refuse(request, exc.status, exc.message, cors)
        except BodyTooLarge:
            await refuse(request, 413, f"Request body too large: the limit is {self.options.max_body} bytes.", cors)

    async def _route(self, request: Request, method: str, path: str, cors: Headers) -> None:
        if path == "/status" and method == "GET":
            await _respond_json(request, 200, self.status_source.document(), cors)
            return
        if path == "/status/events" and method == "GET":
            await self.status_streams.serve(request, cors)
            return
        if path == "/mcp" and self.options.mcp is not None:
            await self.options.mcp.serve(request, cors)
            return
        if self.options.cloud is not None:
            await self.options.cloud.serve(request, cors)
            return
        if self.page.serves(method, path):
            await self.page.serve(request, cors)
            return
        parts = path.split("/")[1:]
        if "" in parts:
            raise NOT_FOUND
        try:
            if parts[0] == "events" and len(parts) == 1 and method == "GET":
                with self._page(request, None):
                    await self.streams.serve(request, cors, None, _query(request))
                return
            if parts[0] == "sessions" and len(parts) == 3 and parts[2] == "events" and method == "GET":
                if not reads.session_exists(self.reader, parts[1]):
                    raise NOT_FOUND_SESSION
                with self._page(request, parts[1]):
                    await self.streams.serve(request, cors, parts[1], _query(request))
                return
            status, result = await self.routes.handle(request, parts)
        except AgentationError as exc:
            raise domain_error(exc) from None
        except (HttpError, WireError):
            raise
        except Exception:
            log.exception("[HTTP] %s %s failed", method, path)
            raise HttpError(500, "Internal server error") from None
        await _respond_json(request, status, result, cors)

    @contextmanager
    def _page(self, request: Request, session_id: str | None) -> Iterator[None]:
        """Record an event stream as a toolbar page while it is open.

        A page is a stream a browser opened from another origin (it sends
        `Origin`; the toolbar always runs on another port than the server)
        that is not an agent's (`?agent=true`). Its URL is its session's page
        URL, else the page's address as the browser gives it.
        """
        presence = self.options.presence
        origin = request.headers.get("origin")
        if presence is None or origin is None or _query(request).get("agent") == "true":
            yield
            return
        url = reads.session_url(self.reader, session_id) if session_id is not None else None
        page = presence.page_opened(session_id, url or request.headers.get("referer") or origin)
        try:
            yield
        finally:
            presence.page_closed(page)

    def status(self) -> dict[str, Any]:
        return {
            "mode": self._mode,
            "webhooksConfigured": self.options.webhook_count > 0,
            "webhookCount": self.options.webhook_count,
            "activeListeners": self.listeners.count,
            "agentListeners": self.listeners.agents,
        }


NOT_FOUND_SESSION = HttpError(404, "Session not found")


def _query(request: Request) -> dict[str, str]:
    """The query's parameters; the first of each name counts."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(request.query):
        params.setdefault(name, value)
    return params


async def _respond_json(request: Request, status: int, body: Any, cors: Headers) -> None:
    await request.respond(status, [*cors, _JSON], body if isinstance(body, bytes) else json_bytes(body))
