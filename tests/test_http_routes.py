"""The HTTP routes against generated hostile input, in-process on a real loopback socket.

Whatever the body or a header holds (any JSON, text with lone surrogates and
control characters, huge and negative numbers, nesting thousands deep, raw
bytes), the answer is never a 500 and never shows internals, and a refused
request leaves everything stored as it was.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import reads

from .conftest import ANNOTATION, InProcessServer, Store, serving_http

pytestmark = pytest.mark.anyio

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)
NUMBERS = st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.sampled_from([2**63, -1])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "comment",
        "element",
        "elementPath",
        "x",
        "y",
        "timestamp",
        "status",
        "intent",
        "severity",
        "url",
        "role",
        "content",
        "output",
        "boundingBox",
        "thread",
        "attributes",
        "resolvedBy",
        "kind",
        "placement",
        "projectId",
    ]
)
INTERNALS = ("Traceback", "apsw", "sqlite", "Internal server error", "object at 0x", "Error(", "KeyError", "TypeError")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bodies() -> st.SearchStrategy[bytes]:
    """Request bodies: annotation-like objects with wild values, any JSON, deep nesting, raw bytes."""
    like_an_annotation = st.dictionaries(FIELDS | ANY_TEXT, JSON_VALUES, max_size=6).map(
        lambda extra: {**ANNOTATION, **extra}
    )
    as_json = (like_an_annotation | JSON_VALUES).map(lambda value: json.dumps(value).encode())
    deep = st.integers(min_value=500, max_value=20_000).map(lambda n: b'{"comment":' + b"[" * n + b"]" * n + b"}")
    return as_json | deep | st.binary(max_size=200)


ROUTES = [
    ("POST", "/sessions"),
    ("GET", "/sessions/{session}"),
    ("POST", "/sessions/{session}/annotations"),
    ("POST", "/sessions/{session}/action"),
    ("GET", "/annotations/{annotation}"),
    ("PATCH", "/annotations/{annotation}"),
    ("POST", "/annotations/{annotation}/thread"),
    ("DELETE", "/annotations/{annotation}"),
    ("POST", "/mcp"),
]


def snapshot(st_: Store) -> list[Any]:
    tables = ("sessions", "annotations", "events", "event_sequence")
    return [list(st_.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")) for table in tables]


async def seeded(st_: Store, server: InProcessServer) -> dict[str, str]:
    if not reads.list_sessions(st_.reader):
        session = await server.writer.submit(CreateSession(url="http://localhost:3000/"))
        await server.writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
    session_id = reads.list_sessions(st_.reader)[0]["id"]
    annotations = reads.pending_annotations(st_.reader)
    return {"session": session_id, "annotation": annotations[0]["id"] if annotations else "gone"}


def assert_clean(status: int, text: str) -> None:
    assert status < 500, text
    assert not any(marker in text for marker in INTERNALS), text


@SETTINGS
@given(data=st.data())
async def test_no_body_gets_a_500_and_a_refused_one_changes_nothing(opened: Store, data: st.DataObject) -> None:
    async with serving_http(opened) as server, httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        ids = await seeded(opened, server)
        method, template = data.draw(st.sampled_from(ROUTES), label="route")
        path = (
            template.format(**ids)
            if data.draw(st.booleans(), label="known ids")
            else template.format(session="nope", annotation="nope")
        )
        body = data.draw(_bodies(), label="body")
        headers = {"Content-Type": "application/json"}
        if path == "/mcp":
            headers["Accept"] = "application/json, text/event-stream"
        before = snapshot(opened)
        with trio.fail_after(10):
            response = await http.request(method, path, content=body, headers=headers)
        assert_clean(response.status_code, response.text)
        if response.status_code >= 400:
            assert snapshot(opened) == before, f"{method} {path} was refused but changed the store"


HEADER_NAMES = st.sampled_from(
    [
        "Origin",
        "Host",
        "Last-Event-ID",
        "Sec-Fetch-Site",
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Expect",
        "Access-Control-Request-Method",
        "Access-Control-Request-Headers",
        "X-Agentation-Key",
        "Accept",
        "Connection",
    ]
)
HEADER_VALUES = (
    st.binary(max_size=80).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
    | st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode())
    | st.sampled_from([b"9" * 400, b"-1", b"cross-site", b"http://evil.example", b"null", b"chunked"])
)


async def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` on a fresh connection; the status and head of the answer (status 0: closed without one)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            received += chunk
    if not received:
        return 0, b""
    status_line = received.split(b"\r\n", 1)[0]
    return int(status_line.split(b" ")[1]), received


@SETTINGS
@given(data=st.data())
async def test_no_header_value_gets_a_500_and_a_refused_request_changes_nothing(
    opened: Store, data: st.DataObject
) -> None:
    async with serving_http(opened) as server:
        ids = await seeded(opened, server)
        method, path, body = data.draw(
            st.sampled_from(
                [
                    ("GET", "/sessions", b""),
                    ("GET", "/pending", b""),
                    ("GET", "/events", b""),
                    ("GET", f"/sessions/{ids['session']}/events", b""),
                    ("OPTIONS", "/sessions", b""),
                    ("POST", "/sessions", json.dumps({"url": "http://localhost:3000/"}).encode()),
                    ("PATCH", f"/annotations/{ids['annotation']}", b'{"comment": "changed"}'),
                ]
            ),
            label="request",
        )
        extra = data.draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), min_size=1, max_size=3), label="headers")
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: localhost"]
        if body:
            head += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
        head += [name.encode() + b": " + value for name, value in extra]
        request = b"\r\n".join(head) + b"\r\n\r\n" + body
        before = snapshot(opened)
        with trio.fail_after(10):
            status, answer = await _exchange(server.port, request)
        assert_clean(status, answer.decode("latin-1"))
        if status == 0 or status >= 400:
            assert snapshot(opened) == before


def test_the_snapshot_sees_every_table_a_write_touches(opened: Store) -> None:
    """The check the properties rely on: a write shows in the snapshot."""
    before = snapshot(opened)
    with opened.conn:
        opened.conn.execute("UPDATE event_sequence SET value = value + 1")
    assert snapshot(opened) != before
