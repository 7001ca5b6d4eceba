"""Hostile and unusual clients against a real server on a real socket, on the real clock.

The server is `serve_http` in-process on 127.0.0.1 (port 0), over a real
SQLite store with the writer on its database thread; clients are raw trio
sockets sending raw bytes, so each test controls exactly what goes on the
wire: slow heads and bodies, oversized request lines, headers and bodies,
idle connections, hundreds of SSE streams, malformed requests, pipelining
and too many connections. Every wait is bounded; the timeouts are short
(about a second) so the whole file runs in seconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from agentation_mcp.web.wire import HttpLimits

from .conftest import InProcessServer, Store, serving_http

pytestmark = pytest.mark.anyio

MAX_BODY = 4096
LIMITS = HttpLimits(
    max_head=64 * 1024,
    max_body=MAX_BODY,
    idle_timeout=1.0,
    head_timeout=1.0,
    body_timeout=1.0,
    send_timeout=2.0,
)
MARGIN = 0.7  # how late after a timeout the server may act, on a busy 2-core machine
FAST = 0.5  # the bound on one /health round trip while a hostile client is at work
TOO_LARGE = f"Request body too large: the limit is {MAX_BODY} bytes."


# --- the server ------------------------------------------------------------------------------


@asynccontextmanager
async def http_server(opened: Store, *, max_connections: int = 1024) -> AsyncIterator[InProcessServer]:
    async with serving_http(opened, limits=LIMITS, max_connections=max_connections) as server:
        yield server


# --- the client --------------------------------------------------------------------------------


def get(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *extra, "", ""]
    return "\r\n".join(lines).encode()


def post_json(path: str, body: Any, *extra: str) -> bytes:
    raw = json.dumps(body).encode()
    return get(path, "Content-Type: application/json", f"Content-Length: {len(raw)}", *extra, method="POST") + raw


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A raw connection with a read buffer: responses are parsed by hand from what arrives."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.closed = False  # the server closed (or reset) the connection

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def receive_more(self) -> bool:
        """One read into the buffer; False once the server has closed the connection."""
        if self.closed:
            return False
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset by the server
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    async def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including `marker`, taken from the buffer."""
        while (at := self.buffer.find(marker)) < 0:
            if not await self.receive_more():
                raise AssertionError(f"closed before {marker!r}; got {bytes(self.buffer)!r}")
        end = at + len(marker)
        taken = bytes(self.buffer[:end])
        del self.buffer[:end]
        return taken

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self.receive_more():
                raise AssertionError(f"closed after {len(self.buffer)} of {size} bytes")
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes the connection."""
        while await self.receive_more():
            pass
        taken = bytes(self.buffer)
        self.buffer.clear()
        return taken

    async def response(self, *, head_only: bool = False) -> Response:
        """The next response; `head_only` for the answer to HEAD (and 1xx), which has no body."""
        head = (await self.read_until(b"\r\n\r\n"))[:-4].decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, status, reason = [*status_line.split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", status_line
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated header {name}"
            headers[name.lower()] = value.strip()
        if head_only:
            body = b""
        elif "content-length" in headers:
            body = await self.read_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._chunked()
        else:
            body = await self.read_to_eof()
        return Response(int(status), reason, headers, body)

    async def _chunked(self) -> bytes:
        pieces: list[bytes] = []
        while size := int((await self.read_until(b"\r\n"))[:-2], 16):
            pieces.append(await self.read_exactly(size))
            assert await self.read_exactly(2) == b"\r\n"
        assert await self.read_until(b"\r\n") == b"\r\n"
        return b"".join(pieces)

    async def request(self, data: bytes, *, head_only: bool = False) -> Response:
        await self.send(data)
        return await self.response(head_only=head_only)


@dataclass
class Exchange:
    """What a hostile client got: every byte until the server closed, and when it closed."""

    received: bytes
    took: float  # from the connection being open to the server closing it

    @property
    def status_line(self) -> bytes:
        return self.received.split(b"\r\n", 1)[0]

    def response(self) -> Response:
        head, _, body = self.received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _, status, reason = status_line.split(" ", 2)
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        return Response(int(status), reason, headers, body)


async def hostile(port: int, pieces: Sequence[tuple[float, bytes]], *, within: float) -> Exchange:
    """Send each piece after its delay while reading, until the server closes the connection.

    The sender stops quietly when the server has closed or reset the
    connection; reading fails the test unless the close comes within `within`
    seconds.
    """
    with trio.fail_after(within + 2):
        client = await Client.connect(port)
        start = trio.current_time()

        async def feed() -> None:
            try:
                for delay, data in pieces:
                    await trio.sleep(delay)
                    await client.send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            received = await client.read_to_eof()
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
        await client.aclose()
    assert took <= within, f"the server took {took:.2f} s to close (allowed {within} s); got {received[:200]!r}"
    return Exchange(received, took)


def trickle(data: bytes, every: float) -> list[tuple[float, bytes]]:
    """`data` one byte at a time, the first at once and then one per `every` seconds."""
    return [(0.0 if i == 0 else every, data[i : i + 1]) for i in range(len(data))]


@dataclass
class Probe:
    """Round-trip times of /health from a well-behaved client, taken while something else goes on."""

    times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, at_least: int) -> None:
        assert not self.failures, self.failures
        assert len(self.times) >= at_least, f"only {len(self.times)} /health requests were answered"
        assert max(self.times) < FAST, f"/health was slow: {[round(t, 3) for t in self.times]}"


async def health_once(port: int) -> float:
    """One /health round trip on a new connection; how long it took. Fails past `FAST`."""
    start = trio.current_time()
    with trio.fail_after(FAST):
        client = await Client.connect(port)
        try:
            response = await client.request(get("/health"))
        finally:
            await client.aclose()
    assert (response.status, response.json()) == (200, {"status": "ok", "mode": "local"})
    return trio.current_time() - start


@asynccontextmanager
async def liveness(port: int, every: float = 0.1) -> AsyncIterator[Probe]:
    """For the block: a /health request on a new connection every `every` seconds, timed."""
    probe = Probe()

    async def run() -> None:
        while True:
            start = trio.current_time()
            try:
                probe.times.append(await health_once(port))
            except (trio.TooSlowError, AssertionError, OSError) as exc:
                probe.failures.append(f"{type(exc).__name__}: {exc}")
                probe.times.append(trio.current_time() - start)
            await trio.sleep(every)  # pacing, so the probe itself is no flood

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        try:
            yield probe
        finally:
            nursery.cancel_scope.cancel()


async def status(port: int) -> dict[str, Any]:
    with trio.fail_after(2):
        client = await Client.connect(port)
        try:
            response = await client.request(get("/status"))
        finally:
            await client.aclose()
    assert response.status == 200
    result: dict[str, Any] = response.json()
    return result


def assert_refused(exchange: Exchange, status: int, error: str, *, says_close: bool = True) -> None:
    """A whole `{"error": ...}` answer with this status (saying `connection: close`), and nothing after it.

    That the connection was then closed is `hostile`'s job: it returns only once it was.
    """
    response = exchange.response()
    assert response.status == status, exchange.received[:300]
    if says_close:
        assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.body)
    assert response.json() == {"error": error}


# --- 1. slow request heads ----------------------------------------------------------------------


async def test_slowloris_head_gets_408_within_the_head_timeout_and_health_stays_fast(opened: Store) -> None:
    request = get("/health", "User-Agent: slowloris", "Accept: */*")
    async with http_server(opened) as server, liveness(server.port) as probe:
        # One byte every 0.3 s: the whole head would take 20 s; the server gives it 1 s.
        exchange = await hostile(server.port, trickle(request, 0.3), within=LIMITS.head_timeout + MARGIN)
    assert exchange.took >= LIMITS.head_timeout - 0.1
    assert_refused(exchange, 408, "Request headers took too long")
    probe.check(at_least=5)


# --- 2. oversized request lines and headers --------------------------------------------------------


async def test_oversized_request_line_and_headers_get_414_and_431(opened: Store) -> None:
    long_line = b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    one_big_header = get("/health", "X-Big: " + "b" * 100_000)
    many_headers = get("/health", *(f"X-Header-{i:05d}: {'c' * 40}" for i in range(2000)))
    assert len(many_headers) > 100_000
    async with http_server(opened) as server, liveness(server.port) as probe:
        results: dict[str, Exchange] = {}

        async def run(name: str, data: bytes) -> None:
            results[name] = await hostile(server.port, [(0.0, data)], within=MARGIN)

        async with trio.open_nursery() as nursery:
            for name, data in (("line", long_line), ("one", one_big_header), ("many", many_headers)):
                nursery.start_soon(run, name, data)
        with trio.fail_after(FAST * 2):
            await health_once(server.port)  # at least one probe after the floods too
    assert_refused(results["line"], 414, "Request line too long")
    assert_refused(results["one"], 431, "Request headers too large")
    assert_refused(results["many"], 431, "Request headers too large")
    probe.check(at_least=1)


# --- 3. slow request bodies -------------------------------------------------------------------------


async def test_unfinished_body_gets_408_after_the_body_timeout(opened: Store) -> None:
    head = (
        b"POST /sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    within = LIMITS.body_timeout + MARGIN
    async with http_server(opened) as server:
        results: dict[str, Exchange] = {}

        async def run(name: str, pieces: list[tuple[float, bytes]]) -> None:
            results[name] = await hostile(server.port, pieces, within=within)

        async with trio.open_nursery() as nursery:
            # The head, one byte of the body, then nothing.
            nursery.start_soon(run, "silent", [(0.0, head + b"{")])
            # The head, then the body a byte every 0.3 s: each byte must not restart the clock.
            nursery.start_soon(
                run, "trickle", [(0.0, head), *trickle(b'{"url": "http://localhost:3000/"' + b" " * 70, 0.3)]
            )
    for name in ("silent", "trickle"):
        exchange = results[name]
        assert exchange.took >= LIMITS.body_timeout - 0.1, name
        assert_refused(exchange, 408, "Request body took too long")


# --- 4. idle connections ----------------------------------------------------------------------------


async def test_idle_connections_are_closed_after_the_idle_timeout_without_a_byte(opened: Store) -> None:
    within = LIMITS.idle_timeout + MARGIN
    async with http_server(opened) as server:
        results: dict[str, Exchange] = {}
        kept: list[Response] = []

        async def silent() -> None:
            results["silent"] = await hostile(server.port, [], within=within)

        async def blank_lines() -> None:
            # Empty lines before a request are allowed, but they do not start one: the idle clock runs on.
            results["blank"] = await hostile(server.port, [(0.0, b"\r\n"), *[(0.3, b"\r\n")] * 10], within=within)

        async def after_a_request() -> None:
            with trio.fail_after(within + 2):
                client = await Client.connect(server.port)
                kept.append(await client.request(get("/health")))
                start = trio.current_time()
                rest = await client.read_to_eof()
                took = trio.current_time() - start
                await client.aclose()
            results["kept"] = Exchange(rest, took)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(silent)
            nursery.start_soon(blank_lines)
            nursery.start_soon(after_a_request)
    assert kept[0].status == 200
    assert kept[0].headers["connection"] == "keep-alive"
    assert kept[0].headers["keep-alive"] == "timeout=1"
    for name, exchange in results.items():
        assert exchange.received == b"", (name, exchange.received)
        assert LIMITS.idle_timeout - 0.1 <= exchange.took <= within, (name, exchange.took)


# --- 5. many SSE streams -------------------------------------------------------------------------------


async def test_300_idle_sse_streams_are_counted_fed_and_released(opened: Store) -> None:
    count = 300
    async with http_server(opened) as server:
        streams: list[Client] = []
        try:
            with trio.fail_after(15):
                for _ in range(count):
                    client = await Client.connect(server.port)
                    streams.append(client)
                    await client.send(get("/events"))
                for client in streams:
                    head = await client.read_until(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
                    assert b"content-type: text/event-stream\r\n" in head
                    assert b"transfer-encoding: chunked\r\n" in head
                    await client.read_until(b": connected\n\n")
            assert (await status(server.port))["activeListeners"] == count
            times = [await health_once(server.port) for _ in range(5)]
            assert max(times) < FAST, times

            # The streams are live: one new session reaches every one of them.
            with trio.fail_after(10):
                writer = await Client.connect(server.port)
                created = await writer.request(post_json("/sessions", {"url": "http://localhost:3000/"}))
                await writer.aclose()
                assert created.status == 201, created.body
                session_id = created.json()["id"]
                for client in streams:
                    frame = await client.read_until(b"\n\n\r\n")
                    assert b"event: session.created\n" in frame
                    assert session_id.encode() in frame
        finally:
            with trio.CancelScope(shield=True):
                for client in streams:
                    await client.aclose()

        # Closing them releases every listener: once the server's tasks have read the closes and are idle again.
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        assert server.api.listeners.count == 0
        assert (await status(server.port))["activeListeners"] == 0


# --- 6. bodies over the limit -------------------------------------------------------------------------


async def test_body_over_the_limit_gets_413_before_it_is_read(opened: Store) -> None:
    huge = get("/sessions", "Content-Type: application/json", "Content-Length: 100000000", method="POST")
    expecting = get(
        "/sessions",
        "Content-Type: application/json",
        "Content-Length: 100000000",
        "Expect: 100-continue",
        method="POST",
    )
    chunked_head = get("/sessions", "Content-Type: application/json", "Transfer-Encoding: chunked", method="POST")
    piece = b"%x\r\n%b\r\n" % (1000, b" " * 1000)
    async with http_server(opened) as server:
        # Content-Length over the limit and no body at all: the answer cannot have waited for it.
        exchange = await hostile(server.port, [(0.0, huge)], within=LIMITS.body_timeout - 0.3)
        assert_refused(exchange, 413, TOO_LARGE, says_close=False)
        # With Expect: 100-continue, the client is told 413 instead of being invited to send.
        exchange = await hostile(server.port, [(0.0, expecting)], within=LIMITS.body_timeout - 0.3)
        assert not exchange.received.startswith(b"HTTP/1.1 100")
        assert_refused(exchange, 413, TOO_LARGE, says_close=False)
        # A chunked body growing past the limit, a chunk at a time, never finished.
        pieces = [(0.0, chunked_head), *[(0.05, piece)] * (MAX_BODY // 1000 + 2)]
        exchange = await hostile(server.port, pieces, within=LIMITS.body_timeout - 0.1)
        assert_refused(exchange, 413, TOO_LARGE, says_close=False)
        # The same in one go, finished.
        whole = chunked_head + piece * (MAX_BODY // 1000 + 2) + b"0\r\n\r\n"
        exchange = await hostile(server.port, [(0.0, whole)], within=LIMITS.body_timeout - 0.3)
        assert_refused(exchange, 413, TOO_LARGE, says_close=False)
        # A body just within the limit is fine.
        body = json.dumps({"url": "http://localhost:3000/", "projectId": "p" * (MAX_BODY - 100)}).encode()
        assert len(body) <= MAX_BODY
        with trio.fail_after(5):
            client = await Client.connect(server.port)
            response = await client.request(
                get("/sessions", f"Content-Length: {len(body)}", method="POST") + body,
            )
            await client.aclose()
        assert response.status == 201, response.body


async def test_413_says_connection_close_since_the_connection_is_closed_after_it(opened: Store) -> None:
    """The server closes the connection after a 413 (it will not read the rest of the body); it must say so."""
    huge = get("/sessions", "Content-Type: application/json", "Content-Length: 100000000", method="POST")
    async with http_server(opened) as server:
        exchange = await hostile(server.port, [(0.0, huge)], within=LIMITS.body_timeout - 0.3)
    response = exchange.response()
    assert response.status == 413
    announced = {name: response.headers.get(name) for name in ("connection", "keep-alive")}
    assert announced == {"connection": "close", "keep-alive": None}


# --- 7. the protocol -------------------------------------------------------------------------------------


async def test_keep_alive_pipelining_chunked_head_and_expect_continue(opened: Store) -> None:
    async with http_server(opened) as server:
        with trio.fail_after(10):
            client = await Client.connect(server.port)
            # Keep-alive: several requests, one connection.
            for _ in range(5):
                response = await client.request(get("/health"))
                assert response.status == 200
                assert response.json() == {"status": "ok", "mode": "local"}
                assert response.headers["connection"] == "keep-alive"

            # Pipelining: three requests in one write, answered in order; the POST's body sits between them.
            await client.send(
                get("/health") + post_json("/sessions", {"url": "http://localhost:3000/piped"}) + get("/sessions")
            )
            first, second, third = [await client.response() for _ in range(3)]
            assert first.json() == {"status": "ok", "mode": "local"}
            assert second.status == 201
            assert second.json()["url"] == "http://localhost:3000/piped"
            assert third.status == 200
            assert [s["id"] for s in third.json()] == [second.json()["id"]]

            # A chunked request body, in uneven pieces.
            raw = json.dumps({"url": "http://localhost:3000/chunked"}).encode()
            await client.send(
                get("/sessions", "Content-Type: application/json", "Transfer-Encoding: chunked", method="POST")
                + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (raw[:1], raw[1:10], raw[10:]))
                + b"0\r\n\r\n"
            )
            response = await client.response()
            assert response.status == 201, response.body
            assert response.json()["url"] == "http://localhost:3000/chunked"

            # HEAD: the headers of GET, its Content-Length, and no body; the next request still works.
            head = await client.request(get("/health", method="HEAD"), head_only=True)
            assert head.status == 200
            assert head.headers["content-length"] == str(len(first.body))
            assert "transfer-encoding" not in head.headers
            response = await client.request(get("/health"))
            assert (response.status, response.body) == (200, first.body)

            # Expect: 100-continue: the interim answer comes before the body is sent.
            raw = json.dumps({"url": "http://localhost:3000/expect"}).encode()
            await client.send(
                get(
                    "/sessions",
                    "Content-Type: application/json",
                    f"Content-Length: {len(raw)}",
                    "Expect: 100-continue",
                    method="POST",
                )
            )
            interim = await client.response(head_only=True)
            assert (interim.status, interim.reason, interim.headers) == (100, "Continue", {})
            await client.send(raw)
            response = await client.response()
            assert response.status == 201, response.body
            assert response.json()["url"] == "http://localhost:3000/expect"

            # Still the same connection, still alive.
            assert (await client.request(get("/health"))).status == 200
            await client.aclose()


async def test_a_long_pipeline_is_answered_in_full_and_in_order(opened: Store) -> None:
    async with http_server(opened) as server:
        with trio.fail_after(10):
            client = await Client.connect(server.port)
            urls = [f"http://localhost:3000/{i}" for i in range(200)]
            await client.send(b"".join(post_json("/sessions", {"url": url}) for url in urls) + get("/sessions"))
            created = [await client.response() for _ in urls]
            assert [r.status for r in created] == [201] * len(urls)
            assert [r.json()["url"] for r in created] == urls
            listed = await client.response()
            await client.aclose()
            assert [s["id"] for s in listed.json()] == [r.json()["id"] for r in reversed(created)]


async def test_no_100_continue_after_the_final_response(opened: Store) -> None:
    """A request with `Expect: 100-continue` answered without its body being read (here a 404).

    The client may then send the body anyway and go on with its next request;
    the server may read and drop that body, or close the connection, but an
    interim `100 Continue` after the final response would be read as part of
    the answer to the next request.
    """
    refused = get("/nope", "Content-Length: 5", "Expect: 100-continue", method="POST")
    async with http_server(opened) as server:
        with trio.fail_after(LIMITS.idle_timeout + MARGIN + 2):
            client = await Client.connect(server.port)
            response = await client.request(refused)
            assert (response.status, response.json()) == (404, {"error": "Not found"})
            await client.send(b"hello" + get("/health"))
            health = b'{"status":"ok","mode":"local"}'
            while health not in client.buffer and await client.receive_more():
                pass
            await client.aclose()
    after = bytes(client.buffer)
    assert b"HTTP/1.1 100" not in after, after[:200]
    assert after == b"" or after.startswith(b"HTTP/1.1 200 OK\r\n"), after[:200]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n", id="version-9.9"),
        pytest.param(b"get /health HTTP/1.1\r\nHost: localhost\r\n\r\n", id="lowercase-method"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)), id="tls-hello"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n", id="space-in-name"),
        pytest.param(
            b"POST /sessions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            id="two-content-lengths",
        ),
        pytest.param(
            b"POST /sessions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"
        ),
    ],
)
async def test_malformed_requests_get_400_and_a_closed_connection(opened: Store, data: bytes) -> None:
    async with http_server(opened) as server:
        exchange = await hostile(server.port, [(0.0, data)], within=MARGIN)
        assert_refused(exchange, 400, "Bad request")
        await health_once(server.port)


# --- 8. too many connections -------------------------------------------------------------------------------


async def test_connections_past_the_limit_get_503_and_the_others_keep_working(opened: Store) -> None:
    async with http_server(opened, max_connections=5) as server:
        with trio.fail_after(10):
            clients = [await Client.connect(server.port) for _ in range(5)]
            for client in clients:  # answered, so each is being served (and counted)
                assert (await client.request(get("/health"))).status == 200

            sixth = await hostile(server.port, [(0.0, get("/health"))], within=MARGIN)
            response = sixth.response()
            assert (response.status, response.headers["connection"]) == (503, "close")
            assert response.json() == {"error": "Too many connections; retry soon"}
            assert int(response.headers["content-length"]) == len(response.body)

            for client in clients:
                assert (await client.request(get("/health"))).status == 200

            # One leaves: a new connection gets its place once the server has read the close and let go of it.
            await clients.pop().aclose()
            await trio.testing.wait_all_tasks_blocked()
            late = await Client.connect(server.port)
            assert (await late.request(get("/health"))).status == 200
            clients.append(late)
            for client in clients:
                assert (await client.request(get("/health"))).status == 200
                await client.aclose()
