"""The ASGI app in-process, on trio's virtual clock: keep-alive pings and disconnects."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from agentation_mcp.access import AccessPolicy
from agentation_mcp.commands import CreateSession
from agentation_mcp.http_api import HttpApi, HttpOptions, url_host

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


async def test_sse_sends_a_ping_every_30_seconds_and_stops_on_disconnect(opened: Store) -> None:
    hub = opened.hub()
    sent: list[dict[str, Any]] = []
    disconnect = trio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async with running_writer(opened, hub) as writer:
        app = HttpApi(writer, hub, opened.reader, HttpOptions(policy=AccessPolicy("127.0.0.1")))
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/events",
            "raw_path": b"/events",
            "headers": [],
            "query_string": b"",
        }
        with trio.fail_after(200):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app, scope, receive, send)
                await trio.sleep(29.9)
                bodies = [m.get("body") for m in sent if m["type"] == "http.response.body"]
                assert bodies == [b": connected\n\n"]
                assert app.status()["activeListeners"] == 1
                await trio.sleep(0.2)
                await writer.submit(CreateSession(url="http://localhost:3000/"))
                await trio.sleep(30)
                disconnect.set()
    frames = [bytes(m["body"]) for m in sent if m["type"] == "http.response.body"]
    assert frames[1] == b": ping\n\n"
    assert frames[2].startswith(b"event: session.created\nid: 1\n")
    assert frames[3] == b": ping\n\n"
    assert len(frames) == 4
    assert sent[0]["status"] == 200
    assert app.status()["activeListeners"] == 0
