"""The MCP clients connected to this process, for what the server sends them unasked: resource
changes, log lines and channel messages.

A client joins when its first message reaches the SDK (a middleware on the server sees it) and
leaves when its connection closes. Each keeps the log level it asked for and the resources it
subscribed to. Sending never blocks the sender for long: a client that does not read its stream
within a few seconds misses that one message, as the protocol allows for notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import trio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
SILENT = len(LEVELS)
"""The level of a client that has not set one: it gets no log lines (as before logging was offered)."""
SEND_WITHIN = 5.0  # seconds a notification may wait for a client's stream


class Peer:
    """One connected client: its connection, log level and resource subscriptions."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.level = SILENT
        self.subscriptions: set[str] = set()

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        with trio.move_on_after(SEND_WITHIN):
            await self.connection.notify(method, params)


def connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    """The connection a request came on.

    The SDK's request context carries the per-connection `Connection` only inside its session proxy,
    which is the one public handle on it here (its `Context` class has `.connection`, but the
    runner hands handlers this context instead).
    """
    connection: Connection = ctx.session._connection
    return connection


class Peers:
    """Every client connected to this process, on stdio and `/mcp`."""

    def __init__(self) -> None:
        self._peers: dict[int, Peer] = {}
        self.joined = trio.Event()  # set (and replaced) each time a client joins: for tests and waiters

    def __len__(self) -> int:
        return len(self._peers)

    def peer(self, ctx: ServerRequestContext[Any]) -> Peer:
        """The client `ctx` came from, joining it first if it is new."""
        connection = connection_of(ctx)
        found = self._peers.get(id(connection))
        if found is None:
            found = self._peers[id(connection)] = Peer(connection)
            connection.exit_stack.callback(self._peers.pop, id(connection), None)
            self.joined.set()
            self.joined = trio.Event()
        return found

    async def middleware(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """Joins each client as its messages arrive (a `Server.middleware` entry)."""
        self.peer(ctx)
        return await call_next(ctx)

    def all(self) -> list[Peer]:
        return list(self._peers.values())

    async def broadcast(
        self, method: str, params: Mapping[str, Any] | None = None, *, to: Callable[[Peer], bool] | None = None
    ) -> None:
        """Send a notification to every client (`to` picks some), side by side so a slow one holds up none."""
        chosen = [peer for peer in self._peers.values() if to is None or to(peer)]
        if len(chosen) == 1:
            await chosen[0].notify(method, params)
            return
        async with trio.open_nursery() as nursery:
            for peer in chosen:
                nursery.start_soon(peer.notify, method, params)
