"""Presence across real server processes on one store: `/status`, `/status/events`, the stderr lines, and
`agentation-mcp status`."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from .conftest import ANNOTATION, ServerProcess, agentation, stream

pytestmark = pytest.mark.anyio

Doc = dict[str, Any]


def send(process: ServerProcess, *messages: dict[str, Any]) -> None:
    """Write JSON-RPC messages to a server's stdin, as an MCP client does (its answers go nowhere)."""
    assert process.proc.stdin is not None
    for message in messages:
        process.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
    process.proc.stdin.flush()


def handshake(name: str, version: str) -> list[dict[str, Any]]:
    info = {"name": name, "version": version}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": info}
    return [{"id": 0, "method": "initialize", "params": params}, {"method": "notifications/initialized"}]


@asynccontextmanager
async def owner_and_other(home: Path) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on one store: the first owns the port, the second serves MCP on stdio only."""
    owner = ServerProcess(home)
    await trio.to_thread.run_sync(owner.wait_listening)
    other = ServerProcess(home, port=owner.port)
    try:
        await trio.to_thread.run_sync(other.port_taken.wait, 20)
        yield owner, other
    finally:
        for process in (other, owner):
            if process.proc.poll() is None:
                await trio.to_thread.run_sync(process.stop)


async def wait_status(http: httpx2.AsyncClient, ready: Callable[[Doc], bool]) -> Doc:
    """`/status` once `ready` holds for it; the caller bounds the wait."""
    while True:
        doc: Doc = (await http.get("/status")).json()
        if ready(doc):
            return doc
        await trio.sleep(0.05)


async def logged(process: ServerProcess, line: str) -> None:
    """Return once `process` has written `line` on stderr; the caller bounds the wait."""
    while line not in process.lines:  # noqa: ASYNC110 - another process's stderr gives no signal to wait on
        await trio.sleep(0.05)


def agent_named(doc: Doc, name: str) -> Doc | None:
    return next((a for a in doc["agents"] if a["client"]["name"] == name), None)


async def test_the_port_owner_sees_the_stdio_client_of_another_process_watch_and_vanish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with owner_and_other(home) as (owner, other), httpx2.AsyncClient(base_url=owner.url) as http:
        send(other, *handshake("presence-test", "1.2.3"))
        with trio.fail_after(15):
            doc = await wait_status(http, lambda d: agent_named(d, "presence-test") is not None)
        agent = agent_named(doc, "presence-test")
        assert agent is not None
        assert agent["client"] == {"name": "presence-test", "version": "1.2.3"}
        assert (agent["transport"], agent["pid"], agent["watching"]) == ("stdio", other.proc.pid, False)
        assert agent["lastCallAt"] is None
        assert {(p["pid"], p["ownsPort"]) for p in doc["processes"]} == {
            (owner.proc.pid, True),
            (other.proc.pid, False),
        }
        assert (doc["processes"][0]["pid"], doc["version"]) == (owner.proc.pid, doc["processes"][0]["version"])

        session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
        arguments = {"sessionId": session["id"], "timeoutSeconds": 60, "batchWindowSeconds": 1}
        send(
            other,
            {
                "id": 1,
                "method": "tools/call",
                "params": {"name": "agentation_watch_annotations", "arguments": arguments},
            },
        )

        def watching(d: Doc) -> bool:
            found = agent_named(d, "presence-test")
            return found is not None and found["watching"] and found["watchingSessionId"] == session["id"]

        with trio.fail_after(15):
            await wait_status(http, watching)
        await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)

        def done(d: Doc) -> bool:
            found = agent_named(d, "presence-test")
            return found is not None and not found["watching"] and found["watchingSessionId"] is None

        with trio.fail_after(15):
            doc = await wait_status(http, done)
        assert agent_named(doc, "presence-test")["lastCallAt"] is not None  # type: ignore[index]
        assert doc["counts"]["pending"] == 1

        assert "[MCP] Agent connected: presence-test 1.2.3 (stdio)\n" in other.lines
        with trio.fail_after(10):  # the owner logs other processes' agents as its heartbeat reads them
            await logged(owner, f"[MCP] Agent connected: presence-test 1.2.3 (stdio, process {other.proc.pid})\n")

        os.kill(other.proc.pid, signal.SIGKILL)  # not reaped yet: the process lingers as a zombie
        with trio.fail_after(10):
            doc = await wait_status(http, lambda d: agent_named(d, "presence-test") is None)
        assert [p["pid"] for p in doc["processes"]] == [owner.proc.pid]
        other.kill()  # reaps it


async def test_a_toolbar_stream_is_a_page_with_its_url_and_an_agent_stream_is_not(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(owner.wait_listening)
        async with httpx2.AsyncClient(base_url=owner.url) as http:
            session = (await http.post("/sessions", json={"url": "http://localhost:3000/shop?x=1"})).json()
            browser = {"Origin": "http://localhost:3000"}
            doc = (await http.get("/status")).json()
            assert (doc["pages"], doc["lastPageSeenAt"]) == ([], None)
            async with (
                stream(f"{owner.url}/sessions/{session['id']}/events", browser),
                stream(f"{owner.url}/events?domain=localhost:3000", {**browser, "Referer": "http://localhost:3000/"}),
                stream(f"{owner.url}/events?agent=true", browser),
                stream(f"{owner.url}/sessions/{session['id']}/events"),
            ):
                with trio.fail_after(15):
                    doc = await wait_status(http, lambda d: len(d["pages"]) == 2)
                pages = sorted(((p["sessionId"] or ""), p["url"]) for p in doc["pages"])
                assert pages == [("", "http://localhost:3000/"), (session["id"], "http://localhost:3000/shop?x=1")]
                assert all(p["connectedAt"] <= p["lastSeenAt"] for p in doc["pages"])
                assert doc["activeListeners"] == 4
                assert doc["agentListeners"] == 1
            with trio.fail_after(15):
                doc = await wait_status(http, lambda d: d["pages"] == [])
            assert doc["lastPageSeenAt"] is not None
        lines = "".join(owner.lines)
        assert (
            lines.count(f"[HTTP] Toolbar page connected: http://localhost:3000/shop?x=1 (session {session['id']})") == 1
        )
    finally:
        owner.stop()


async def test_a_refused_origin_is_recorded(tmp_path: Path) -> None:
    owner = ServerProcess(tmp_path / "home")
    try:
        await trio.to_thread.run_sync(owner.wait_listening)
        async with httpx2.AsyncClient(base_url=owner.url) as http:
            refused = await http.get("/sessions", headers={"Origin": "http://app.example:8080"})
            assert refused.status_code == 403
            with trio.fail_after(15):
                doc = await wait_status(http, lambda d: d["refusedOrigins"] != [])
            [origin] = doc["refusedOrigins"]
            assert (origin["origin"], origin["path"], origin["count"]) == ("http://app.example:8080", "/sessions", 1)
            # /status itself is under the same rules.
            assert (await http.get("/status", headers={"Origin": "http://app.example:8080"})).status_code == 403
    finally:
        owner.stop()


async def test_status_events_sends_the_document_again_when_it_changes(tmp_path: Path) -> None:
    owner = ServerProcess(tmp_path / "home")
    try:
        await trio.to_thread.run_sync(owner.wait_listening)
        async with httpx2.AsyncClient(base_url=owner.url) as http, stream(f"{owner.url}/status/events") as events:
            with trio.fail_after(15):
                first = await events.frame()
                assert first["event"] == "status"
                assert first["data"]["counts"]["sessions"] == 0
                assert [p["pid"] for p in first["data"]["processes"]] == [owner.proc.pid]
                await http.post("/sessions", json={"url": "http://localhost:3000/"})
                while (frame := await events.frame())["data"]["counts"]["sessions"] != 1:
                    assert frame["event"] == "status"
                other = ServerProcess(tmp_path / "home", port=owner.port)
                try:
                    send(other, *handshake("late-client", "0.1"))
                    while agent_named((frame := await events.frame())["data"], "late-client") is None:
                        pass
                    assert frame["data"]["processes"][-1]["pid"] == other.proc.pid
                finally:
                    await trio.to_thread.run_sync(other.stop)
                while agent_named((await events.frame())["data"], "late-client") is not None:
                    pass
    finally:
        owner.stop()


PRESENCE_PARTS = ("processes", "agents", "pages", "counts", "lastPageSeenAt")


async def test_the_status_command_prints_what_the_status_route_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with owner_and_other(home) as (owner, other), httpx2.AsyncClient(base_url=owner.url) as http:
        send(other, *handshake("cli-test", "4.5"))
        await http.post("/sessions", json={"url": "http://localhost:3000/"})
        with trio.fail_after(15):
            served = await wait_status(http, lambda d: agent_named(d, "cli-test") is not None)
        local = await trio.to_thread.run_sync(agentation, home, "status", "--json")
        assert local.returncode == 0, local.stderr
        printed = json.loads(local.stdout)
        assert {k: printed[k] for k in PRESENCE_PARTS} == {k: served[k] for k in PRESENCE_PARTS}
        assert (printed["store"], printed["startedAt"]) == (served["store"], served["startedAt"])
        remote = await trio.to_thread.run_sync(agentation, home, "status", "--json", "--http-url", owner.url)
        assert remote.returncode == 0, remote.stderr
        answered = json.loads(remote.stdout)
        assert {k: answered[k] for k in PRESENCE_PARTS} == {k: served[k] for k in PRESENCE_PARTS}
        text = await trio.to_thread.run_sync(agentation, home, "status")
        assert f"pid {owner.proc.pid} (owns the port)" in text.stdout
        assert f"cli-test 4.5 over stdio (pid {other.proc.pid}), connected just now" in text.stdout
        assert "Annotations: 0 pending, 0 acknowledged, 0 resolved, 0 dismissed, in 1 sessions" in text.stdout


def test_the_status_command_without_a_store_or_with_bad_input(tmp_path: Path) -> None:
    home = tmp_path / "home"
    empty = agentation(home, "status", "--json")
    assert empty.returncode == 0, empty.stderr
    doc = json.loads(empty.stdout)
    assert (doc["processes"], doc["agents"], doc["pages"], doc["startedAt"]) == ([], [], [], None)
    assert not (home / ".agentation" / "store.db").exists()  # reading never creates the store
    unknown = agentation(home, "status", "--bogus")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --bogus" in unknown.stderr
    scheme = agentation(home, "status", "--http-url", "localhost:4747")
    assert (scheme.returncode, scheme.stderr) == (
        2,
        "agentation-mcp status: --http-url must be an http:// or https:// URL.\n",
    )
    port = _closed_port()
    down = agentation(home, "status", "--http-url", f"http://127.0.0.1:{port}")
    assert down.returncode == 1
    assert f"Cannot reach the agentation server at http://127.0.0.1:{port}" in down.stderr


def _closed_port() -> int:
    from .conftest import free_port

    return free_port()


async def test_an_mcp_session_on_the_http_endpoint_is_an_agent_until_it_is_deleted(tmp_path: Path) -> None:
    owner = ServerProcess(tmp_path / "home")
    try:
        await trio.to_thread.run_sync(owner.wait_listening)
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx2.AsyncClient(base_url=owner.url, headers=headers) as http:
            [initialize, initialized] = handshake("http-test", "7.0")
            opened = await http.post("/mcp", json={"jsonrpc": "2.0", **initialize})
            assert opened.status_code == 200, opened.text
            session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
            await http.post("/mcp", json={"jsonrpc": "2.0", **initialized}, headers=session)
            with trio.fail_after(15):
                doc = await wait_status(http, lambda d: agent_named(d, "http-test") is not None)
            agent = agent_named(doc, "http-test")
            assert agent is not None
            assert (agent["client"], agent["transport"], agent["pid"]) == (
                {"name": "http-test", "version": "7.0"},
                "http",
                owner.proc.pid,
            )
            with trio.fail_after(10):
                await logged(owner, "[MCP] Agent connected: http-test 7.0 (http)\n")
            assert (await http.delete("/mcp", headers=session)).status_code == 200
            with trio.fail_after(15):
                await wait_status(http, lambda d: agent_named(d, "http-test") is None)
    finally:
        owner.stop()
