"""The MCP SDK's server for the nine tools and the features besides them, for stdio and `/mcp` alike.

Loaded only when a message needs the SDK (on stdio, see `stdio`) or the HTTP
side starts: the tools' specs, the handshake's capabilities and the tools'
behaviour live in modules that do not import the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server

from .. import __version__
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from . import channel
from .features import Features, instructions
from .peers import LEVELS, Peers
from .progress import reporting_progress
from .prompts import Prompts
from .resources import Resources
from .specs import SPECS
from .tools import DEFAULT_MAX_ARGUMENTS, Handler, ToolOutcome, build_handlers, call_tool


def tool_result(outcome: ToolOutcome) -> types.CallToolResult:
    """The SDK's model of a tool call's outcome."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.text)],
        structured_content=outcome.structured_content,
        is_error=outcome.is_error,
    )


def build_mcp_server(
    writer: Writer,
    hub: Hub,
    reader: Reader,
    *,
    max_arguments: int = DEFAULT_MAX_ARGUMENTS,
    features: Features | None = None,
) -> Server[Any]:
    """A fresh MCP server with the nine tools on the local store; one per stdio or HTTP session is fine."""
    return mcp_server_for(build_handlers(writer, hub, reader), max_arguments=max_arguments, features=features)


def mcp_server_for(
    handlers: Mapping[str, Handler], *, max_arguments: int = DEFAULT_MAX_ARGUMENTS, features: Features | None = None
) -> Server[Any]:
    """A fresh MCP server with the nine tools carried out by `handlers`, and `features` besides them."""
    tools = [types.Tool.model_validate(spec.wire(), by_name=False) for spec in SPECS]

    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        async with reporting_progress(ctx, params.name, params.arguments):
            outcome = await call_tool(handlers, params.name, params.arguments, max_bytes=max_arguments)
        return tool_result(outcome)

    server = Server("agentation", version=__version__, on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    # The SDK wraps every request in an OpenTelemetry span by default; with no exporter installed that is
    # a fifth of a tool call's CPU spent on nothing. The SDK documents emptying this list as the opt-out.
    server.middleware.clear()
    if features is not None:
        install(server, features)
    return server


def _set_level_handler(peers: Peers) -> Any:
    """The `logging/setLevel` handler: remembers the client's level."""

    async def on_set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        peers.peer(ctx).level = LEVELS.index(params.level)
        return types.EmptyResult()

    return on_set_level


def install(server: Server[Any], features: Features) -> None:
    """Register the features' handlers on `server` and make its `initialize` answer declare them."""
    prompts = Prompts(features.backend)
    found = Resources(features.backend, features.peers)
    server.add_request_handler("prompts/list", types.PaginatedRequestParams, prompts.list)
    server.add_request_handler("prompts/get", types.GetPromptRequestParams, prompts.get)
    server.add_request_handler("completion/complete", types.CompleteRequestParams, prompts.complete)
    server.add_request_handler("resources/list", types.PaginatedRequestParams, found.list)
    server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, found.templates)
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, found.read)
    server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, found.subscribe)
    server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, found.unsubscribe)
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level_handler(features.peers))
    server.middleware.append(features.peers.middleware)
    notifications = NotificationOptions(resources_changed=True)
    experimental: dict[str, dict[str, Any]] | None = {channel.CAPABILITY: {}} if features.with_channel else None
    told = instructions(with_channel=features.with_channel)
    if told is not None:
        server.instructions = told
    create = server.create_initialization_options

    def with_ours(
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> Any:
        return create(notification_options or notifications, experimental_capabilities or experimental, extensions)

    # The SDK reads the initialize answer from this method (the HTTP session manager calls it with no
    # arguments), so ours become its defaults.
    server.create_initialization_options = with_ours  # type: ignore[method-assign]
