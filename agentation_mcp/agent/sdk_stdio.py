"""The SDK's MCP session on stdio: started by `stdio` when a message first needs it.

It reads the lines `stdio` hands it: first the client's own `initialize` and
`notifications/initialized` when `handshake` answered them (so the SDK's
session is in the state the client sees; the SDK's answer to that replayed
`initialize` is dropped), then every line the front end did not answer.

The SDK drops a line it cannot read as a JSON-RPC message without a word,
and a client that sent an id would wait forever. `ClientLines` checks each
line the front end could not read cheaply and answers such a line itself:
-32700 for text that is not JSON, -32600 for JSON that is not a JSON-RPC 2.0
message (a batch array, no `"jsonrpc"`), -32602 for a request whose text
holds a lone surrogate, each with the `id` when one can be read, and one line
on stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import cast

import anyio
import mcp_types as types
import orjson
import trio
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from ..commands import check_text
from ..errors import InvalidInput
from .features import Features
from .handshake import RequestId
from .sdk_server import mcp_server_for
from .tools import Handler

log = logging.getLogger(__name__)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602

Line = tuple[str, bool]
"""A line from the client, and whether the front end already read it as a well-formed message."""


class ClientLines:
    """The client's lines, passed on to the SDK only when it can read them as a message.

    A line it could not read is answered here, through `outbox` (the SDK's
    own write stream, so replies never interleave on stdout).
    """

    def __init__(self, lines: AsyncIterable[Line]) -> None:
        self._lines = lines
        self._outbox: anyio.abc.ObjectSendStream[SessionMessage] | None = None
        self._ready = trio.Event()
        self.refused = 0

    def answer_through(self, outbox: anyio.abc.ObjectSendStream[SessionMessage]) -> None:
        self._outbox = outbox
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._checked()

    async def _checked(self) -> AsyncIterator[str]:
        async for line, well_formed in self._lines:
            if well_formed:
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


class _Output:
    """stdout as the SDK writes it, less its answer to the replayed `initialize` (the client has ours)."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], replayed: RequestId | None, ready: trio.Event) -> None:
        self._send = send
        self._replayed = replayed
        self._ready = ready
        if replayed is None:
            ready.set()

    async def write(self, text: str) -> None:
        if self._replayed is not None:
            message = orjson.loads(text)
            if isinstance(message, dict) and message.get("id") == self._replayed and "method" not in message:
                if "result" not in message:
                    log.warning("[MCP] The SDK refused the replayed initialize: %s", text.strip())
                self._replayed = None
                self._ready.set()
                return
        await self._send(text.encode("utf-8"))

    async def flush(self) -> None:
        """Nothing to do: every write is already on the pipe."""


async def run_session(
    lines: AsyncIterable[Line],
    send: Callable[[bytes], Awaitable[None]] | None,
    *,
    replayed: RequestId | None,
    ready: trio.Event,
    handlers: Mapping[str, Handler],
    features: Features,
    max_arguments: int,
) -> None:
    """Serve the SDK's session on `lines` until they end, writing through `send` (None: the SDK's own
    stdout). `replayed` is the id of an `initialize` the client already has an answer to; `ready` is
    set once the SDK has caught up with it."""
    server = mcp_server_for(handlers, max_arguments=max_arguments, features=features)
    checked = ClientLines(lines)
    stdout = _Output(send, replayed, ready) if send is not None else None
    if stdout is None:
        ready.set()
    async with stdio_server(
        stdin=cast(anyio.AsyncFile[str], checked), stdout=cast(anyio.AsyncFile[str] | None, stdout)
    ) as (read_stream, write_stream):
        checked.answer_through(write_stream)
        await server.run(read_stream, write_stream, server.create_initialization_options())
