"""A lean MCP client over a server's stdio, for results too large for the SDK's client to time fairly.

The SDK's stdio reader joins each 64 KiB piece of output to the part of the
line it holds and splits the whole again, so reading one line of N bytes
costs on the order of N² / 64 KiB: for the 15 MB line of a 25,000-annotation
result, most of the seconds a call took were spent there, in the benchmark's
own process, for either server. This client keeps the bytes in one buffer,
looks for the end of the line only in what just arrived, and parses the line
once (orjson): what it times is the server and the pipe.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio

from .runner import SPAWN_TIMEOUT, Context, Target, free_port, server_env

PROTOCOL_VERSION = "2025-06-18"
_READ_SIZE = 1 << 20


class RpcError(Exception):
    pass


class StdioRpc:
    """One MCP session: requests written as lines to the server's stdin, answers read off its stdout."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        self._ids = itertools.count(1)

    async def _line(self) -> bytes:
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            scanned = len(self._buffer)
            data = await self._stdout.receive_some(_READ_SIZE)
            if not data:
                raise RpcError("the server closed its stdout")
            self._buffer += data

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._stdin.send_all(orjson.dumps(message) + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        """Send a request and return its result; lines that answer something else are skipped."""
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        await self._stdin.send_all(orjson.dumps(message) + b"\n")
        while True:
            answer = orjson.loads(await self._line())
            if answer.get("id") != request_id:
                continue
            if "error" in answer:
                raise RpcError(f"{method}: {answer['error']}")
            return answer["result"]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self.request("tools/call", {"name": name, "arguments": arguments})


@asynccontextmanager
async def stdio_session(
    ctx: Context, target: Target, home: Path, label: str
) -> AsyncIterator[tuple[StdioRpc, int, int]]:
    """A server process past the MCP handshake: (client, its pid, its HTTP port); SIGTERM at the end."""
    port = free_port()
    with ctx.log_path(f"{target.name}-{label}-{port}").open("wb") as errlog:
        process = await trio.lowlevel.open_process(
            target.command(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=server_env(home),
            cwd=str(home),
        )
        try:
            rpc = StdioRpc(process)
            with trio.fail_after(SPAWN_TIMEOUT):
                await rpc.request(
                    "initialize",
                    {
                        "protocolVersion": PROTOCOL_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "agentation-bench", "version": "0"},
                    },
                )
                await rpc.notify("notifications/initialized")
            yield rpc, process.pid, port
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    try:
                        os.kill(process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                with trio.move_on_after(5) as waited:
                    await process.wait()
                if waited.cancelled_caught:
                    process.kill()
                    await process.wait()
