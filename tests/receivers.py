"""Local stand-ins for the services the server talks to: a webhook receiver and the cloud API.

Each is a small HTTP server on 127.0.0.1 (through `conftest.loopback_server`)
that records what reached it and answers as a test asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from .conftest import loopback_server, read_h11_request


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # trio.current_time() on arrival


class Receiver:
    """Answers by path:

    * `/status/<code>[?retry_after=<value>]`: that status, with that Retry-After;
    * `/flaky/<n>`: 500 for the first n requests, then 200;
    * `/slow`: never answers;
    * `/gate`: 200 once `gate` is set.
    """

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Received] = []
        self.gate = trio.Event()
        self._changed = trio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, n: int) -> None:
        while len(self.requests) < n:
            self._changed = trio.Event()
            await self._changed.wait()

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            received = await read_h11_request(conn, stream)
            if received is None:
                return
            request, body = received
            target = request.target.decode()
            headers = {name.decode(): value.decode() for name, value in request.headers}
            self.requests.append(Received(target, headers, body, trio.current_time()))
            self._changed.set()
            status, extra = await self._answer(target)
            content = b"" if status in (204, 304) else b"{}"
            length = [] if status in (204, 304) else [("content-length", str(len(content)))]
            for event in (
                h11.Response(status_code=status, headers=[*length, ("connection", "close"), *extra]),
                h11.Data(data=content),
                h11.EndOfMessage(),
            ):
                data = conn.send(event)
                assert data is not None
                await stream.send_all(data)
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the sender gave up on us
        finally:
            await stream.aclose()

    async def _answer(self, target: str) -> tuple[int, list[tuple[str, str]]]:
        parts = urlsplit(target)
        name, _, arg = parts.path.strip("/").partition("/")
        if name == "status":
            extra = [("retry-after", value) for value in parse_qs(parts.query).get("retry_after", [])]
            return int(arg), extra
        if name == "flaky":
            return (500 if len(self.to(target)) <= int(arg) else 200), []
        if name == "gate":
            await self.gate.wait()
            return 200, []
        await trio.sleep_forever()
        raise AssertionError("unreachable")


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    async with loopback_server(r.handle) as r.port:
        yield r


@dataclass(frozen=True)
class Forwarded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeCloud:
    """Answers by path under `/api`:

    * `/api/events`: an event stream whose chunks go out one by one, each when
      the test puts it on `chunks`; closing `chunks` ends the stream;
    * `/api/broken-stream`: one event, then the connection drops mid-stream;
    * `/api/status/<code>`: that status, `text/plain`;
    * `/api/untyped`: 200 without a Content-Type;
    * anything else: 201 `application/vnd.test+json` with a small body.
    """

    port: int = 0
    requests: list[Forwarded] = field(default_factory=list)
    chunks: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = field(
        default_factory=lambda: trio.open_memory_channel[bytes](0)
    )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)

        async def send(event: h11.Event) -> None:
            data = conn.send(event)
            assert data is not None
            await stream.send_all(data)

        try:
            received = await read_h11_request(conn, stream)
            if received is None:
                return
            request, body = received
            method, target = request.method.decode(), request.target.decode()
            headers = {name.decode(): value.decode() for name, value in request.headers}
            self.requests.append(Forwarded(method, target, headers, body))
            path = target.partition("?")[0]
            if path == "/api/events":
                await send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")]))
                async for chunk in self.chunks[1]:
                    await send(h11.Data(data=chunk))
                await send(h11.EndOfMessage())
            elif path == "/api/broken-stream":
                await send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")]))
                await send(h11.Data(data=b"data: one\n\n"))
            else:
                status, headers_out, content = self._answer(path)
                await send(
                    h11.Response(status_code=status, headers=[("content-length", str(len(content))), *headers_out])
                )
                if method != "HEAD":
                    await send(h11.Data(data=content))
                await send(h11.EndOfMessage())
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    @staticmethod
    def _answer(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.startswith("/api/status/"):
            return int(path.rsplit("/", 1)[1]), [("content-type", "text/plain")], b"upstream says no"
        if path == "/api/untyped":
            return 200, [], b'{"untyped":true}'
        return 201, [("content-type", "application/vnd.test+json; charset=utf-8")], b'{"ok":true}'


@asynccontextmanager
async def fake_cloud() -> AsyncIterator[FakeCloud]:
    cloud = FakeCloud()
    async with loopback_server(cloud.handle) as cloud.port:
        yield cloud
