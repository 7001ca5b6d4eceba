"""MCP beyond the tools, against real server processes with the SDK's client, over stdio and `/mcp`:
prompts, completion, resources and templates, list and resource change notifications from another
process, progress during a watch, log lines at the client's level, and the push channel."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
import trio
from mcp.client.extension import NotificationBinding
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from agentation_mcp.commands import CreateSession
from agentation_mcp.store import connection
from agentation_mcp.store.connection import StoreLocation

from .conftest import ANNOTATION, ServerProcess, commit_to_file, tool_json
from .mcp_clients import SDK_CLIENT_GENERATORS, TRANSPORTS, connect

# Logging and resources/subscribe are what the handshake protocol versions offer; the SDK's client
# warns that the 2026-07-28 version drops them.
DEPRECATED_IN_2026 = "ignore:.*2026-07-28:mcp.shared.exceptions.MCPDeprecationWarning"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(SDK_CLIENT_GENERATORS),
    pytest.mark.filterwarnings(DEPRECATED_IN_2026),
]


async def _post(api: httpx2.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _text(result: types.GetPromptResult) -> str:
    [message] = result.messages
    assert isinstance(message.content, types.TextContent)
    return message.content.text


@pytest.fixture
def served(tmp_path: Path) -> Any:
    proc = ServerProcess(tmp_path / "home").wait_listening()
    yield proc
    proc.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_prompts_inline_what_was_posted_and_sessions_complete(served: ServerProcess, transport: str) -> None:
    with trio.fail_after(60):
        async with httpx2.AsyncClient(base_url=served.url) as api:
            session = await _post(api, "/sessions", {"url": "http://localhost:3000/checkout"})
            sid = session["id"]
            comment = "The pay button is hidden behind the footer"
            body = {**ANNOTATION, "comment": comment, "sourceFile": "src/Pay.tsx:40"}
            created = await _post(api, f"/sessions/{sid}/annotations", body)
            async with connect(transport, served.home, served.url) as client:
                assert [p.name for p in (await client.list_prompts()).prompts] == [
                    "fix-annotations",
                    "watch-and-fix",
                    "review-session",
                ]
                fix = _text(await client.get_prompt("fix-annotations", {}))
                assert comment in fix
                assert created["id"] in fix
                assert "src/Pay.tsx:40" in fix
                for step in ("agentation_acknowledge", "agentation_resolve", "agentation_reply", "agentation_dismiss"):
                    assert step in fix
                scoped = _text(await client.get_prompt("fix-annotations", {"sessionId": "no-such-session"}))
                assert "Nothing is pending" in scoped
                watch = _text(await client.get_prompt("watch-and-fix", {"sessionId": sid}))
                assert "agentation_watch_annotations" in watch
                assert comment in watch
                tool_json(
                    await client.call_tool(
                        "agentation_reply", {"annotationId": created["id"], "message": "Which footer?"}
                    )
                )
                review = _text(await client.get_prompt("review-session", {"sessionId": sid}))
                assert "http://localhost:3000/checkout" in review
                assert comment in review
                assert "Which footer?" in review
                with pytest.raises(MCPError, match="Session not found: nope"):
                    await client.get_prompt("review-session", {"sessionId": "nope"})
                ref = types.PromptReference(type="ref/prompt", name="review-session")
                by_id = await client.complete(ref, {"name": "sessionId", "value": sid[:4]})
                assert sid in by_id.completion.values
                by_url = await client.complete(ref, {"name": "sessionId", "value": "checkout"})
                assert by_url.completion.values == [sid]
                template = types.ResourceTemplateReference(type="ref/resource", uri="agentation://sessions/{sessionId}")
                assert (await client.complete(template, {"name": "sessionId", "value": ""})).completion.values == [sid]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_resources_and_templates_resolve_to_markdown(served: ServerProcess, transport: str) -> None:
    with trio.fail_after(60):
        async with httpx2.AsyncClient(base_url=served.url) as api:
            session = await _post(api, "/sessions", {"url": "http://localhost:3000/"})
            sid = session["id"]
            created = await _post(api, f"/sessions/{sid}/annotations", {**ANNOTATION, "comment": "Bigger title"})
            async with connect(transport, served.home, served.url) as client:
                listed = {str(r.uri): r for r in (await client.list_resources()).resources}
                assert set(listed) == {"agentation://pending", "agentation://sessions", f"agentation://sessions/{sid}"}
                assert all(r.mime_type == "text/markdown" for r in listed.values())
                templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
                assert templates == ["agentation://sessions/{sessionId}", "agentation://annotations/{annotationId}"]
                reads = {
                    "agentation://pending": ["Bigger title", created["id"]],
                    "agentation://sessions": [sid, "http://localhost:3000/"],
                    f"agentation://sessions/{sid}": ["Bigger title", created["id"], "Pending (1)"],
                    f"agentation://annotations/{created['id']}": ["Bigger title", sid],
                }
                for uri, wanted in reads.items():
                    [content] = (await client.read_resource(uri)).contents
                    assert isinstance(content, types.TextResourceContents)
                    assert content.mime_type == "text/markdown"
                    for piece in wanted:
                        assert piece in content.text, (uri, piece)
                for missing in ("agentation://annotations/nope", "agentation://sessions/nope", "agentation://other"):
                    with pytest.raises(MCPError, match="Resource not found") as refused:
                        await client.read_resource(missing)
                    assert refused.value.error.code == -32002


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_changed_and_updates_arrive_for_writes_of_another_process(
    served: ServerProcess, transport: str
) -> None:
    list_changed = trio.Event()
    updated: list[str] = []
    got_update = trio.Event()

    async def incoming(message: Any) -> None:
        if isinstance(message, types.ResourceListChangedNotification):
            list_changed.set()
        elif isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            got_update.set()

    with trio.fail_after(60):
        async with (
            httpx2.AsyncClient(base_url=served.url) as api,
            connect(transport, served.home, served.url, incoming=incoming) as client,
        ):
            # Created by this test process on the store file: a process other than the client's server.
            # Over HTTP, a notification sent before the client has opened its GET stream is dropped (the
            # SDK's transport keeps no backlog), and the client gives no sign of opening it: a session
            # created too soon is answered by no notification, so another one is created until one is.
            for attempt in range(30):
                session = await trio.to_thread.run_sync(
                    commit_to_file, served.home, CreateSession(url=f"http://x{attempt}.localhost/")
                )
                with trio.move_on_after(2):
                    await list_changed.wait()
                if list_changed.is_set():
                    break
            assert list_changed.is_set()
            await client.subscribe_resource(f"agentation://sessions/{session['id']}")
            await _post(api, f"/sessions/{session['id']}/annotations", ANNOTATION)
            await got_update.wait()
            assert updated == [f"agentation://sessions/{session['id']}"]


class _Channel(BaseModel):
    content: str
    meta: dict[str, str]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_channel_pushes_an_annotation_posted_by_another_process(tmp_path: Path, transport: str) -> None:
    home = tmp_path / "home"
    owner = ServerProcess(home, "--channel").wait_listening()
    received: list[_Channel] = []
    arrived = trio.Event()

    async def on_channel(params: _Channel) -> None:
        received.append(params)
        arrived.set()

    binding = NotificationBinding(method="notifications/claude/channel", params_type=_Channel, handler=on_channel)
    try:
        with trio.fail_after(60):
            async with connect(transport, home, owner.url, "--channel", bindings=[binding]) as client:
                assert client.initialize_result is not None
                assert client.initialize_result.capabilities.experimental == {"claude/channel": {}}
                assert "agentation_acknowledge" in (client.initialize_result.instructions or "")
                # Posted to a server process of its own, on the same store.
                other = ServerProcess(home, "--mcp-only")
                try:
                    session = await trio.to_thread.run_sync(
                        commit_to_file, home, CreateSession(url="http://localhost:5173/")
                    )
                    async with httpx2.AsyncClient(base_url=owner.url) as api:
                        body = {**ANNOTATION, "comment": "Use the brand red", "element": "h1"}
                        created = await _post(api, f"/sessions/{session['id']}/annotations", body)
                    await arrived.wait()
                finally:
                    other.stop()
        [push] = received
        assert push.meta == {"annotationId": created["id"], "sessionId": session["id"]}
        assert "Use the brand red" in push.content
        assert "`h1`" in push.content
    finally:
        owner.stop()


async def test_without_the_flag_no_channel_is_declared(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with connect("stdio", tmp_path / "home", "") as client:
            assert client.initialize_result is not None
            declared = client.initialize_result.capabilities
            assert not declared.experimental
            assert client.initialize_result.instructions is None
            assert declared.logging is not None
            assert declared.resources is not None
            assert (declared.resources.subscribe, declared.resources.list_changed) == (True, True)
            assert declared.prompts is not None
            assert declared.completions is not None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_arrives_while_a_watch_waits(served: ServerProcess, transport: str) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    with trio.fail_after(60):
        async with connect(transport, served.home, served.url) as client:
            result = tool_json(
                await client.call_tool(
                    "agentation_watch_annotations",
                    {"timeoutSeconds": 6, "batchWindowSeconds": 1},
                    progress_callback=on_progress,
                )
            )
    assert result["timeout"] is True
    assert reports == [(5.0, 7.0, "waiting for annotations, 5 s of 6 s")]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_log_lines_reach_the_client_at_its_level(served: ServerProcess, transport: str) -> None:
    lines: list[tuple[str, str]] = []
    waiting = trio.Event()

    async def logged(params: types.LoggingMessageNotificationParams) -> None:
        lines.append((params.level, str(params.data)))
        if "Writes are waiting" in str(params.data):
            waiting.set()

    async def write_while_locked(client: Any, annotation_id: str, hold: Any) -> None:
        # Another connection holds the write lock: the server's write waits, and says so after a second.
        lock = connection.open_write_connection(StoreLocation(served.home / ".agentation" / "store.db"))
        try:
            lock.execute("BEGIN IMMEDIATE")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call_tool, "agentation_acknowledge", {"annotationId": annotation_id})
                await hold()
                lock.execute("ROLLBACK")
        finally:
            lock.close()

    with trio.fail_after(60):
        async with httpx2.AsyncClient(base_url=served.url) as api:
            session = await _post(api, "/sessions", {"url": "http://localhost:3000/"})
            created = await _post(api, f"/sessions/{session['id']}/annotations", ANNOTATION)
        async with connect(transport, served.home, served.url, logged=logged) as client:
            await client.set_logging_level("error")
            # Held past the second after which the server reports the wait, which this level leaves out.
            await write_while_locked(client, created["id"], partial(trio.sleep, 1.5))
            await client.set_logging_level("warning")
            await write_while_locked(client, created["id"], waiting.wait)
    assert [line for line in lines if "Writes are waiting" in line[1]] == [
        ("warning", "[Store] Writes are waiting: another process holds the store's write lock")
    ]
    assert json.dumps(lines)


async def test_a_port_takeover_is_logged_to_a_client_that_asked_for_info(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = ServerProcess(home).wait_listening()
    lines: list[str] = []
    took_over = trio.Event()

    async def logged(params: types.LoggingMessageNotificationParams) -> None:
        lines.append(str(params.data))
        if "listening" in str(params.data):
            took_over.set()

    try:
        with trio.fail_after(60):
            async with connect("stdio", home, "", "--port", str(owner.port), with_http=True, logged=logged) as client:
                await client.set_logging_level("info")
                # Its first bind failed (the owner has the port); once the owner exits it binds, and says so.
                assert await trio.to_thread.run_sync(owner.stop) == 0
                await took_over.wait()
    finally:
        if owner.proc.poll() is None:
            owner.stop()
    assert f"[HTTP] Agentation server listening on http://localhost:{owner.port}" in lines
