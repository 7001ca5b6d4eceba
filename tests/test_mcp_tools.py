"""The MCP tools: through the real `agentation-mcp server` process and the `mcp` SDK's stdio client, and
in-process for generated hostile arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client

from agentation_mcp.agent.sdk_server import build_mcp_server, tool_result
from agentation_mcp.agent.tools import STRUCTURED_MAX_BYTES, build_handlers, call_tool
from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import reads

from .conftest import (
    ANNOTATION,
    Store,
    commit_to_file,
    mcp_client,
    running_writer,
    tool_json,
    tool_text,
    wait_for_file,
)

pytestmark = pytest.mark.anyio

EXPECTED_SCHEMAS = {
    "agentation_list_sessions": ({}, []),
    "agentation_get_session": ({"sessionId": "string"}, ["sessionId"]),
    "agentation_get_pending": ({"sessionId": "string"}, ["sessionId"]),
    "agentation_get_all_pending": ({}, []),
    "agentation_acknowledge": ({"annotationId": "string"}, ["annotationId"]),
    "agentation_resolve": ({"annotationId": "string", "summary": "string"}, ["annotationId"]),
    "agentation_dismiss": ({"annotationId": "string", "reason": "string"}, ["annotationId", "reason"]),
    "agentation_reply": ({"annotationId": "string", "message": "string"}, ["annotationId", "message"]),
    "agentation_watch_annotations": (
        {"sessionId": "string", "batchWindowSeconds": "number", "timeoutSeconds": "number"},
        [],
    ),
}


LIMITED = {"agentation_get_pending", "agentation_get_all_pending"}


async def test_tools_list_matches_the_reference_schemas(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with mcp_client(tmp_path) as client:
            tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == list(EXPECTED_SCHEMAS)
    for tool in tools:
        properties, required = EXPECTED_SCHEMAS[tool.name]
        assert tool.input_schema["type"] == "object"
        ours = {k: v["type"] for k, v in tool.input_schema["properties"].items()}
        # The reference's arguments, with their names, types and required list; ours adds only optional ones.
        assert {k: ours[k] for k in properties} == properties
        assert set(ours) - set(properties) == ({"limit", "after"} if tool.name in LIMITED else set())
        assert tool.input_schema["required"] == required
        assert all(v["description"] for v in tool.input_schema["properties"].values())
        assert tool.description
        assert tool.annotations is not None
    by_name = {t.name: t for t in tools}
    assert by_name["agentation_get_all_pending"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert by_name["agentation_acknowledge"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert "sourceFile" in (by_name["agentation_get_pending"].description or "")
    assert "placement" in (by_name["agentation_get_all_pending"].description or "")


async def test_every_tool_against_a_real_store(tmp_path: Path) -> None:
    session = commit_to_file(tmp_path, CreateSession(url="http://localhost:3000/app", project_id="p"))
    sid = session["id"]
    feedback = commit_to_file(
        tmp_path,
        CreateAnnotation.from_body(
            sid,
            {**ANNOTATION, "sourceFile": "src/a.tsx:3", "attributes": {"role": "button"}, "intent": "change"},
        ),
    )
    placement = commit_to_file(
        tmp_path,
        CreateAnnotation.from_body(
            sid,
            {
                **ANNOTATION,
                "timestamp": ANNOTATION["timestamp"] + 1,
                "kind": "placement",
                "placement": {"componentType": "Card"},
            },
        ),
    )
    with trio.fail_after(60):
        async with mcp_client(tmp_path) as client:
            listed = await client.call_tool("agentation_list_sessions", {})
            assert tool_text(listed) == json.dumps(
                {
                    "sessions": [
                        {
                            "id": sid,
                            "url": "http://localhost:3000/app",
                            "status": "active",
                            "createdAt": session["createdAt"],
                        }
                    ]
                },
                indent=2,
            )
            assert listed.structured_content == json.loads(tool_text(listed))

            got = tool_json(await client.call_tool("agentation_get_session", {"sessionId": sid}))
            assert got["projectId"] == "p"
            assert [a["id"] for a in got["annotations"]] == [feedback["id"], placement["id"]]

            pending = tool_json(await client.call_tool("agentation_get_pending", {"sessionId": sid}))
            assert pending["count"] == 2
            first = pending["annotations"][0]
            assert list(first) == [
                "id", "kind", "comment", "element", "elementPath", "url", "intent", "severity",
                "timestamp", "nearbyText", "reactComponents", "sourceFile", "attributes",
            ]  # fmt: skip
            assert first["sourceFile"] == "src/a.tsx:3"
            assert first["url"] is None
            assert pending["annotations"][1]["placement"] == {"componentType": "Card"}
            assert tool_json(await client.call_tool("agentation_get_all_pending", {})) == pending
            assert tool_json(await client.call_tool("agentation_get_pending", {"sessionId": "nope"})) == {
                "count": 0,
                "annotations": [],
            }

            watched = tool_json(await client.call_tool("agentation_watch_annotations", {"sessionId": sid}))
            assert watched == {
                "timeout": False,
                "count": 2,
                "sessions": [sid],
                "annotations": pending["annotations"],
            }

            fid, pid = feedback["id"], placement["id"]
            assert tool_json(await client.call_tool("agentation_acknowledge", {"annotationId": fid})) == {
                "acknowledged": True,
                "annotationId": fid,
            }
            assert tool_json(await client.call_tool("agentation_reply", {"annotationId": fid, "message": "On it"})) == {
                "replied": True,
                "annotationId": fid,
                "message": "On it",
            }
            resolved = await client.call_tool("agentation_resolve", {"annotationId": fid, "summary": "Made it blue"})
            assert tool_text(resolved) == json.dumps(
                {"resolved": True, "annotationId": fid, "summary": "Made it blue"}, indent=2
            )
            assert tool_json(
                await client.call_tool("agentation_dismiss", {"annotationId": pid, "reason": "Not now"})
            ) == {
                "dismissed": True,
                "annotationId": pid,
                "reason": "Not now",
            }
            after = tool_json(await client.call_tool("agentation_get_session", {"sessionId": sid}))
    done = {a["id"]: a for a in after["annotations"]}
    assert done[fid]["status"] == "resolved"
    assert done[fid]["resolvedBy"] == "agent"
    assert done[fid]["resolvedAt"] is not None
    assert [(m["role"], m["content"]) for m in done[fid]["thread"]] == [
        ("agent", "On it"),
        ("agent", "Resolved: Made it blue"),
    ]
    assert done[pid]["status"] == "dismissed"
    assert done[pid]["thread"][0]["content"] == "Dismissed: Not now"


def _zod(path: str, expected: str, received: str) -> str:
    message = "Required" if received == "undefined" else f"Expected {expected}, received {received}"
    return json.dumps(
        [
            {
                "code": "invalid_type",
                "expected": expected,
                "received": received,
                "path": [path],
                "message": message,
            }
        ],
        indent=2,
    )


async def test_error_texts_match_the_reference(tmp_path: Path) -> None:
    cases: list[tuple[str, dict[str, Any] | None, str]] = [
        ("agentation_get_session", {"sessionId": "nope"}, "Session not found: nope"),
        ("agentation_acknowledge", {"annotationId": "nope"}, "Annotation not found: nope"),
        ("agentation_resolve", {"annotationId": "nope", "summary": "s"}, "Annotation not found: nope"),
        ("agentation_dismiss", {"annotationId": "nope", "reason": "r"}, "Annotation not found: nope"),
        ("agentation_reply", {"annotationId": "nope", "message": "m"}, "Annotation not found: nope"),
        ("agentation_unknown_tool", {}, "Unknown tool: agentation_unknown_tool"),
        ("agentation_get_session", {}, _zod("sessionId", "string", "undefined")),
        ("agentation_dismiss", {"annotationId": "x"}, _zod("reason", "string", "undefined")),
        ("agentation_get_pending", {"sessionId": 5}, _zod("sessionId", "string", "number")),
        (
            "agentation_watch_annotations",
            {"batchWindowSeconds": "5"},
            _zod("batchWindowSeconds", "number", "string"),
        ),
        ("agentation_watch_annotations", {"sessionId": "nope"}, "Session not found: nope"),
    ]
    with trio.fail_after(30):
        async with mcp_client(tmp_path) as client:
            for name, args, text in cases:
                result = await client.call_tool(name, args)
                assert result.is_error, name
                assert tool_text(result) == text


async def test_watch_wakes_on_a_commit_from_another_process(tmp_path: Path) -> None:
    session = commit_to_file(tmp_path, CreateSession(url="http://localhost:3000/"))
    stderr = tmp_path / "server.log"
    with trio.fail_after(30), stderr.open("w", encoding="utf-8") as errlog:
        async with mcp_client(tmp_path, errlog=errlog) as client:
            result: dict[str, Any] = {}

            async def watch() -> None:
                args = {"batchWindowSeconds": 1, "timeoutSeconds": 20}
                result.update(tool_json(await client.call_tool("agentation_watch_annotations", args)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                # Written only once the watch has found nothing pending and waits: the live path.
                await wait_for_file(stderr, lambda text: "Watching for new annotations" in text or None)
                created = commit_to_file(tmp_path, CreateAnnotation.from_body(session["id"], ANNOTATION))
    assert result["timeout"] is False
    assert [a["id"] for a in result["annotations"]] == [created["id"]]


async def test_watch_without_arguments_times_out_cleanly(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with mcp_client(tmp_path) as client:
            result = await client.call_tool("agentation_watch_annotations", {"timeoutSeconds": 0.2})
    assert tool_json(result) == {"timeout": True, "message": "No new annotations within 1 seconds"}


async def test_memory_store_serves_the_tools(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with mcp_client(tmp_path, AGENTATION_STORE="memory") as client:
            assert tool_json(await client.call_tool("agentation_list_sessions", {})) == {"sessions": []}
    assert not (tmp_path / ".agentation" / "store.db").exists()


async def test_tool_text_with_a_lone_surrogate_is_an_error_naming_the_argument(opened: Store) -> None:
    """The same rule as over HTTP, checked where every tool call passes (the SDK's client will not even send it)."""
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        handlers = build_handlers(writer, hub, opened.reader)
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        annotation = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
        result = await call_tool(handlers, "agentation_reply", {"annotationId": annotation["id"], "message": "x\ud800"})
        assert result.is_error
        assert tool_text(result) == "message must be valid Unicode text; it holds a lone surrogate such as \\ud800."
        ok = await call_tool(handlers, "agentation_reply", {"annotationId": annotation["id"], "message": "fine ✓"})
        assert not ok.is_error
    assert [m["content"] for m in reads.get_annotation(opened.reader, annotation["id"])["thread"]] == ["fine ✓"]


async def test_tool_arguments_over_the_body_limit_are_refused(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        handlers = build_handlers(writer, hub, opened.reader)
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        annotation = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
        args = {"annotationId": annotation["id"], "message": "x" * 5000}
        refused = await call_tool(handlers, "agentation_reply", args, max_bytes=4096)
        assert refused.is_error
        assert tool_text(refused) == "Tool arguments too large: the limit is 4096 bytes."
        accepted = await call_tool(handlers, "agentation_reply", {**args, "message": "short"}, max_bytes=4096)
        assert not accepted.is_error
    assert [m["content"] for m in reads.get_annotation(opened.reader, annotation["id"])["thread"]] == ["short"]


async def test_the_server_applies_the_body_limit_to_tool_arguments(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with mcp_client(tmp_path / "home", AGENTATION_MAX_BODY_BYTES="2048") as session:
            result = await session.call_tool("agentation_get_session", {"sessionId": "s" * 3000})
            assert result.is_error
            assert tool_text(result) == "Tool arguments too large: the limit is 2048 bytes."


# --- hostile arguments, generated ---------------------------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
TOOLS = [*sorted(set(EXPECTED_SCHEMAS) - {"agentation_watch_annotations"}), "agentation_unknown"]
INTERNALS = ("Traceback", "apsw", "sqlite", "Error(", "object at 0x", "pydantic", "KeyError", "TypeError")


SESSION, ANNOTATION_ID = "<the session>", "<the annotation>"


def _arguments() -> st.SearchStrategy[dict[str, Any]]:
    """Arguments a confused or hostile agent might send: any JSON, sometimes naming things that exist
    (placeholders, replaced by real ids once drawn, so what is drawn never depends on the store)."""
    ids = st.sampled_from([SESSION, ANNOTATION_ID]) | ANY_TEXT
    names = st.sampled_from(["annotationId", "sessionId", "summary", "reason", "message"]) | ANY_TEXT
    nested = st.integers(min_value=1, max_value=3000).map(lambda depth: _nested(depth))
    return st.dictionaries(names, ids | JSON_VALUES | nested, max_size=4)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(min(depth, 200)):  # deeper than any tool reads; the SDK's own encoder stops near 1,000
        value = [value]
    return value


def _snapshot(st_: Store) -> list[Any]:
    return [list(st_.conn.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in ("sessions", "annotations", "events")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_no_arguments_make_a_tool_fail_inside_or_change_what_a_refusal_should_not(
    opened: Store, data: st.DataObject
) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        if not reads.list_sessions(opened.reader):
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
        real = {SESSION: reads.list_sessions(opened.reader)[0]["id"]}
        real[ANNOTATION_ID] = next((a["id"] for a in reads.pending_annotations(opened.reader)), "none left")
        async with Client(build_mcp_server(writer, hub, opened.reader)) as client:
            name = data.draw(st.sampled_from(TOOLS), label="tool")
            drawn = data.draw(_arguments(), label="arguments")
            arguments = {
                key: real.get(value, value) if isinstance(value, str) else value for key, value in drawn.items()
            }
            before = _snapshot(opened)
            with trio.fail_after(10):
                try:
                    result = await client.call_tool(name, arguments)
                except UnicodeEncodeError:
                    # The SDK's client will not encode a lone surrogate in a key; hand the call to the
                    # server's tool dispatch directly, as a client that does send it would reach it.
                    outcome = await call_tool(build_handlers(writer, hub, opened.reader), name, arguments)
                    result = tool_result(outcome)
            text = "".join(getattr(block, "text", "") for block in result.content)
            assert not any(marker in text for marker in INTERNALS), text
            if result.is_error:
                assert text
                assert _snapshot(opened) == before, "a refused call changed the store"


async def test_the_pending_tools_take_a_limit_and_say_how_many_more_there_are(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        handlers = build_handlers(writer, hub, opened.reader)
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        created = [
            await writer.submit(CreateAnnotation.from_body(session["id"], {**ANNOTATION, "timestamp": 1000 + i}))
            for i in range(5)
        ]
        ids = [a["id"] for a in created]
        for name, base in (
            ("agentation_get_pending", {"sessionId": session["id"]}),
            ("agentation_get_all_pending", {}),
        ):
            everything = tool_json(await call_tool(handlers, name, base))
            assert [a["id"] for a in everything["annotations"]] == ids
            assert "more" not in everything, "without a limit in play the result is what it always was"
            page = tool_json(await call_tool(handlers, name, {**base, "limit": 2}))
            assert ([a["id"] for a in page["annotations"]], page["count"], page["more"]) == (ids[:2], 2, 3)
            rest = tool_json(await call_tool(handlers, name, {**base, "limit": 2, "after": page["after"]}))
            assert ([a["id"] for a in rest["annotations"]], rest["more"]) == (ids[2:4], 1)
            last = tool_json(await call_tool(handlers, name, {**base, "after": rest["after"]}))
            assert ([a["id"] for a in last["annotations"]], "more" in last, "after" in last) == (ids[4:], False, False)
            exact = tool_json(await call_tool(handlers, name, {**base, "limit": 5.0}))
            assert (exact["count"], "more" in exact) == (5, False)
            for bad in (0, -1, 2.5, 100_001):
                refused = await call_tool(handlers, name, {**base, "limit": bad})
                assert refused.is_error
                assert tool_text(refused) == "limit must be a whole number from 1 to 100000."
            wrong_type = await call_tool(handlers, name, {**base, "limit": "2"})
            assert wrong_type.is_error
            assert '"expected": "number"' in tool_text(wrong_type)


async def test_a_large_result_goes_out_once_as_text_and_a_small_one_also_as_structured_content(
    opened: Store,
) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        handlers = build_handlers(writer, hub, opened.reader)
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
        small = await call_tool(handlers, "agentation_get_all_pending", {})
        assert small.structured_content == json.loads(tool_text(small))
        for i in range(300):
            body = {**ANNOTATION, "comment": f"{i} " + "x" * 1000}
            await writer.submit(CreateAnnotation.from_body(session["id"], body))
        large = await call_tool(handlers, "agentation_get_all_pending", {"limit": 1000})  # past the page budget
        assert len(tool_text(large)) > STRUCTURED_MAX_BYTES
        assert large.structured_content is None
        assert json.loads(tool_text(large))["count"] == 301
