"""Quick tool calls answered without the SDK's dispatch: the same bytes the SDK sends, and the same rules.

The comparison runs the SDK's own server in-process on memory streams, and
dumps each answer the way its stdio transport does, next to `DirectCalls`
answering the same call on the same store, for every handshake protocol
version.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from agentation_mcp.agent.direct_calls import CONNECTION_CLOSED, INTERNAL_ERROR, DirectCalls
from agentation_mcp.agent.handshake import VERSIONS
from agentation_mcp.agent.sdk_server import mcp_server_for
from agentation_mcp.agent.specs import SPEC_BY_NAME
from agentation_mcp.agent.tools import STRUCTURED_MAX_BYTES, Handler, build_handlers
from agentation_mcp.agent.write_order import Turn
from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.models import JsonObject

from .conftest import ANNOTATION, Store, running_writer
from .sdk_in_process import Exchange, exchanging_with

pytestmark = pytest.mark.anyio


def initialize(version: str, request_id: int = 0) -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


def call(request_id: int | str, name: str, arguments: Any = None, **params: Any) -> dict[str, Any]:
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, **params}}


def sdk_server(handlers: Mapping[str, Handler]) -> AbstractAsyncContextManager[Exchange]:
    """The SDK's server for `handlers`; each exchange returns the answer as its stdio transport writes it."""
    return exchanging_with(mcp_server_for(handlers))


@asynccontextmanager
async def direct_calls(handlers: Mapping[str, Handler], **kw: Any) -> AsyncIterator[tuple[DirectCalls, Exchange]]:
    """`DirectCalls` for `handlers`; an exchange returns the line it wrote, or None when it did not take the message."""
    direct = DirectCalls(handlers, **kw)
    lines_send, lines = trio.open_memory_channel[bytes](16)

    async def exchange(message: dict[str, Any]) -> bytes | None:
        if not direct.take(message):
            return None
        line = await lines.receive()
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        return line[:-1]

    async with trio.open_nursery() as nursery:
        direct.start(nursery, lines_send.send)
        yield direct, exchange
        direct.close()


async def fill(writer: Any) -> tuple[str, str]:
    """A session whose annotations exercise the JSON: non-ASCII and control text, fractions, nested data."""
    session = await writer.submit(CreateSession(url="http://localhost:3000/café"))
    body = {
        **ANNOTATION,
        "comment": 'Naïve "quote" \\ tab\t line\n bell\x07 \u2028 🎉',
        "x": 12.345678901234567,
        "y": 1e-7,
        "attributes": {"data-n": "1", "nested": {"list": [1, 2.5, None, True]}},
    }
    annotation = await writer.submit(CreateAnnotation.from_body(session["id"], body))
    await writer.submit(CreateAnnotation.from_body(session["id"], {**ANNOTATION, "comment": "second"}))
    return session["id"], annotation["id"]


def calls_to_compare(session_id: str, annotation_id: str) -> list[dict[str, Any]]:
    return [
        call(1, "agentation_list_sessions"),
        call(2, "agentation_list_sessions", {}),
        call("three", "agentation_get_session", {"sessionId": session_id}),
        call(4, "agentation_get_pending", {"sessionId": session_id, "limit": 1}),
        call(5, "agentation_get_all_pending", {}),
        call(6, "agentation_acknowledge", {"annotationId": annotation_id}),
        call(7, "agentation_reply", {"annotationId": annotation_id, "message": "On it ✓"}),
        call(8, "agentation_reply", {"annotationId": annotation_id, "message": ""}),
        call(9, "agentation_resolve", {"annotationId": "no-such-annotation"}),
        call(10, "agentation_acknowledge", {"annotationId": 42}),
        call(11, "agentation_get_session", {}),
        call(12, "agentation_get_all_pending", {"limit": -1}),
        call(13, "agentation_dismiss", {"annotationId": annotation_id, "reason": "Duplicate"}),
        call(14, "agentation_get_session", {"sessionId": session_id}, _meta={"progressToken": "p"}),
        call(2**53, "agentation_list_sessions", None, _meta={"progressToken": 7, "client/extra": {"a": 1}}),
    ]


def test_it_answers_every_handshake_version_the_sdk_speaks() -> None:
    assert set(HANDSHAKE_PROTOCOL_VERSIONS) == VERSIONS


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
async def test_every_direct_answer_is_the_line_the_sdk_would_have_sent(opened: Store, version: str) -> None:
    hub = opened.hub()
    with trio.fail_after(30):
        async with running_writer(opened, hub) as writer:
            handlers = build_handlers(writer, hub, opened.reader)
            session_id, annotation_id = await fill(writer)
            async with sdk_server(handlers) as sdk, direct_calls(handlers) as (direct, directly):
                handshake = await sdk(initialize(version))
                assert handshake is not None
                assert orjson.loads(handshake)["result"]["protocolVersion"] == version
                await sdk({"jsonrpc": "2.0", "method": "notifications/initialized"})
                direct.agree(version)
                for message in calls_to_compare(session_id, annotation_id):
                    # Each call goes to the SDK first and then directly; none of them answers with data the
                    # first run changes (a write answers with ids and texts, not with the stored row).
                    expected = await sdk(message)
                    got = await directly(message)
                    assert got is not None, f"not taken: {message}"
                    assert got == expected, message
                    assert (b'"structuredContent"' in got) == (b'"isError":false' in got)
                assert direct.taken == len(calls_to_compare(session_id, annotation_id))


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
QUICK_TOOLS = sorted(set(SPEC_BY_NAME) - {"agentation_watch_annotations"})
# Placeholders for the ids of what exists, so what is drawn does not depend on the store.
SESSION, ANNOTATION_ID = "<session>", "<annotation>"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_arguments_get_the_same_answer_directly_as_from_the_sdk(opened: Store, data: st.DataObject) -> None:
    hub = opened.hub()
    with trio.fail_after(30):
        async with running_writer(opened, hub) as writer:
            handlers = build_handlers(writer, hub, opened.reader)
            session_id, annotation_id = await fill(writer)
            real = {SESSION: session_id, ANNOTATION_ID: annotation_id}
            name = data.draw(st.sampled_from(QUICK_TOOLS), label="tool")
            keys = st.sampled_from(["annotationId", "sessionId", "summary", "reason", "message", "limit"]) | TEXT
            values = st.sampled_from([SESSION, ANNOTATION_ID]) | JSON_VALUES
            drawn = data.draw(st.dictionaries(keys, values, max_size=4), label="arguments")
            arguments = {k: real.get(v, v) if isinstance(v, str) else v for k, v in drawn.items()}
            request_id = data.draw(st.integers(min_value=-(2**53), max_value=2**53) | TEXT, label="id")
            message = call(request_id, name, arguments)
            async with sdk_server(handlers) as sdk, direct_calls(handlers) as (direct, directly):
                handshake = await sdk(initialize("2025-11-25"))
                assert handshake is not None
                direct.agree("2025-11-25")
                expected = await sdk(message)
                assert await directly(message) == expected


async def test_a_result_too_large_for_structured_content_is_the_same_line_too(opened: Store) -> None:
    hub = opened.hub()
    with trio.fail_after(30):
        async with running_writer(opened, hub) as writer:
            handlers = build_handlers(writer, hub, opened.reader)
            session_id, _ = await fill(writer)
            for i in range(300):
                body = {**ANNOTATION, "comment": f"{i} " + "é" * 1000}
                await writer.submit(CreateAnnotation.from_body(session_id, body))
            async with sdk_server(handlers) as sdk, direct_calls(handlers) as (direct, directly):
                handshake = await sdk(initialize("2025-11-25"))
                assert handshake is not None
                direct.agree("2025-11-25")
                message = call(1, "agentation_get_all_pending", {"limit": 1000})
                got = await directly(message)
                assert got is not None
                assert got == await sdk(message)
                assert len(got) > STRUCTURED_MAX_BYTES
                assert b'"structuredContent"' not in got


# Stand-in handlers take real tool names: the argument checks and the "Unknown tool" rule still apply.
QUICK = "agentation_list_sessions"
SLOW = "agentation_get_session"
BROKEN = "agentation_acknowledge"


async def quick(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
    return {"ok": True}


async def test_only_a_plain_tool_call_after_a_finished_handshake_is_taken() -> None:
    async def watch(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return {"watched": True}

    handlers: dict[str, Handler] = {QUICK: quick, "agentation_watch_annotations": watch}
    with trio.fail_after(10):
        async with direct_calls(handlers) as (direct, directly):
            assert await directly(call(1, QUICK)) is None, "taken before the handshake"
            assert not direct.take(initialize("2025-06-18", request_id=5)), "the handshake is not its to answer"
            direct.agree("2099-01-01")
            assert await directly(call(1, QUICK)) is None, "taken on a protocol version it does not know"
            direct.agree("2025-06-18")
            not_taken = [
                call(2, "agentation_watch_annotations"),
                call(3, "unknown_tool"),
                call(4, QUICK, [1, 2]),
                call(5, QUICK, "text"),
                call(6, QUICK, {}, task={"ttl": 1000}),
                call(7, QUICK, {}, _meta="text"),
                call(8, QUICK, {}, _meta={"progressToken": 1.5}),
                call(9, QUICK, {}, _meta={"progressToken": True}),
                call(10, QUICK, {}, _meta={"io.modelcontextprotocol/protocolVersion": "2026-07-28"}),
                {"jsonrpc": "2.0", "id": 11, "method": "tools/call"},
                {"jsonrpc": "2.0", "id": 12, "method": "tools/list"},
                {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": QUICK}},
                {"jsonrpc": "2.0", "id": 13, "method": "tools/call", "params": {"name": 7}},
            ]
            for message in not_taken:
                assert await directly(message) is None, message
            assert direct.taken == 0
            answer = await directly(call(14, QUICK, None, _meta={"progressToken": "t"}))
            assert answer is not None
            assert orjson.loads(answer) == {
                "jsonrpc": "2.0",
                "id": 14,
                "result": {
                    "content": [{"type": "text", "text": '{\n  "ok": true\n}'}],
                    "isError": False,
                    "structuredContent": {"ok": True},
                },
            }
            direct.agree(None)
            assert await directly(call(15, QUICK)) is None, "taken once the SDK owns the session"


async def test_a_call_the_client_cancels_is_never_answered_and_one_cut_off_by_stdin_closing_is() -> None:
    started: list[str] = []
    release = trio.Event()

    async def slow(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        started.append(args["sessionId"])
        await release.wait()
        return {"done": args["sessionId"]}

    lines_send, lines = trio.open_memory_channel[bytes](16)
    direct = DirectCalls({SLOW: slow})
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            direct.start(nursery, lines_send.send)
            direct.agree("2025-11-25")
            assert direct.take(call(1, SLOW, {"sessionId": "cancelled"}))
            assert direct.take(call("two", SLOW, {"sessionId": "cut off"}))
            assert not direct.take(call(1, SLOW, {"sessionId": "same id as one still running"}))
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(started) == ["cancelled", "cut off"]
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
            assert direct.take(cancel), "the cancellation of a call running here is taken"
            other = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
            assert not direct.take(other), "the SDK gets the cancellation of a call it runs"
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.WouldBlock):
                lines.receive_nowait()
            direct.close()
        answer = orjson.loads(await lines.receive())
        assert answer == {
            "jsonrpc": "2.0",
            "id": "two",
            "error": {"code": CONNECTION_CLOSED, "message": "Connection closed"},
        }
        with pytest.raises(trio.WouldBlock):
            lines.receive_nowait()


async def test_a_call_that_fails_unexpectedly_gets_an_internal_error_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        raise RuntimeError("secret internal detail")

    with trio.fail_after(10):
        async with direct_calls({BROKEN: broken, QUICK: quick}) as (direct, directly):
            direct.agree("2025-06-18")
            with caplog.at_level(logging.ERROR, logger="agentation_mcp"):
                answer = await directly(call(1, BROKEN, {"annotationId": "a"}))
            assert answer is not None
            assert b"secret" not in answer
            assert orjson.loads(answer)["error"] == {"code": INTERNAL_ERROR, "message": "Internal error"}
            assert "secret internal detail" in caplog.text
            assert await directly(call(2, QUICK)) is not None, "the next call is served"
