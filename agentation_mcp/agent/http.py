"""The `/mcp` endpoint: the same MCP server as on stdio, over Streamable HTTP, as an ASGI app.

Built by the composition root (`service`) and handed to the web side, which
mounts it without knowing it is MCP.
"""

from __future__ import annotations

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from ..store.heartbeat import Heartbeat
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from .features import Features
from .presence import HttpPresence
from .tools import DEFAULT_MAX_ARGUMENTS, build_mcp_server


def build_http_mcp(
    writer: Writer,
    hub: Hub,
    reader: Reader,
    *,
    idle_timeout: float = 30 * 60,
    max_arguments: int = DEFAULT_MAX_ARGUMENTS,
    features: Features | None = None,
    presence: Heartbeat | None = None,
) -> tuple[StreamableHTTPASGIApp, StreamableHTTPSessionManager]:
    """The ASGI app and its session manager, whose `run()` must be entered while the app serves.

    Host and Origin are checked by the HTTP API before a request gets here;
    sessions idle for `idle_timeout` seconds are closed. With `presence`, each
    session is recorded as an agent of this process.
    """
    server = build_mcp_server(writer, hub, reader, max_arguments=max_arguments, features=features)
    if presence is not None:
        server.middleware.append(HttpPresence(presence).middleware)
    manager = StreamableHTTPSessionManager(
        app=server,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=idle_timeout,
    )
    return StreamableHTTPASGIApp(manager), manager
