"""The HTTP API in-process, on trio's virtual clock: real HTTP bytes over an in-memory stream.

Keep-alive pings of SSE streams and the connection timeouts are checked here
without waiting for them in real time.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from agentation_mcp.agent.http import build_http_mcp
from agentation_mcp.commands import CreateSession
from agentation_mcp.web.access import AccessPolicy
from agentation_mcp.web.api import HttpApi, HttpOptions
from agentation_mcp.web.asgi import Mount
from agentation_mcp.web.sse import url_host
from agentation_mcp.web.wire import HttpLimits, serve_connection

from .conftest import Store, running_writer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def test_url_host_is_what_javascript_reports() -> None:
    assert url_host("http://localhost:3000/app?x=1") == "localhost:3000"
    assert url_host("https://example.com:443/") == "example.com"
    assert url_host("http://[::1]:8080/") == "[::1]:8080"
    assert url_host("not a url") is None
    assert url_host(None) is None


async def _read_all(stream: trio.abc.Stream, into: bytearray) -> None:
    while data := await stream.receive_some(65536):
        into += data


def _chunks(raw: bytes) -> list[bytes]:
    """The pieces of a chunked body that follows the head in `raw`."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    pieces: list[bytes] = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(rest[:size])
        body = rest[size + 2 :]
    return pieces


async def test_sse_sends_a_ping_every_30_seconds_and_stops_on_disconnect(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        api = HttpApi(writer, hub, opened.reader, HttpOptions(policy=AccessPolicy("127.0.0.1")))
        client, server = trio.testing.memory_stream_pair()
        received = bytearray()
        with trio.fail_after(200):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, server, api, HttpLimits())
                nursery.start_soon(_read_all, client, received)
                await client.send_all(b"GET /events HTTP/1.1\r\nHost: localhost:4747\r\n\r\n")
                await trio.sleep(29.9)
                assert _chunks(bytes(received)) == [b": connected\n\n"]
                assert api.status()["activeListeners"] == 1
                await trio.sleep(0.2)
                await writer.submit(CreateSession(url="http://localhost:3000/"))
                await trio.sleep(30)
                await client.send_eof()
                await trio.sleep(1)
                assert api.status()["activeListeners"] == 0
                nursery.cancel_scope.cancel()
    head = bytes(received).split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: text/event-stream" in head
    assert b"transfer-encoding: chunked" in head
    frames = _chunks(bytes(received))
    assert frames[1] == b": ping\n\n"
    assert frames[2].startswith(b"event: session.created\nid: 1\n")
    assert frames[3] == b": ping\n\n"
    assert len(frames) == 4


async def _exchange(api: HttpApi, limits: HttpLimits, *sends: tuple[float, bytes]) -> tuple[bytes, float]:
    """Send each piece after its delay; everything the server wrote, and when it closed the connection."""
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve_connection, server, api, limits))

        async def feed() -> None:
            for delay, data in sends:
                await trio.sleep(delay)
                try:
                    await client.send_all(data)
                except trio.BrokenResourceError:
                    return

        nursery.start_soon(feed)
        await _read_all(client, received)
        nursery.cancel_scope.cancel()
    return bytes(received), trio.current_time() - start


async def test_slow_and_idle_clients_are_cut_off_by_the_clock(opened: Store) -> None:
    hub = opened.hub()
    limits = HttpLimits(idle_timeout=5, head_timeout=10, body_timeout=30)
    async with running_writer(opened, hub) as writer:
        api = HttpApi(writer, hub, opened.reader, HttpOptions(policy=AccessPolicy("127.0.0.1")))
        with trio.fail_after(500):
            # Connected and silent: closed after the idle timeout, without an answer.
            out, took = await _exchange(api, limits)
            assert (out, took) == (b"", 5)
            # One byte a second of a request head: 408 when the head timeout runs out.
            request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
            out, took = await _exchange(api, limits, *((1.0, request[i : i + 1]) for i in range(len(request) - 3)))
            assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert took == pytest.approx(11, abs=1.01)
            # Complete headers, then a body that never finishes: 408 after the body timeout.
            head = b"POST /sessions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"
            out, took = await _exchange(api, limits, (0, head), (1000, b"}"))
            assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert took == pytest.approx(30, abs=0.01)
            # Keep-alive: an answered request, then silence: closed after the idle timeout.
            out, took = await _exchange(api, limits, (0, request))
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"keep-alive: timeout=5" in out
            assert took == pytest.approx(5, abs=0.01)


CLIENT = {"name": "test", "version": "1"}


async def test_idle_mcp_sessions_expire_after_the_idle_time(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        mcp_app, manager = build_http_mcp(writer, hub, opened.reader, idle_timeout=60)
        options = HttpOptions(policy=AccessPolicy("127.0.0.1"), mcp=Mount(mcp_app, json_rpc=True))
        api = HttpApi(writer, hub, opened.reader, options)

        async def post(message: dict[str, Any], session_id: str | None = None) -> tuple[int, dict[str, str]]:
            body = json.dumps(message).encode()
            lines = [
                "POST /mcp HTTP/1.1",
                "Host: localhost",
                "Connection: close",
                "Content-Type: application/json",
                "Accept: application/json, text/event-stream",
                f"Content-Length: {len(body)}",
            ]
            if session_id is not None:
                lines += [f"Mcp-Session-Id: {session_id}", "Mcp-Protocol-Version: 2025-06-18"]
            out, _ = await _exchange(api, HttpLimits(), (0, "\r\n".join([*lines, "", ""]).encode() + body))
            head = out.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in head[1:])
            return int(head[0].split(" ")[1]), headers

        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        with trio.fail_after(1000):
            async with manager.run():
                status, headers = await post(initialize)
                assert status == 200
                session_id = headers["mcp-session-id"]
                await trio.sleep(50)
                assert (await post(ping, session_id))[0] == 200  # in use: the idle time starts again
                await trio.sleep(50)
                assert (await post(ping, session_id))[0] == 200
                await trio.sleep(61)
                assert (await post(ping, session_id))[0] == 404
