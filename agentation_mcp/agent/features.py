"""MCP beyond the nine tools: prompts, resources, completion, logging, progress, the push channel.

This module holds what runs without the SDK: the clients this process knows
(`peers`), the tasks that send them log lines and change notifications, and
the capabilities and instructions the server declares, as the JSON of its
`initialize` answer (the stdio front end answers the handshake from them
before the SDK is loaded). `sdk_server` registers the handlers on the SDK's
server; a test checks that the SDK then declares exactly these capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import trio

from ..models import JsonObject
from ..store.hub import Hub
from . import channel
from .log import ClientLog
from .peers import Peers
from .pushes import run_pushes
from .tools import ToolBackend


def declared_capabilities(*, with_channel: bool) -> JsonObject:
    """The `capabilities` of the `initialize` answer, in the SDK's key order: every feature is offered;
    resources change (a session created in any process); the channel only with `--channel`."""
    declared: JsonObject = {"completions": {}}
    if with_channel:
        declared["experimental"] = {channel.CAPABILITY: {}}
    declared |= {
        "logging": {},
        "prompts": {"listChanged": False},
        "resources": {"listChanged": True, "subscribe": True},
        "tools": {"listChanged": False},
    }
    return declared


def instructions(*, with_channel: bool) -> str | None:
    """The `instructions` of the `initialize` answer: how to act on channel messages, when they are on."""
    return channel.INSTRUCTIONS if with_channel else None


@dataclass(slots=True)
class Features:
    """The features of one process: its connected clients, and the backend prompts and resources read."""

    backend: ToolBackend
    with_channel: bool = False
    peers: Peers = field(default_factory=Peers)

    async def run(self, hub: Hub | None, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send log lines and, with a local store's `hub`, change notifications, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(ClientLog(self.peers).run)
            if hub is not None:
                await nursery.start(partial(run_pushes, hub, self.peers, with_channel=self.with_channel))
            task_status.started()
