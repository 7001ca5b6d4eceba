"""Presence of the MCP clients: what the agent side tells the heartbeat (`store.heartbeat`) about each connection.

On stdio, `stdio` hands the `initialize` params it reads to `StdioPresence.initialized`
(whoever answers the handshake), and every tool call goes through the handlers
`recorded` wraps, the quick ones `direct_calls` runs and the SDK's alike. On
`/mcp`, `HttpPresence.middleware` sees each session's requests inside the SDK
and follows its connection until it closes. Either way a tool call only sets a
time in memory; a watch starting or ending is written soon after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from ..store.heartbeat import Agent, Heartbeat
from .peers import connection_of
from .tools import Handler

WATCH = "agentation_watch_annotations"


def client_info(params: object) -> Mapping[str, Any] | None:
    """`clientInfo` of `initialize` params, when it is an object."""
    info = params.get("clientInfo") if isinstance(params, Mapping) else None
    return info if isinstance(info, Mapping) else None


def _watched_session(arguments: object) -> str | None:
    session = arguments.get("sessionId") if isinstance(arguments, Mapping) else None
    return session if isinstance(session, str) else None


def recorded(handlers: Mapping[str, Handler], agent: Agent) -> dict[str, Handler]:
    """`handlers`, each telling `agent` of its call; the watch also of its wait."""

    def wrap(name: str, handler: Handler) -> Handler:
        if name == WATCH:

            async def watch(args: Mapping[str, Any]) -> Any:
                agent.called()
                agent.watching(_watched_session(args))
                try:
                    return await handler(args)
                finally:
                    agent.stopped_watching()

            return watch

        async def call(args: Mapping[str, Any]) -> Any:
            agent.called()
            return await handler(args)

        return call

    return {name: wrap(name, handler) for name, handler in handlers.items()}


class StdioPresence:
    """The one stdio connection of this process."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.agent = heartbeat.agent("stdio")

    def initialized(self, params: object) -> None:
        """The client's `initialize` request arrived with `params`."""
        self.agent.connected(client_info(params))

    def disconnected(self) -> None:
        self.agent.disconnected()


class HttpPresence:
    """The `/mcp` sessions: an agent per connection, from its `initialize` until it closes."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat
        self._agents: dict[int, Agent] = {}

    async def middleware(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """A `Server.middleware` entry."""
        if ctx.method == "initialize":
            self._agent(ctx).connected(client_info(ctx.params))
            return await call_next(ctx)
        if ctx.method != "tools/call":
            return await call_next(ctx)
        agent = self._agents.get(id(connection_of(ctx)))
        if agent is None:
            return await call_next(ctx)
        agent.called()
        params = ctx.params or {}
        if params.get("name") != WATCH:
            return await call_next(ctx)
        agent.watching(_watched_session(params.get("arguments")))
        try:
            return await call_next(ctx)
        finally:
            agent.stopped_watching()

    def _agent(self, ctx: ServerRequestContext[Any]) -> Agent:
        connection = connection_of(ctx)
        key = id(connection)
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = self.heartbeat.agent("http")

            def closed() -> None:
                self._agents.pop(key, None)
                agent.disconnected()

            connection.exit_stack.callback(closed)
        return agent
