"""The SDK's MCP client on both transports a server offers: its stdio, and `/mcp` over Streamable HTTP.

`TRANSPORTS` names them for `pytest.mark.parametrize`; `connect` opens a session on the one named,
with callbacks for what the server sends by itself (notifications, log messages).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.extension import NotificationBinding
from mcp.client.session import ClientSession, LoggingFnT, MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from .conftest import server_params

TRANSPORTS = ("stdio", "http")

# The SDK's Streamable HTTP client leaves httpx2's stream generators to the garbage collector
# when a session closes; those warnings are the client's, not the server's.
SDK_CLIENT_GENERATORS = (
    "ignore:Exception ignored in. <async_generator object "
    "(EventSource.__aiter__|\\w*ByteStream.__aiter__|Response.aiter_bytes|Response.aiter_text) "
    ":pytest.PytestUnraisableExceptionWarning"
)


@asynccontextmanager
async def connect(
    transport: str,
    home: Path,
    url: str,
    *args: str,
    incoming: MessageHandlerFnT | None = None,
    logged: LoggingFnT | None = None,
    bindings: Sequence[NotificationBinding[Any]] = (),
    with_http: bool = False,
    **env: str,
) -> AsyncIterator[ClientSession]:
    """An initialized client session: on stdio, with a server process of its own on `home` (MCP only,
    started with `args`; with `with_http`, serving HTTP too); over HTTP, on the `/mcp` of the server at `url`."""
    if transport == "stdio":
        params = server_params(home, *(() if with_http else ("--mcp-only",)), *args, **env)
        async with (
            stdio_client(params, errlog=sys.stderr) as (read, write),
            ClientSession(
                read, write, message_handler=incoming, logging_callback=logged, notification_bindings=bindings
            ) as session,
        ):
            await session.initialize()
            yield session
    else:
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(60, read=300)) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(
                read, write, message_handler=incoming, logging_callback=logged, notification_bindings=bindings
            ) as session,
        ):
            await session.initialize()
            yield session
