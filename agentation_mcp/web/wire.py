"""HTTP/1.1 on one trio stream: requests in, responses out, with limits and timeouts.

llhttp (through `httptools`) does the parsing: request smuggling, header
folding, bad bytes and chunked bodies are its job. This module keeps the
connection's state around it:

* keep-alive and pipelining: requests are answered one at a time, in order;
  bytes read ahead are parsed into a queue of messages and served next;
* limits: a request line or header block over `max_head` bytes gets 414 or
  431, a body over `max_body` gets 413 before it is read (from its
  Content-Length, or as soon as a chunked body passes the limit), and the
  connection is closed after each;
* timeouts: a connection silent for `idle_timeout` between requests is
  closed; a request whose head or body takes longer than `head_timeout` or
  `body_timeout` gets 408; a send that cannot finish within `send_timeout`
  (a client that stopped reading) closes the connection;
* `Expect: 100-continue` is answered when the handler asks for the body;
  `HEAD` responses carry the headers without the body.

Handlers get a `Request` and answer through it, either whole (`respond`) or
as a chunked stream (`start_stream`, `send`, `end_stream`), while
`wait_disconnect` tells a streaming handler when the client has gone.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import httptools
import trio

from ..config import DEFAULT_MAX_BODY

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
RequestHandler = Callable[["Request"], Awaitable[None]]

_RECEIVE_SIZE = 65536
_MAX_READ_AHEAD = 32  # pipelined requests read ahead while a response is streamed
_JOIN_UP_TO = 256 * 1024  # a body up to this size goes out in one piece with its head


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head: int = 64 * 1024
    max_body: int = DEFAULT_MAX_BODY
    idle_timeout: float = 5.0
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0


class WireError(Exception):
    """Ends the request on the wire; `serve_connection` answers (if it still can) and closes."""


class BodyTooLarge(WireError):
    """The request body is over the limit; the answer is 413 and the connection closes."""


class ClientGone(WireError):
    """The client closed the connection or broke it."""


class _Closing(WireError):
    """Stop serving this connection (after answering, when `status` is set)."""

    def __init__(self, status: int | None = None, message: str = "") -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


_STATUS_LINES = {status.value: _status_line(status.value) for status in HTTPStatus}
_KEEP_ALIVE = b"connection: keep-alive\r\nkeep-alive: timeout=%d\r\n"
_CLOSE = b"connection: close\r\n"


class _Clock:
    """The Date header, formatted once a second."""

    second = 0
    header = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.header = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return cls.header


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Message:
    """One request as the parser fills it in."""

    __slots__ = (
        "body",
        "body_size",
        "complete",
        "content_length",
        "expects_continue",
        "head_complete",
        "headers",
        "keep_alive",
        "method",
        "overflow",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.target = b""
        self.headers: Headers = []
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.content_length: int | None = None
        self.expects_continue = False
        self.head_complete = False
        self.complete = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.overflow = False


class Request:
    """One request, and the way to answer it."""

    __slots__ = (
        "_conn",
        "_message",
        "_streaming",
        "headers",
        "method",
        "path",
        "query",
        "raw_headers",
        "responded",
        "started",
        "version",
    )

    def __init__(self, conn: _Connection, message: _Message) -> None:
        self._conn = conn
        self._message = message
        self.method = message.method
        target = message.target
        path, _, query = target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")
        self.raw_headers = message.headers
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in message.headers}
        self.version = message.version
        self.started = False  # the status line went out
        self.responded = False  # the whole response went out
        self._streaming = False

    @property
    def keep_alive(self) -> bool:
        return self._message.keep_alive

    @property
    def client(self) -> tuple[str, int] | None:
        return self._conn.peer

    @property
    def server(self) -> tuple[str, int] | None:
        return self._conn.local

    # --- the body --------------------------------------------------------------

    async def body(self) -> bytes:
        """The whole body; raises `BodyTooLarge` or `ClientGone` (and answers 408 itself on a timeout)."""
        message = self._message
        while not message.complete and not message.overflow:
            await self._conn.read_body(message)
        if message.overflow:
            raise BodyTooLarge
        body = b"".join(message.body)
        message.body.clear()
        return body

    def body_chunks(self) -> _BodyIterator:
        """The body as it arrives; raises `BodyTooLarge` or `ClientGone`."""
        return _BodyIterator(self._conn, self._message)

    # --- the response ------------------------------------------------------------

    async def respond(self, status: int, headers: Headers, body: bytes = b"", *, length: int | None = None) -> None:
        """Send the whole response. `length` sets Content-Length when the body is left out (HEAD)."""
        size = len(body) if length is None else length
        out = [self._head(status, headers), b"content-length: %d\r\n\r\n" % size]
        self.started = self.responded = True
        if self.method != "HEAD" and len(body) > _JOIN_UP_TO:
            # A long body (a pending list of thousands) is not copied behind its head: that copy of fresh
            # memory cost 10-20 ms for 23 MB.
            await self._conn.send(b"".join(out))
            await self._conn.send(body)
            return
        if self.method != "HEAD":
            out.append(body)
        await self._conn.send(b"".join(out))

    async def start_stream(self, status: int, headers: Headers) -> None:
        """Send the head of a response whose body follows in pieces (chunked, or until close on HTTP/1.0)."""
        head = self._head(status, headers)
        if self.version == "1.1":
            head += b"transfer-encoding: chunked\r\n\r\n"
        else:
            self._message.keep_alive = False
            head += b"\r\n"
        self.started = True
        self._streaming = True
        await self._conn.send(head)

    @property
    def chunked(self) -> bool:
        return self.version == "1.1"

    async def send(self, data: bytes) -> None:
        """One piece of a streamed body; empty pieces are skipped."""
        if data:
            await self._conn.send(chunk(data) if self.chunked else data)

    async def send_encoded(self, data: bytes) -> None:
        """A piece already framed for this stream (see `chunked`)."""
        await self._conn.send(data)

    async def end_stream(self) -> None:
        self.responded = True
        if self.chunked:
            await self._conn.send(b"0\r\n\r\n")

    def _head(self, status: int, headers: Headers) -> bytes:
        if self.started:
            raise RuntimeError("the response has already started")
        keep = self._message.keep_alive and not self._conn.closing and self._conn.may_continue(self._message)
        parts = [
            _STATUS_LINES.get(status) or _status_line(status),
            *(b"%b: %b\r\n" % pair for pair in headers),
            _Clock.date(),
            _KEEP_ALIVE % self._conn.limits.idle_timeout if keep else _CLOSE,
        ]
        if not keep:
            self._message.keep_alive = False
        return b"".join(parts)

    def try_send(self, data: bytes) -> int:
        """Write what the socket takes of an already framed piece now, without waiting; how much it took.

        For the SSE fan-out, which writes from the publisher's task: the caller
        makes sure nothing else is writing to this response meanwhile. Raises
        `ClientGone` when the connection is broken; 0 without a socket.
        """
        return self._conn.try_send(data)

    # --- the client going away ---------------------------------------------------------

    async def wait_disconnect(self) -> None:
        """Return once the client has closed the connection (reading ahead meanwhile)."""
        await self._conn.wait_disconnect()


class _BodyIterator:
    def __init__(self, conn: _Connection, message: _Message) -> None:
        self._conn = conn
        self._message = message

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        message = self._message
        while True:
            if message.overflow:
                raise BodyTooLarge
            if message.body:
                piece = b"".join(message.body)
                message.body.clear()
                return piece
            if message.complete:
                raise StopAsyncIteration
            await self._conn.read_body(message)


class _Connection:
    """The parser's callbacks and the reading and writing of one connection."""

    def __init__(self, stream: trio.abc.Stream, limits: HttpLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.messages: deque[_Message] = deque()
        self.head_bytes = 0
        self.target_bytes = 0
        self.raw_head_bytes = 0
        self.eof = False
        self.closing = False
        self.continue_sent = False
        self.body_deadline = 0.0
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        # On a socket, reads and writes try the system call first and only wait (with trio) when it
        # would block: most requests then go in and out without trio's stream machinery, whose
        # per-call context managers and cancel scopes were a third of the CPU of a small request.
        # The connection takes the socket over from trio's stream, which is left an empty shell:
        # this object is its one owner, and `close` closes it.
        self.sock: socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            try:
                self.peer = stream.socket.getpeername()[:2]
                self.local = stream.socket.getsockname()[:2]
            except OSError:
                pass
            self.sock = socket.socket(fileno=stream.socket.detach())
            self.sock.setblocking(False)

    def close(self) -> None:
        """Close the socket, waking whatever waits on it first."""
        if self.sock is not None:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

    # --- parser callbacks (run inside feed_data) ------------------------------------

    def on_message_begin(self) -> None:
        self.messages.append(_Message())
        self.head_bytes = 0
        self.target_bytes = 0

    def on_url(self, url: bytes) -> None:
        message = self.messages[-1]
        self.target_bytes += len(url)
        if self.target_bytes > self.limits.max_head:
            raise _Closing(414, "Request line too long")
        message.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes + self.target_bytes > self.limits.max_head:
            raise _Closing(431, "Request headers too large")
        self.messages[-1].headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        message = self.messages[-1]
        parser = self.parser
        message.method = parser.get_method().decode("ascii")
        message.version = parser.get_http_version()
        message.keep_alive = parser.should_keep_alive()
        message.head_complete = True
        self.raw_head_bytes = 0
        for name, value in message.headers:
            if name == b"content-length":
                message.content_length = int(value)  # llhttp has checked it is a number
            elif name == b"expect" and value.lower() == b"100-continue":
                message.expects_continue = True
        if message.content_length is not None and message.content_length > self.limits.max_body:
            message.overflow = True

    def on_body(self, body: bytes) -> None:
        message = self.messages[-1]
        if message.overflow:
            return
        message.body_size += len(body)
        if message.body_size > self.limits.max_body:
            message.overflow = True
            message.body.clear()
            return
        message.body.append(body)

    def on_message_complete(self) -> None:
        self.messages[-1].complete = True

    # --- reading ---------------------------------------------------------------------

    async def _receive(self) -> bytes | bytearray:
        data: bytes | bytearray
        sock = self.sock
        try:
            if sock is None:
                data = await self.stream.receive_some(_RECEIVE_SIZE)
            else:
                while True:
                    try:
                        data = sock.recv(_RECEIVE_SIZE)
                        break
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(sock)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
        return data

    def _feed(self, data: bytes | bytearray) -> None:
        in_head = not self.messages or not self.messages[-1].head_complete
        if in_head:
            self.raw_head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Closing):
                raise cause from None
            raise _Closing(400, "Bad request") from None
        except httptools.HttpParserUpgrade:
            raise _Closing(400, "Protocol upgrades are not supported") from None
        except httptools.HttpParserError:
            raise _Closing(400, "Bad request") from None
        if self.raw_head_bytes > 2 * self.limits.max_head and self.messages and not self.messages[-1].head_complete:
            raise _Closing(431, "Request headers too large")

    async def next_message(self) -> _Message | None:
        """The next request whose head is complete; None when the client is done."""
        messages = self.messages
        if messages and messages[0].head_complete:
            return messages[0]
        # One scope for both waits: idle until the request's first byte, then the head timeout.
        with trio.move_on_after(self.limits.idle_timeout) as scope:
            if messages:
                scope.deadline = trio.current_time() + self.limits.head_timeout
            while not (messages and messages[0].head_complete):
                data = await self._receive()
                if not data:
                    return None
                started = bool(messages)
                self._feed(data)
                if not started and messages:
                    scope.deadline = trio.current_time() + self.limits.head_timeout
        if scope.cancelled_caught:
            if not messages:
                return None
            raise _Closing(408, "Request headers took too long")
        return messages[0]

    async def read_body(self, message: _Message) -> None:
        """Read until more of `message`'s body has arrived."""
        if not self.continue_sent:
            self.continue_sent = True
            if message.expects_continue:
                await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.body_deadline = trio.current_time() + self.limits.body_timeout
        with trio.move_on_at(self.body_deadline) as slow:
            data = await self._receive()
        if slow.cancelled_caught:
            raise _Closing(408, "Request body took too long")
        if not data:
            raise ClientGone
        self._feed(data)

    async def wait_disconnect(self) -> None:
        while not self.eof:
            if len(self.messages) > _MAX_READ_AHEAD:
                # A flood of pipelined requests behind a streamed response: stop reading (which also
                # stops noticing a disconnect; a write that cannot finish still ends the stream).
                await trio.sleep_forever()
            data = await self._receive()
            if data:
                try:
                    self._feed(data)
                except _Closing:
                    # Garbage or a flood behind a streamed response: treat it as the client leaving.
                    self.closing = True
                    return

    # --- writing -------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        sock = self.sock
        sent = 0
        if sock is not None:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                pass
            except OSError:
                raise ClientGone from None
            if sent == len(data):
                return
        with trio.move_on_after(self.limits.send_timeout) as slow:
            try:
                if sock is None:
                    await self.stream.send_all(data)
                else:
                    await self._send_rest(sock, memoryview(data)[sent:])
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                raise ClientGone from None
        if slow.cancelled_caught:
            raise ClientGone

    def try_send(self, data: bytes) -> int:
        if self.sock is None:
            return 0
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ClientGone from None

    @staticmethod
    async def _send_rest(sock: socket.socket, rest: memoryview) -> None:
        while rest:
            await trio.lowlevel.wait_writable(sock)
            try:
                rest = rest[sock.send(rest) :]
            except BlockingIOError:
                continue

    # --- after each request ----------------------------------------------------------------

    def may_continue(self, message: _Message) -> bool:
        """Whether another request can follow this one on the connection, as far as its body goes.

        Not after a body over the limit (it is never read), nor when the
        client is still waiting for `100 Continue` before it sends the body:
        it was answered without it, and draining the body would mean sending
        the 100 after the final response.
        """
        if message.overflow:
            return False
        return message.complete or not message.expects_continue or self.continue_sent

    async def finish(self, message: _Message) -> bool:
        """Drop what is left of `message`'s body; whether the connection may serve another request."""
        if not message.keep_alive or self.closing or not self.may_continue(message):
            return False
        if not message.complete:
            # The handler did not read the whole body: read and drop it, within the limits.
            try:
                while not message.complete:
                    message.body.clear()
                    await self.read_body(message)
                    if message.overflow:
                        return False
            except (_Closing, ClientGone):
                return False
        self.messages.popleft()
        self.continue_sent = False
        return True


async def _refuse(conn: _Connection, status: int, message: str) -> None:
    body = b'{"error":"%b"}' % message.encode()
    head = b"".join(
        [
            _STATUS_LINES[status],
            b"content-type: application/json\r\n",
            _Clock.date(),
            _CLOSE,
            b"content-length: %d\r\n\r\n" % len(body),
        ]
    )
    try:
        await conn.send(head + body)
    except ClientGone:
        pass


def _only(exc: BaseException, kind: tuple[type[BaseException], ...]) -> bool:
    """Whether `exc` is `kind`, or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


async def serve_connection(stream: trio.abc.Stream, handler: RequestHandler, limits: HttpLimits) -> None:
    """Serve requests from `stream` until the client leaves or a limit is hit; closes the stream."""
    conn = _Connection(stream, limits)
    try:
        while True:
            request: Request | None = None
            try:
                message = await conn.next_message()
                if message is None:
                    return
                request = Request(conn, message)
                await handler(request)
                if not request.responded or not await conn.finish(message):
                    return
                # Reads and writes that did not have to wait did not yield: let others run, and notice
                # cancellation, between requests.
                await trio.lowlevel.checkpoint()
            except _Closing as closing:
                if closing.status is not None and (request is None or not request.started):
                    await _refuse(conn, closing.status, closing.message)
                return
            except BodyTooLarge:
                if request is not None and not request.started:
                    await _refuse(conn, 413, f"Request body too large: the limit is {limits.max_body} bytes.")
                return
            except Exception as exc:
                if _only(exc, (ClientGone, _Closing)):
                    return
                log.exception("[HTTP] Error while serving a request")
                if request is not None and not request.started:
                    await _refuse(conn, 500, "Internal server error")
                return
    finally:
        conn.close()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
