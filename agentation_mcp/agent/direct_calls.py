"""Quick tool calls on stdio, run and answered here instead of through the SDK's dispatch.

Profiled, most of the CPU of a quick tool call (an acknowledge, a reply, a
read) went to the MCP SDK moving it: validating the line into models, three
memory-stream hops, a task and a request context per call, then validating and
dumping the result again. A `tools/call` needs none of that once the
`initialize` handshake is done, so `DirectCalls` takes those lines as
`stdio.ClientLines` reads them, runs the tool, and writes the response line
itself: the same JSON the SDK would have sent. Calls run side by side, but
the writes of calls sent one after another are queued in that order
(`write_order`).

The SDK stays the authority for everything else: every other method,
malformed or unusual params, the long-running watch tool, and a connection
whose handshake was not answered by `handshake`: the stdio front end hands
over the agreed protocol version with `agree`, and a version not listed there
sends every call to the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import trio

from .handshake import VERSIONS
from .specs import READ_ONLY_TOOLS
from .tools import DEFAULT_MAX_ARGUMENTS, Handler, ToolOutcome, call_tool
from .write_order import Turn, Turnstile

log = logging.getLogger(__name__)

INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
# `_meta` keys under this prefix belong to a newer protocol era, which only the SDK serves.
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"
_CALL_PARAMS = frozenset(("name", "arguments", "_meta"))

RequestId = str | int
Send = Callable[[bytes], Awaitable[None]]


class DirectCalls:
    """Runs quick `tools/call` requests itself; `take` says which messages it took.

    `start` gives it the nursery its calls run in and the function that
    writes a line to stdout (shared with the SDK's writes, so lines never
    interleave). `agree` gives it the protocol version of the handshake, once
    answered. `close` ends the calls still running when stdin closes: like
    the SDK, each is answered "Connection closed".
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        slow: frozenset[str] = frozenset({"agentation_watch_annotations"}),
        max_arguments: int = DEFAULT_MAX_ARGUMENTS,
    ) -> None:
        self._handlers = handlers
        self._quick = frozenset(handlers) - slow
        self._writes = frozenset(name for name in self._quick if name not in READ_ONLY_TOOLS)
        self._turns = Turnstile()
        self._max_arguments = max_arguments
        self._version: str | None = None  # the agreed protocol version; None until the handshake is answered
        self._running: dict[RequestId, trio.CancelScope] = {}
        self._cancelled_by_client: set[RequestId] = set()
        self._nursery: trio.Nursery | None = None
        self._send: Send | None = None
        self.taken = 0

    def start(self, nursery: trio.Nursery, send: Send) -> None:
        self._nursery, self._send = nursery, send

    def agree(self, version: str | None) -> None:
        """The protocol version agreed in the handshake (None: the SDK owns the session from now on)."""
        self._version = version

    def take(self, message: dict[str, Any]) -> bool:
        """Whether this call runs `message` (a well-formed request or notification); if not, the SDK gets it.
        A cancellation of a call running here is taken too."""
        method = message.get("method")
        if method == "tools/call":
            return self._take_call(message)
        if method == "notifications/cancelled":
            return self._cancel(message.get("params"))
        return False

    def close(self) -> None:
        """End every call still running (stdin has closed)."""
        for scope in self._running.values():
            scope.cancel()

    def _take_call(self, message: dict[str, Any]) -> bool:
        request_id = message.get("id")
        params = message.get("params")
        if (
            self._version not in VERSIONS
            or self._nursery is None
            or request_id is None
            or request_id in self._running
            or not isinstance(params, dict)
            or not params.keys() <= _CALL_PARAMS
            or params.get("name") not in self._quick
            or not isinstance(params.get("arguments", {}), dict | None)
            or not _plain_meta(params.get("_meta"))
        ):
            return False
        name = params["name"]
        scope = trio.CancelScope()
        self._running[request_id] = scope
        self.taken += 1
        turn = self._turns.issue() if name in self._writes else None
        self._nursery.start_soon(self._answer, request_id, name, params.get("arguments"), scope, turn)
        return True

    async def _answer(
        self,
        request_id: RequestId,
        name: str,
        arguments: dict[str, Any] | None,
        scope: trio.CancelScope,
        turn: Turn | None,
    ) -> None:
        response: dict[str, Any] | None = None
        try:
            with scope:
                outcome: ToolOutcome = await call_tool(
                    self._handlers, name, arguments, max_bytes=self._max_arguments, turn=turn
                )
                response = {"jsonrpc": "2.0", "id": request_id, "result": outcome.wire()}
        except Exception:
            log.exception("[MCP] Tool %s failed unexpectedly", name)
            response = _error(request_id, INTERNAL_ERROR, "Internal error")
        finally:
            del self._running[request_id]
            if turn is not None:
                turn.pass_on()
        if request_id in self._cancelled_by_client:  # the client no longer wants an answer
            self._cancelled_by_client.discard(request_id)
            return
        if response is None:
            response = _error(request_id, CONNECTION_CLOSED, "Connection closed")
        assert self._send is not None
        await self._send(orjson.dumps(response) + b"\n")

    def _cancel(self, params: object) -> bool:
        if not isinstance(params, dict):
            return False
        request_id = params.get("requestId")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool) and request_id in self._running:
            self._cancelled_by_client.add(request_id)
            self._running[request_id].cancel()
            return True
        return False


def _plain_meta(meta: object) -> bool:
    """Whether a request's `_meta` is absent or holds nothing the SDK would check or refuse."""
    if meta is None:
        return True
    if not isinstance(meta, dict):
        return False
    token = meta.get("progressToken", "")
    if not (isinstance(token, str) or (isinstance(token, int) and not isinstance(token, bool))):
        return False
    return not any(isinstance(key, str) and key.startswith(_RESERVED_META_PREFIX) for key in meta)


def _error(request_id: RequestId, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
