"""MCP over stdin/stdout, with a stdin that trio can cancel and that answers every line.

The SDK reads stdin from a worker thread, which a signal cannot interrupt;
when stdin is a pipe or socket (as it is under Claude Code) we read it with
trio's non-blocking fd stream instead, so SIGTERM ends the session at once.
stdout stays with the SDK, which points fd 1 at stderr while serving, so
nothing but JSON-RPC ever reaches the wire.

The SDK drops a line it cannot read as a JSON-RPC message without a word,
and a client that sent an id would wait forever. `ClientLines` checks each
line first and answers such a line itself: -32700 for text that is not JSON,
-32600 for JSON that is not a JSON-RPC 2.0 message (a batch array, no
`"jsonrpc"`), -32602 for a request whose text holds a lone surrogate, each
with the `id` when one can be read, and one line on stderr.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import anyio
import mcp_types as types
import orjson
import trio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from ..commands import check_text
from ..errors import InvalidInput
from .direct_calls import DirectCalls

log = logging.getLogger("agentation_mcp")
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
CLOSING_GRACE = 1.0  # seconds for direct calls to answer once stdin has closed


class _FdLines:
    """Lines of text from a file descriptor, read without a thread."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(fd))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async with self._stream:
            async for line in _split_lines(partial(self._stream.receive_some, 65536)):
                yield line


async def _split_lines(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[str]:
    """The UTF-8 lines of what `read` returns until it returns nothing; a last line may lack its newline."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while chunk := await read():
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


class ClientLines:
    """The client's lines, passed on to the SDK only when it can read them as a message.

    A line it could not read is answered here, through `outbox` (the SDK's
    own write stream, so replies never interleave on stdout).
    """

    def __init__(
        self,
        lines: AsyncIterable[str],
        direct: DirectCalls | None = None,
        initialized: Callable[[object], None] | None = None,
    ) -> None:
        self._lines = lines
        self._direct = direct
        self._initialized = initialized  # told the params of each `initialize` request (presence)
        self._outbox: anyio.abc.ObjectSendStream[SessionMessage] | None = None
        self._ready = trio.Event()
        self.refused = 0

    def answer_through(self, outbox: anyio.abc.ObjectSendStream[SessionMessage]) -> None:
        self._outbox = outbox
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._checked()

    async def _checked(self) -> AsyncIterator[str]:
        async for line in self._lines:
            if not line.strip():
                continue
            message = _plain_message(line)
            if message is not None:
                if self._initialized is not None and message.get("method") == "initialize":
                    self._initialized(message.get("params"))
                if self._direct is None or not self._direct.take(message):
                    yield line
                continue
            try:
                types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError:
                refusal = refusal_for(line)
            else:
                yield line
                continue
            self.refused += 1
            log.warning("[MCP] Answered a message on stdin with an error: %s", refusal.error.message)
            await self._ready.wait()
            assert self._outbox is not None
            try:
                await self._outbox.send(SessionMessage(refusal))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return


_REQUEST_KEYS = frozenset(("jsonrpc", "id", "method", "params"))


def _plain_message(line: str) -> dict[str, Any] | None:
    """The line's message when a cheap check shows it is the common case, a well-formed request or
    notification, so it needs no second full validation (the SDK validates every line it gets itself);
    None sends the line to the full check."""
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not message.keys() <= _REQUEST_KEYS:
        return None
    request_id = message.get("id", "")
    params = message.get("params")
    plain = (
        isinstance(message.get("method"), str)
        and (isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)))
        and (params is None or isinstance(params, dict))
    )
    return message if plain else None


def refusal_for(line: str) -> types.JSONRPCError:
    """The JSON-RPC error answering `line`, which is not a message the SDK can read."""
    try:
        message = json.loads(line)  # unlike stricter parsers, takes a lone surrogate, to name its field
    except ValueError:
        return _error(None, PARSE_ERROR, "Parse error: the line is not valid JSON.")
    except RecursionError:
        return _error(None, PARSE_ERROR, "Parse error: the JSON is nested too deeply.")
    if isinstance(message, list):
        return _error(None, INVALID_REQUEST, "Invalid Request: batches (JSON arrays) are not supported.")
    if not isinstance(message, dict):
        return _error(None, INVALID_REQUEST, "Invalid Request: a message must be a JSON object.")
    raw_id = message.get("id")
    request_id = (
        raw_id if isinstance(raw_id, str) or (isinstance(raw_id, int) and not isinstance(raw_id, bool)) else None
    )
    if message.get("jsonrpc") != "2.0":
        return _error(request_id, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0".')
    try:
        check_text(message.get("params"), "params")
    except InvalidInput as exc:
        return _error(request_id, INVALID_PARAMS, f"Invalid params: {exc}")
    try:
        check_text(message)
    except InvalidInput as exc:
        return _error(request_id, INVALID_REQUEST, f"Invalid Request: {exc}")
    return _error(request_id, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 request, notification or response.")


def _error(request_id: str | int | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


def _pollable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _ThreadLines:
    """Lines of text from a terminal or a file, read on worker threads that a signal does not wait for.

    A terminal's read blocks until someone types; the thread is abandoned
    when the server is cancelled (Ctrl-C, SIGTERM), so shutdown never waits
    for a key press. (Non-blocking mode, as for pipes, would change the
    terminal that the shell shares.)
    """

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        read = partial(trio.to_thread.run_sync, os.read, self._fd, 65536, abandon_on_cancel=True)
        async for line in _split_lines(read):
            yield line


class _FdWriter:
    """stdout, written with trio's non-blocking fd stream instead of a thread hop per write.

    Both the SDK (`write`) and `DirectCalls` (`send`) write here, one whole
    line at a time under a lock; `observe` sees each line the SDK writes.
    """

    def __init__(self, fd: int, observe: Callable[[str], None] | None = None) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._lock = trio.Lock()
        self._observe = observe

    async def write(self, text: str) -> None:
        if self._observe is not None:
            self._observe(text)
        await self.send(text.encode("utf-8"))

    async def send(self, data: bytes) -> None:
        async with self._lock:
            await self._stream.send_all(data)

    async def flush(self) -> None:
        """Nothing to do: every write is already on the pipe."""


def _stdin_lines() -> AsyncIterable[str]:
    return _FdLines(0) if _pollable(0) else _ThreadLines(0)


async def serve_stdio(
    server: Server[Any], direct: DirectCalls | None = None, initialized: Callable[[object], None] | None = None
) -> None:
    """Serve one MCP session on this process's stdin/stdout until stdin closes.

    With `direct`, quick tool calls skip the SDK's dispatch (only when stdout
    is a pipe or socket, which this module then writes itself).
    """
    stdout: _FdWriter | None = None
    wire = -1
    if _pollable(1):
        # The wire gets a private copy of fd 1, and fd 1 itself goes to stderr, so that nothing else this
        # process prints can reach the protocol stream (what the SDK does for the stdout it opens itself).
        wire = os.dup(1)
        os.dup2(2, 1)
        stdout = _FdWriter(wire, direct.saw_output if direct is not None else None)
    else:
        direct = None
    lines = ClientLines(_stdin_lines(), direct, initialized)
    try:
        async with trio.open_nursery() as calls:
            if direct is not None and stdout is not None:
                direct.start(calls, stdout.send)
            async with stdio_server(
                stdin=cast(anyio.AsyncFile[str], lines), stdout=cast(anyio.AsyncFile[str] | None, stdout)
            ) as (read_stream, write_stream):
                lines.answer_through(write_stream)
                await server.run(read_stream, write_stream, server.create_initialization_options())
                if direct is not None:
                    direct.close()
                    # Their last answers go to a client that may have stopped reading: do not wait long.
                    calls.cancel_scope.deadline = trio.current_time() + CLOSING_GRACE
    finally:
        if wire >= 0:
            os.dup2(wire, 1)
