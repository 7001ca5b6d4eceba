"""The HTTP side of the server: the toolbar's API, its SSE streams, `/mcp`, webhooks and the cloud proxy, on one port.

Imported only once MCP over stdio is already serving (and only when HTTP is
on), so the HTTP stack never delays the answer to `initialize`. The `/mcp` app
comes from the caller, ready to mount.
"""

from __future__ import annotations

import httpx2

from ..config import Settings
from ..store.heartbeat import Heartbeat
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from .access import AccessPolicy
from .api import HttpApi, HttpOptions
from .asgi import AsgiApp, Mount
from .cloud import CloudProxy
from .server import serve_http
from .webhooks import Webhooks
from .wire import HttpLimits


async def run_http(
    settings: Settings,
    writer: Writer,
    hub: Hub,
    reader: Reader,
    mcp_app: AsgiApp,
    presence: Heartbeat | None = None,
    store: str = "",
) -> None:
    """The toolbar's HTTP API, SSE and `mcp_app` at `/mcp` on one port (or waiting for it); `presence`
    learns of its pages, refused origins and whether it owns the port."""
    policy = AccessPolicy(
        bind_host=settings.bind_host,
        any_origin=settings.cors_any,
        extra_origins=settings.cors_origins,
        access_key=settings.access_key,
    )
    suffix = (" (cloud mode)" if settings.api_key else "") + (" (remote access enabled)" if policy.remote else "")
    async with (
        Webhooks.open(settings.webhooks) as webhooks,
        httpx2.AsyncClient(timeout=httpx2.Timeout(None, connect=10)) as cloud_client,
    ):
        options = HttpOptions(
            policy=policy,
            max_body=settings.max_body_bytes,
            mcp=Mount(mcp_app, json_rpc=True),
            webhook_count=len(webhooks.urls),
            fire_webhooks=webhooks.fire,
            presence=presence,
            store=store,
        )
        if settings.api_key is not None:
            options.cloud = Mount(CloudProxy(cloud_client, settings.cloud_url, settings.api_key))
        api = HttpApi(writer, hub, reader, options)
        limits = HttpLimits(max_body=settings.max_body_bytes)
        owner = presence.set_owner if presence is not None else None
        await serve_http(api, settings.bind_host, settings.port, limits=limits, suffix=suffix, owner=owner)
