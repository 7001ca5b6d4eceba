"""MCP beyond the nine tools: prompts, resources, completion, logging, progress, the push channel,
installed on a server the tools module built, for stdio and `/mcp` alike.

`capabilities` is the one place that says what the server declares beyond tools; the handlers it
registers and the options it answers `initialize` with both come from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import mcp_types as types
import trio
from mcp.server.lowlevel.server import NotificationOptions, Server

from ..store.hub import Hub
from . import channel
from .log import ClientLog, set_level_handler
from .peers import Peers
from .prompts import Prompts
from .pushes import run_pushes
from .resources import Resources
from .tools import ToolBackend


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server declares besides tools, in the SDK's two halves."""

    notifications: NotificationOptions
    experimental: dict[str, dict[str, Any]] | None
    instructions: str | None


def capabilities(*, with_channel: bool) -> Capabilities:
    """Resources change (a session created in any process); the channel only with `--channel`."""
    return Capabilities(
        NotificationOptions(resources_changed=True),
        {channel.CAPABILITY: {}} if with_channel else None,
        channel.INSTRUCTIONS if with_channel else None,
    )


@dataclass(slots=True)
class Features:
    """The features of one process: its connected clients, and the backend prompts and resources read."""

    backend: ToolBackend
    with_channel: bool = False
    peers: Peers = field(default_factory=Peers)

    def install(self, server: Server[Any]) -> None:
        """Register the handlers on `server` and make its `initialize` answer declare them."""
        prompts = Prompts(self.backend)
        found = Resources(self.backend, self.peers)
        server.add_request_handler("prompts/list", types.PaginatedRequestParams, prompts.list)
        server.add_request_handler("prompts/get", types.GetPromptRequestParams, prompts.get)
        server.add_request_handler("completion/complete", types.CompleteRequestParams, prompts.complete)
        server.add_request_handler("resources/list", types.PaginatedRequestParams, found.list)
        server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, found.templates)
        server.add_request_handler("resources/read", types.ReadResourceRequestParams, found.read)
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, found.subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, found.unsubscribe)
        server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level_handler(self.peers))
        server.middleware.append(self.peers.middleware)
        declared = capabilities(with_channel=self.with_channel)
        if declared.instructions is not None:
            server.instructions = declared.instructions
        create = server.create_initialization_options

        def with_ours(
            notification_options: NotificationOptions | None = None,
            experimental_capabilities: dict[str, dict[str, Any]] | None = None,
            extensions: dict[str, dict[str, Any]] | None = None,
        ) -> Any:
            return create(
                notification_options or declared.notifications,
                experimental_capabilities or declared.experimental,
                extensions,
            )

        # The SDK reads the initialize answer from this method (the HTTP session manager calls it with no
        # arguments), so ours become its defaults.
        server.create_initialization_options = with_ours  # type: ignore[method-assign]

    async def run(self, hub: Hub | None, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send log lines and, with a local store's `hub`, change notifications, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(ClientLog(self.peers).run)
            if hub is not None:
                await nursery.start(partial(run_pushes, hub, self.peers, with_channel=self.with_channel))
            task_status.started()
