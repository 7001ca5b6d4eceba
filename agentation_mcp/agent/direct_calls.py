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

The SDK stays the authority for everything else: the handshake, every other
method, malformed or unusual params, the long-running watch tool, and a
connection in any state but a finished handshake: the SDK's answer to
`initialize`, read off the wire, says when that is and which protocol version
was agreed. A version not listed here (a newer SDK's) sends every call to the
SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import trio

from .tools import DEFAULT_MAX_ARGUMENTS, READ_ONLY_TOOLS, Handler, ToolOutcome, call_tool
from .write_order import CURRENT_TURN, Turn, Turnstile

log = logging.getLogger("agentation_mcp")

INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
# The handshake protocol versions whose `tools/call` answers this module writes (the SDK answers them all alike).
VERSIONS = frozenset(("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"))
# `_meta` keys under this prefix belong to a newer protocol era, which only the SDK serves.
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"
_CALL_PARAMS = frozenset(("name", "arguments", "_meta"))

RequestId = str | int
Send = Callable[[bytes], Awaitable[None]]


class DirectCalls:
    """Runs quick `tools/call` requests itself; `take` says which messages it took.

    `start` gives it the nursery its calls run in and the function that
    writes a line to stdout (shared with the SDK's writes, so lines never
    interleave). `saw_output` must see every line the SDK writes, to learn
    the negotiated protocol version. `close` ends the calls still running
    when stdin closes: like the SDK, each is answered "Connection closed".
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
        self._ready = False  # until the SDK has answered `initialize` with a version in VERSIONS
        self._initialize_ids: set[RequestId] = set()
        self._running: dict[RequestId, trio.CancelScope] = {}
        self._cancelled_by_client: set[RequestId] = set()
        self._nursery: trio.Nursery | None = None
        self._send: Send | None = None
        self.taken = 0

    def start(self, nursery: trio.Nursery, send: Send) -> None:
        self._nursery, self._send = nursery, send

    def take(self, message: dict[str, Any]) -> bool:
        """Whether this call runs `message` (a well-formed request or notification); if not, the SDK gets it."""
        method = message.get("method")
        if method == "tools/call":
            return self._take_call(message)
        if method == "initialize" and "id" in message:
            self._initialize_ids.add(message["id"])
        elif method == "notifications/cancelled":
            self._cancel(message.get("params"))
        return False

    def saw_output(self, line: str) -> None:
        """Learn the protocol version from the SDK's answer to `initialize` (a cheap no-op otherwise)."""
        if not self._initialize_ids:
            return
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict) or message.get("id") not in self._initialize_ids:
            return
        self._initialize_ids.discard(message["id"])
        result = message.get("result")
        if isinstance(result, dict) and "protocolVersion" in result:  # a refusal changes nothing
            self._ready = result["protocolVersion"] in VERSIONS

    def close(self) -> None:
        """End every call still running (stdin has closed)."""
        for scope in self._running.values():
            scope.cancel()

    def _take_call(self, message: dict[str, Any]) -> bool:
        request_id = message.get("id")
        params = message.get("params")
        if (
            not self._ready
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
        CURRENT_TURN.set(turn)  # this task's own context: its writes wait for the turns before it
        response: dict[str, Any] | None = None
        try:
            with scope:
                outcome: ToolOutcome = await call_tool(self._handlers, name, arguments, max_bytes=self._max_arguments)
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

    def _cancel(self, params: object) -> None:
        if not isinstance(params, dict):
            return
        request_id = params.get("requestId")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool) and request_id in self._running:
            self._cancelled_by_client.add(request_id)
            self._running[request_id].cancel()


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
