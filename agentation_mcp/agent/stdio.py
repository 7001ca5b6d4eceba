"""MCP over stdin/stdout: the first messages answered here, the SDK loaded when a message needs it.

Importing the MCP SDK is most of a start-up, so this front end reads stdin
itself and answers, without the SDK, what a session starts with: the
handshake, `tools/list` and `ping` (`handshake`) and quick tool calls
(`direct_calls`). The first message it cannot answer (any other method or
version, a malformed line, the watch tool) loads the SDK on a worker thread,
starts its session with the client's `initialize` and
`notifications/initialized` replayed, then hands it that message and every
later one it does not answer. A notification meant for every client (a new
session, a channel message) loads the SDK too (`peers.Peers.expect`).

stdin is read with trio's non-blocking fd stream when it is a pipe or
socket (as under Claude Code), so SIGTERM ends the session at once. The wire
gets a private copy of fd 1, and fd 1 itself goes to stderr, so nothing else
this process prints reaches the protocol stream. When stdout is not a pipe
or socket, every message goes to the SDK, which writes stdout itself.
"""

from __future__ import annotations

import codecs
import logging
import os
import stat
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import orjson
import trio

from .direct_calls import DirectCalls
from .features import Features
from .handshake import Answers, RequestId, no_params, requested_version
from .tools import Handler

log = logging.getLogger(__name__)
CLOSING_GRACE = 1.0  # seconds for direct calls to answer once stdin has closed
_SDK_QUEUE = 64  # lines waiting for the SDK while it loads (stdin is not read beyond them meanwhile)
_REQUEST_KEYS = frozenset(("jsonrpc", "id", "method", "params"))
LOADING = threading.RLock()
"""Held by a worker thread while it imports a part loaded on demand (the SDK here, the HTTP side in `service`),
so that two such imports never run at once (threads importing modules that import each other can deadlock)."""


def load_sdk() -> ModuleType:
    """The SDK's stdio session module, imported under `LOADING`: the one deliberate lazy import of the SDK."""
    with LOADING:
        from . import sdk_stdio

        return sdk_stdio


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
    """stdout, written with trio's non-blocking fd stream, one whole line at a time under a lock (the SDK,
    `DirectCalls` and the handshake all write here, so lines never interleave)."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._lock = trio.Lock()

    async def send(self, data: bytes) -> None:
        async with self._lock:
            await self._stream.send_all(data)


def plain_message(line: str) -> dict[str, Any] | None:
    """The line's message when a cheap check shows it is the common case, a well-formed request or
    notification; None sends the line to the SDK's full check."""
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


def pollable(fd: int) -> bool:
    """Whether `fd` is a pipe or a socket."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _stdin_lines() -> AsyncIterable[str]:
    return _FdLines(0) if pollable(0) else _ThreadLines(0)


class _Sdk:
    """The SDK's session, started by the first line that needs it (`send`) or by `join`."""

    def __init__(
        self, nursery: trio.Nursery, send: Callable[[bytes], Awaitable[None]] | None, session: Mapping[str, Any]
    ) -> None:
        self._nursery = nursery
        self._send = send
        self._session = session
        self._lines_in, self._lines_out = trio.open_memory_channel[tuple[str, bool]](_SDK_QUEUE)
        self._replay: list[str] = []
        self._replayed: RequestId | None = None
        self.started = False
        self.ready = trio.Event()  # the SDK has caught up with the replayed handshake
        self.done = trio.Event()

    def replay(self, line: str, request_id: RequestId | None = None) -> None:
        """A line the front end answered that the SDK must see first (`request_id`: the initialize's)."""
        self._replay.append(line)
        if request_id is not None:
            self._replayed = request_id

    async def send(self, line: str, well_formed: bool) -> None:
        self._start()
        await self._lines_in.send((line, well_formed))

    async def join(self) -> None:
        """Start the SDK if it is not running, and wait until it has caught up (or ended)."""
        if self.ready.is_set() or self.done.is_set():
            return
        self._start()
        with trio.CancelScope() as scope:
            self._nursery.start_soon(self._cancel_when_done, scope)
            await self.ready.wait()
            scope.cancel()

    async def _cancel_when_done(self, scope: trio.CancelScope) -> None:
        await self.done.wait()
        scope.cancel()

    def close(self) -> None:
        """stdin has ended: so do the SDK's lines."""
        self._lines_in.close()

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self._nursery.start_soon(self._run)

    async def _lines(self) -> AsyncIterator[tuple[str, bool]]:
        for line in self._replay:
            yield line, True
        async with self._lines_out:
            async for item in self._lines_out:
                yield item

    async def _run(self) -> None:
        try:
            sdk_stdio = await trio.to_thread.run_sync(load_sdk)
            await sdk_stdio.run_session(
                self._lines(), self._send, replayed=self._replayed, ready=self.ready, **self._session
            )
        finally:
            self.done.set()


async def serve_stdio(
    handlers: Mapping[str, Handler],
    features: Features,
    *,
    max_arguments: int,
    answered: Callable[[], None] | None = None,
    initialized: Callable[[object], None] | None = None,
) -> None:
    """Serve one MCP session on this process's stdin/stdout until stdin closes.

    `answered` is called once the client's first message has been dealt with
    (so that slower start-up work can begin without holding up the handshake);
    `initialized` is told the params of each `initialize` request, whoever answers it.
    """
    session = {"handlers": handlers, "features": features, "max_arguments": max_arguments}
    wire = -1
    writer: _FdWriter | None = None
    if pollable(1):
        wire = os.dup(1)
        os.dup2(2, 1)
        writer = _FdWriter(wire)
    try:
        async with trio.open_nursery() as nursery:
            sdk = _Sdk(nursery, writer.send if writer is not None else None, session)
            if writer is None:
                await _pass_everything(sdk, answered, initialized)
            else:
                direct = DirectCalls(handlers, max_arguments=max_arguments)
                direct.start(nursery, writer.send)
                front = _Front(sdk, direct, writer.send, Answers(with_channel=features.with_channel))
                forget = features.peers.expect(sdk.join)
                try:
                    await front.serve(answered, initialized)
                finally:
                    forget()
                direct.close()
            if sdk.started:
                await sdk.done.wait()
            # The last answers go to a client that may have stopped reading: do not wait long.
            nursery.cancel_scope.deadline = trio.current_time() + CLOSING_GRACE
    finally:
        if wire >= 0:
            os.dup2(wire, 1)


async def _pass_everything(
    sdk: _Sdk, answered: Callable[[], None] | None, initialized: Callable[[object], None] | None
) -> None:
    async for line in _stdin_lines():
        if line.strip():
            message = plain_message(line)
            if message is not None and initialized is not None and message["method"] == "initialize":
                initialized(message.get("params"))
            await sdk.send(line, message is not None)
            if answered is not None:
                answered()
                answered = None
    sdk.close()


class _Front:
    """Routes each line: answered here, run by `DirectCalls`, or handed to the SDK."""

    def __init__(
        self, sdk: _Sdk, direct: DirectCalls, send: Callable[[bytes], Awaitable[None]], answers: Answers
    ) -> None:
        self._sdk = sdk
        self._direct = direct
        self._send = send
        self._answers = answers
        self._state = "new"  # "ours": our handshake answered; "initialized": its notification seen; "sdk"

    async def serve(
        self, answered: Callable[[], None] | None, initialized: Callable[[object], None] | None = None
    ) -> None:
        async for line in _stdin_lines():
            if not line.strip():
                continue
            message = plain_message(line)
            if message is not None and initialized is not None and message["method"] == "initialize":
                initialized(message.get("params"))
            if message is None:
                await self._sdk.send(line, False)
            elif not await self._answer(message, line):
                await self._sdk.send(line, True)
            if answered is not None:
                answered()
                answered = None
        self._sdk.close()

    async def _answer(self, message: dict[str, Any], line: str) -> bool:
        """Whether `message` was answered (or taken) here; False hands it to the SDK."""
        method = message["method"]
        request_id = message.get("id")
        if method == "initialize":
            version = requested_version(message.get("params"))
            if self._state != "new" or request_id is None or version is None or self._sdk.started:
                self._state = "sdk"
                self._direct.agree(None)
                return False
            await self._send(self._answers.initialize(request_id, version))
            self._state = "ours"
            self._sdk.replay(line, request_id)
            self._direct.agree(version)
            return True
        if self._state == "new" or self._state == "sdk":
            return False
        if method == "notifications/initialized" and self._state == "ours" and not self._sdk.started:
            self._state = "initialized"
            self._sdk.replay(line)
            return True
        if request_id is not None and no_params(message):
            if method == "tools/list":
                await self._send(self._answers.tools_list(request_id))
                return True
            if method == "ping":
                await self._send(self._answers.ping(request_id))
                return True
        return self._direct.take(message)
