"""The HTTP side of the server: the toolbar's API, its SSE streams, `/mcp`, webhooks and the cloud proxy, on one port.

Imported only once MCP over stdio is already serving (and only when HTTP is
on), so the HTTP stack never delays the answer to `initialize`.
"""

from __future__ import annotations

import httpx2
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from .access import AccessPolicy
from .asgi import Mount
from .cloud import CloudProxy
from .config import Settings
from .http_api import HttpApi, HttpOptions
from .http_server import serve_http
from .http_wire import HttpLimits
from .hub import Hub
from .mcp_tools import DEFAULT_MAX_ARGUMENTS, build_mcp_server
from .reads import Reader
from .webhooks import Webhooks
from .writer import Writer


def build_http_mcp(
    writer: Writer,
    hub: Hub,
    reader: Reader,
    *,
    idle_timeout: float = 30 * 60,
    max_arguments: int = DEFAULT_MAX_ARGUMENTS,
) -> tuple[StreamableHTTPASGIApp, StreamableHTTPSessionManager]:
    """The `/mcp` endpoint: the same tools over Streamable HTTP.

    Returns the ASGI app and its session manager, whose `run()` must be
    entered in the server's nursery. Host and Origin are checked by the HTTP
    API before a request gets here; sessions idle for `idle_timeout` seconds
    are closed.
    """
    manager = StreamableHTTPSessionManager(
        app=build_mcp_server(writer, hub, reader, max_arguments=max_arguments),
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=idle_timeout,
    )
    return StreamableHTTPASGIApp(manager), manager


async def run_http(settings: Settings, writer: Writer, hub: Hub, reader: Reader) -> None:
    """The toolbar's HTTP API, SSE and `/mcp` on one port (or waiting for it)."""
    policy = AccessPolicy(
        bind_host=settings.bind_host,
        any_origin=settings.cors_any,
        extra_origins=settings.cors_origins,
        access_key=settings.access_key,
    )
    mcp_app, manager = build_http_mcp(
        writer, hub, reader, idle_timeout=settings.mcp_idle_seconds, max_arguments=settings.max_body_bytes
    )
    suffix = (" (cloud mode)" if settings.api_key else "") + (" (remote access enabled)" if policy.remote else "")
    async with (
        Webhooks.open(settings.webhooks) as webhooks,
        httpx2.AsyncClient(timeout=httpx2.Timeout(None, connect=10)) as cloud_client,
        manager.run(),
    ):
        options = HttpOptions(
            policy=policy,
            max_body=settings.max_body_bytes,
            mcp=Mount(mcp_app, json_rpc=True),
            webhook_count=len(webhooks.urls),
            fire_webhooks=webhooks.fire,
        )
        if settings.api_key is not None:
            options.cloud = Mount(CloudProxy(cloud_client, settings.cloud_url, settings.api_key))
        api = HttpApi(writer, hub, reader, options)
        limits = HttpLimits(max_body=settings.max_body_bytes)
        await serve_http(api, settings.bind_host, settings.port, limits=limits, suffix=suffix)
