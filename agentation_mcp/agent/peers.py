"""The MCP clients connected to this process, for what the server sends them unasked: resource
changes, log lines and channel messages.

A client joins when its first message reaches the SDK (a middleware on the server sees it) and
leaves when its connection closes. A stdio client whose handshake was answered without the SDK is
expected meanwhile: a notification meant for every client brings it in first (`join_expected`).
Each keeps the log level it asked for and the resources it subscribed to. Sending never blocks
the sender for long: a client that does not read its stream within a few seconds misses that one
message, as the protocol allows for notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # the SDK's types: this module runs before the SDK is loaded, which it needs only for them
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
        self._expected: dict[int, Callable[[], Awaitable[None]]] = {}
        self.joined = trio.Event()  # set (and replaced) each time a client joins: for tests and waiters
        self._arrived = trio.Event()  # set when a client joins or is expected

    def __len__(self) -> int:
        """The clients connected, those expected included."""
        return len(self._peers) + len(self._expected)

    def expect(self, join: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Count a client that has not reached the SDK yet; `join` brings it in (it may be called again).
        Returns the function that forgets it: call it once the client has joined or gone."""
        key = id(join)
        self._expected[key] = join
        self._arrived.set()
        return lambda: self._expected.pop(key, None) and None

    async def wait_for_any(self) -> None:
        """Return once a client is connected or expected (at once if one is)."""
        while not len(self):
            self._arrived = trio.Event()
            await self._arrived.wait()

    async def join_expected(self) -> None:
        """Bring in every expected client, so that a broadcast reaches it too."""
        for join in list(self._expected.values()):
            await join()

    def peer(self, ctx: ServerRequestContext[Any]) -> Peer:
        """The client `ctx` came from, joining it first if it is new."""
        connection = connection_of(ctx)
        found = self._peers.get(id(connection))
        if found is None:
            found = self._peers[id(connection)] = Peer(connection)
            connection.exit_stack.callback(self._peers.pop, id(connection), None)
            self._arrived.set()
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
