"""The cloud proxy, against a fake cloud API on 127.0.0.1 (trio sockets and h11)."""

from __future__ import annotations

import json
import socket
from functools import partial
from typing import Any

import httpx2
import pytest
import trio

from agentation_mcp.config import DEFAULT_CLOUD_URL, cloud_base_url
from agentation_mcp.errors import ConfigError
from agentation_mcp.web.asgi import Message
from agentation_mcp.web.cloud import proxy

from .receivers import fake_cloud

pytestmark = pytest.mark.anyio

WAIT = 10
KEY = "ag_test_key"
CORS = [(b"access-control-allow-origin", b"http://localhost:3000"), (b"vary", b"Origin")]


class Client:
    """The ASGI side: collects what `proxy` sends, and can hang up."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.hung_up = trio.Event()
        self._changed = trio.Event()

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    async def receive(self) -> Message:
        await self.hung_up.wait()
        return {"type": "http.disconnect"}

    async def wait_for(self, n: int) -> None:
        while len(self.messages) < n:
            self._changed = trio.Event()
            await self._changed.wait()

    @property
    def status(self) -> int:
        start = self.messages[0]
        assert start["type"] == "http.response.start"
        status: int = start["status"]
        return status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        assert all(m["type"] == "http.response.body" for m in self.messages[1:])
        assert not self.messages[-1].get("more_body", False)
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def call(
    cloud_url: str,
    method: str,
    path_and_query: str,
    *,
    content_type: str | None = None,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Client:
    client = Client()
    async with httpx2.AsyncClient() as http:
        with trio.fail_after(WAIT):
            await proxy(http, cloud_url, KEY, method, path_and_query, content_type, body, client.send, headers or [])
    return client


def test_the_base_url_is_the_hosted_api_unless_overridden() -> None:
    assert cloud_base_url({}) == DEFAULT_CLOUD_URL == "https://agentation-mcp-cloud.vercel.app/api"
    assert cloud_base_url({"AGENTATION_CLOUD_URL": "  "}) == DEFAULT_CLOUD_URL
    assert cloud_base_url({"AGENTATION_CLOUD_URL": " http://127.0.0.1:9999/api/ "}) == "http://127.0.0.1:9999/api"


@pytest.mark.parametrize("value", ["ftp://example.com/api", "localhost:9999", "http://", "https://h/api?x=1"])
def test_an_unusable_base_url_is_a_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match="AGENTATION_CLOUD_URL") as raised:
        cloud_base_url({"AGENTATION_CLOUD_URL": value})
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "PUT"])
async def test_a_request_with_a_body_is_forwarded_whole(method: str) -> None:
    payload = json.dumps({"comment": "Make it blue", "x": 1}).encode()
    async with fake_cloud() as cloud:
        client = await call(
            cloud.base_url,
            method,
            "/sessions/abc/annotations?x=1&y=a%20b",
            content_type="application/json",
            body=payload,
            headers=CORS,
        )
    (forwarded,) = cloud.requests
    assert forwarded.method == method
    assert forwarded.target == "/api/sessions/abc/annotations?x=1&y=a%20b"
    assert forwarded.headers["x-api-key"] == KEY
    assert forwarded.headers["content-type"] == "application/json"
    assert forwarded.body == payload
    assert client.status == 201
    assert client.headers == [(b"content-type", b"application/vnd.test+json; charset=utf-8"), *CORS]
    assert client.body == b'{"ok":true}'


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_get_and_head_forward_no_body(method: str) -> None:
    async with fake_cloud() as cloud:
        client = await call(cloud.base_url + "/", method, "/sessions", body=b"ignored", headers=CORS)
    (forwarded,) = cloud.requests
    assert (forwarded.method, forwarded.target, forwarded.body) == (method, "/api/sessions", b"")
    assert "content-length" not in forwarded.headers
    assert "content-type" not in forwarded.headers
    assert forwarded.headers["x-api-key"] == KEY
    assert client.status == 201
    assert client.headers == [(b"content-type", b"application/vnd.test+json; charset=utf-8"), *CORS]
    assert client.body == (b"" if method == "HEAD" else b'{"ok":true}')


@pytest.mark.parametrize("status", [400, 401, 404, 500])
async def test_the_upstream_status_and_body_are_relayed(status: int) -> None:
    async with fake_cloud() as cloud:
        client = await call(cloud.base_url, "GET", f"/status/{status}", headers=CORS)
    assert client.status == status
    assert client.headers == [(b"content-type", b"text/plain"), *CORS]
    assert client.body == b"upstream says no"


async def test_a_missing_upstream_content_type_is_sent_as_json() -> None:
    async with fake_cloud() as cloud:
        client = await call(cloud.base_url, "GET", "/untyped")
    assert client.headers == [(b"content-type", b"application/json")]
    assert client.body == b'{"untyped":true}'


async def test_an_event_stream_is_passed_through_chunk_by_chunk() -> None:
    chunks = [b": connected\n\n", b"event: annotation.created\nid: 1\ndata: {}\n\n", b"event: ping\ndata: 2\n\n"]
    client = Client()
    async with fake_cloud() as cloud, httpx2.AsyncClient() as http, trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            nursery.start_soon(
                partial(proxy, http, cloud.base_url, KEY, "GET", "/events?agent=true", None, b"", client.send, CORS)
            )
            await client.wait_for(1)
            assert client.status == 200
            assert client.headers == [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *CORS]
            send_chunk, _ = cloud.chunks
            for n, chunk in enumerate(chunks, start=2):
                await send_chunk.send(chunk)
                await client.wait_for(n)  # each chunk reaches the client before the next one leaves the cloud
                assert client.messages[-1] == {"type": "http.response.body", "body": chunk, "more_body": True}
            await send_chunk.aclose()
            await client.wait_for(len(chunks) + 2)
    assert client.body == b"".join(chunks)
    assert cloud.requests[0].target == "/api/events?agent=true"


async def test_a_client_hanging_up_ends_the_event_stream() -> None:
    client = Client()
    async with fake_cloud() as cloud, httpx2.AsyncClient() as http:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(
                        proxy,
                        http,
                        cloud.base_url,
                        KEY,
                        "GET",
                        "/events",
                        None,
                        b"",
                        client.send,
                        receive=client.receive,
                    )
                )
                await cloud.chunks[0].send(b": connected\n\n")
                await client.wait_for(2)
                client.hung_up.set()
            # the proxy has returned, though the cloud never ended the stream
    assert [m.get("body") for m in client.messages[1:]] == [b": connected\n\n"]


async def test_an_event_stream_that_breaks_is_ended_cleanly() -> None:
    async with fake_cloud() as cloud:
        client = await call(cloud.base_url, "GET", "/broken-stream")
    assert client.status == 200
    assert client.body == b"data: one\n\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_an_unreachable_cloud_is_a_502_without_internals() -> None:
    client = await call(
        f"http://127.0.0.1:{closed_port()}/api", "POST", "/sessions", content_type="application/json", headers=CORS
    )
    assert client.status == 502
    assert client.headers == [(b"content-type", b"application/json"), *CORS]
    error: dict[str, Any] = json.loads(client.body)
    assert list(error) == ["error"]
    assert error["error"].startswith("Cloud proxy error: ")
    assert len(error["error"]) > len("Cloud proxy error: ")
    for internal in ("Traceback", "ConnectError", "httpx", 'File "'):
        assert internal not in error["error"]
