"""The HTTP API of one server process: every request passes the gate, then goes to its route.

    gate (Host, Origin, preflight, access key)
    ├── /health, /status                       answered here
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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..errors import AgentationError
from ..models import json_bytes
from ..store import reads
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from . import sse
from .access import AccessPolicy
from .asgi import Mount
from .gate import Gate, refuse
from .page import Page
from .routes import NOT_FOUND, FireWebhooks, HttpError, JsonRoutes, domain_error
from .streams import EventStreams, Listeners
from .wire import BodyTooLarge, Headers, Request, WireError

log = logging.getLogger("agentation_mcp")

DEFAULT_MAX_BODY = 1024 * 1024
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


class HttpApi:
    """The request handler; one per server process."""

    def __init__(self, writer: Writer, hub: Hub, reader: Reader, options: HttpOptions) -> None:
        self.options = options
        self.reader = reader
        self.gate = Gate(options.policy)
        self.listeners = Listeners(reader)
        self.streams = EventStreams(hub, reader, self.listeners, options.ping_interval)
        self.routes = JsonRoutes(writer, reader, self.listeners, options.fire_webhooks)
        self.page = Page()
        self._mode = "cloud" if options.cloud is not None else "local"
        self._health = json_bytes({"status": "ok", "mode": self._mode})

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
            await _respond_json(request, 200, self.status(), cors)
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
                await self.streams.serve(request, cors, None, _query(request))
                return
            if parts[0] == "sessions" and len(parts) == 3 and parts[2] == "events" and method == "GET":
                if not reads.session_exists(self.reader, parts[1]):
                    raise NOT_FOUND_SESSION
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
