"""Servers driven over MCP stdio by the `mcp` SDK's client, for the MCP workloads."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from .api import set_up
from .runner import REQUEST_TIMEOUT, SPAWN_TIMEOUT, Context, Target, child_pids, free_port, server_env, wait_healthy
from .writer import create_annotations, in_process_writer


@asynccontextmanager
async def mcp_session(
    ctx: Context, target: Target, home: Path, label: str
) -> AsyncIterator[tuple[ClientSession, int | None, int]]:
    """A live server process with an initialized MCP session: (session, its pid when found, its HTTP port).

    Stopped with SIGTERM at the end: the npm server does not exit when its stdin closes.
    """
    port = free_port()
    command, *args = target.command(port)
    params = StdioServerParameters(command=command, args=args, env=server_env(home), cwd=str(home))
    before = child_pids(target.marker)
    with ctx.log_path(f"{target.name}-{label}-{port}").open("w", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT * 3) as session,
        ):
            with trio.fail_after(SPAWN_TIMEOUT):
                await session.initialize()
            new = child_pids(target.marker) - before
            pid = max(new) if new else None
            try:
                yield session, pid, port
            finally:
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass


async def populate_ours(home: Path, count: int) -> list[str]:
    """`count` annotations in one session, written before our server starts (through our writer)."""
    with trio.fail_after(SPAWN_TIMEOUT):
        async with in_process_writer(home / ".agentation" / "store.db") as (writer, _):
            return await create_annotations(writer, count)


async def populate_over_http(port: int, count: int) -> list[str]:
    """`count` annotations in one session, over a running server's HTTP API (the npm server's store)."""
    await wait_healthy(port)
    _, ids = await set_up(port, count)
    return ids
