"""The SDK's own MCP server run in-process, for the tests that compare what we send with its bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import trio
from mcp.server.lowlevel.server import Server
from mcp.shared.message import SessionMessage

Exchange = Callable[[dict[str, Any]], Awaitable[bytes | None]]


@asynccontextmanager
async def exchanging_with(server: Server[Any]) -> AsyncIterator[Exchange]:
    """`server` running; each exchange sends it a message and returns its answer as the SDK's stdio transport
    writes it, without the newline (None for a notification)."""
    inbound_send, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    outbound, outbound_receive = anyio.create_memory_object_stream[SessionMessage](16)

    async def exchange(message: dict[str, Any]) -> bytes | None:
        await inbound_send.send(SessionMessage(types.jsonrpc_message_adapter.validate_python(message)))
        if "id" not in message:
            return None
        answer = await outbound_receive.receive()
        return answer.message.model_dump_json(by_alias=True, exclude_unset=True).encode()

    async with outbound_receive, trio.open_nursery() as nursery:
        nursery.start_soon(server.run, inbound, outbound, server.create_initialization_options())
        yield exchange
        await inbound_send.aclose()
