"""MCP over stdin/stdout, with a stdin that trio can cancel.

The SDK reads stdin from a worker thread, which a signal cannot interrupt;
when stdin is a pipe or socket (as it is under Claude Code) we read it with
trio's non-blocking fd stream instead, so SIGTERM ends the session at once.
stdout stays with the SDK, which points fd 1 at stderr while serving, so
nothing but JSON-RPC ever reaches the wire.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import trio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server


class _FdLines:
    """Lines of text from a file descriptor, read without a thread."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(fd))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        async with self._stream:
            while True:
                chunk = await self._stream.receive_some(65536)
                if not chunk:
                    break
                pending += decoder.decode(chunk)
                *lines, pending = pending.split("\n")
                for line in lines:
                    yield line + "\n"
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending


def _pollable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one MCP session on this process's stdin/stdout until stdin closes."""
    stdin = cast(anyio.AsyncFile[str], _FdLines(0)) if _pollable(0) else None
    async with stdio_server(stdin=stdin) as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
