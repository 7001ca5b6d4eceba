"""Presence on trio's virtual clock: the heartbeat's writes, expiry, and what the MCP side reports to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import pytest
import trio
import trio.testing
from mcp.client import Client

from agentation_mcp.agent.presence import HttpPresence, StdioPresence, recorded
from agentation_mcp.agent.sdk_server import build_mcp_server
from agentation_mcp.agent.tools import build_handlers, call_tool
from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import presence
from agentation_mcp.store.heartbeat import BEAT, SOON, Heartbeat
from agentation_mcp.store.hub import Hub
from agentation_mcp.store.writer import Writer

from .conftest import ANNOTATION, Store, running_writer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def never_gone(pid: int, host: str) -> bool:
    return False


def present(st: Store, *, gone: Any = never_gone) -> dict[str, Any]:
    """The presence parts of the status document now (virtual time is the wall clock here)."""
    return presence.status(st.reader, trio.current_time(), gone=gone)


@asynccontextmanager
async def beating(opened: Store) -> AsyncIterator[tuple[Hub, Writer, Heartbeat, trio.Nursery]]:
    """The store's writer, and this process's heartbeat (pid 1001, virtual time as its wall clock) beating
    through it; the nursery is the heartbeat's, cancelled at the end."""
    hub = opened.hub()
    async with running_writer(opened, hub) as writer, trio.open_nursery() as nursery:
        heartbeat = Heartbeat(wall=trio.current_time, pid=1001)
        await nursery.start(heartbeat.run, writer)
        yield hub, writer, heartbeat, nursery
        nursery.cancel_scope.cancel()


async def test_a_process_whose_heartbeat_stops_is_gone_once_it_expires(opened: Store) -> None:
    """A killed process writes nothing more: its rows stay, but count as gone `EXPIRY` seconds after its last
    heartbeat, while a live process's heartbeat keeps it present."""
    hub = opened.hub()
    async with running_writer(opened, hub) as writer, trio.open_nursery() as nursery:
        live = Heartbeat(wall=trio.current_time, pid=1001)
        killed = Heartbeat(wall=trio.current_time, pid=1002)
        killed.agent("stdio").connected({"name": "killed-client", "version": "1"})
        await nursery.start(live.run, writer)
        await writer.submit(killed.snapshot())  # its last heartbeat, then nothing: as after kill -9
        last_beat = trio.current_time()
        await trio.sleep(presence.EXPIRY - 0.5)
        status = present(opened)
        assert sorted(p["pid"] for p in status["processes"]) == [1001, 1002]
        assert [a["client"] for a in status["agents"]] == [{"name": "killed-client", "version": "1"}]
        await trio.sleep_until(last_beat + presence.EXPIRY + 0.01)
        status = present(opened)
        assert [p["pid"] for p in status["processes"]] == [1001]
        assert status["agents"] == []
        # The rows themselves go with a later heartbeat of any process, once long dead.
        await trio.sleep(presence.FORGET_AFTER + BEAT)
        left = opened.reader.conn.execute("SELECT pid FROM presence_processes").fetchall()
        assert left == [(1001,)]
        nursery.cancel_scope.cancel()


async def test_a_process_that_stops_deletes_its_rows_at_once(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        heartbeat = Heartbeat(wall=trio.current_time, pid=1001)
        heartbeat.agent("stdio").connected({"name": "client", "version": "1"})
        async with trio.open_nursery() as nursery:
            await nursery.start(heartbeat.run, writer)
            assert [a["client"]["name"] for a in present(opened)["agents"]] == ["client"]
            nursery.cancel_scope.cancel()
        status = present(opened)
        assert (status["processes"], status["agents"]) == ([], [])


async def test_a_dead_pid_on_this_host_is_gone_before_its_heartbeat_expires(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        heartbeat = Heartbeat(wall=trio.current_time, pid=1001)
        await writer.submit(heartbeat.snapshot())
        assert len(present(opened)["processes"]) == 1
        assert present(opened, gone=lambda pid, host: pid == 1001)["processes"] == []


async def beats(writer: Writer) -> int:
    return writer.statistics().commands


async def test_tool_calls_write_nothing_until_the_next_heartbeat(opened: Store) -> None:
    async with beating(opened) as (hub, writer, heartbeat, _):
        agent = heartbeat.agent("stdio")
        agent.connected({"name": "client", "version": "1"})
        await trio.sleep(SOON * 2)  # the connection is written soon after
        written = await beats(writer)
        assert present(opened)["agents"][0]["lastCallAt"] is None
        handlers = recorded(build_handlers(writer, hub, opened.reader), agent)
        for _ in range(100):
            await call_tool(handlers, "agentation_list_sessions", {})
        assert await beats(writer) == written  # a hundred calls, no write
        await trio.sleep(BEAT)
        assert await beats(writer) == written + 1
        assert present(opened)["agents"][0]["lastCallAt"] is not None


async def test_a_watch_shows_as_watching_while_it_waits(opened: Store) -> None:
    async with beating(opened) as (hub, writer, heartbeat, nursery):
        stdio = StdioPresence(heartbeat)
        stdio.initialized({"protocolVersion": "2025-06-18", "clientInfo": {"name": "watcher", "version": "2.0"}})
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        handlers = recorded(build_handlers(writer, hub, opened.reader), stdio.agent)
        done = trio.Event()

        async def watch() -> None:
            arguments = {"sessionId": session["id"], "timeoutSeconds": 60, "batchWindowSeconds": 1}
            await call_tool(handlers, "agentation_watch_annotations", arguments)
            done.set()

        nursery.start_soon(watch)
        await trio.sleep(SOON * 2)
        [agent] = present(opened)["agents"]
        assert (agent["watching"], agent["watchingSessionId"]) == (True, session["id"])
        assert agent["client"] == {"name": "watcher", "version": "2.0"}
        await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
        await done.wait()
        await trio.sleep(SOON * 2)
        [agent] = present(opened)["agents"]
        assert (agent["watching"], agent["watchingSessionId"]) == (False, None)
        stdio.disconnected()
        await trio.sleep(SOON * 2)
        assert present(opened)["agents"] == []


async def test_an_mcp_session_over_http_is_an_agent_from_initialize_until_it_closes(opened: Store) -> None:
    async with beating(opened) as (hub, writer, heartbeat, _):
        server = build_mcp_server(writer, hub, opened.reader)
        server.middleware.append(HttpPresence(heartbeat).middleware)
        info = types.Implementation(name="http-client", version="3.1")
        async with Client(server, mode="legacy", client_info=info) as client:
            await trio.sleep(SOON * 2)
            [agent] = present(opened)["agents"]
            assert (agent["client"], agent["transport"], agent["lastCallAt"]) == (
                {"name": "http-client", "version": "3.1"},
                "http",
                None,
            )
            async with trio.open_nursery() as calls:
                calls.start_soon(client.call_tool, "agentation_watch_annotations", {"timeoutSeconds": 30})
                await trio.sleep(SOON * 2)
                [agent] = present(opened)["agents"]
                assert (agent["watching"], agent["watchingSessionId"]) == (True, None)
                assert agent["lastCallAt"] is not None
            await trio.sleep(SOON * 2)
            assert present(opened)["agents"][0]["watching"] is False
        await trio.sleep(SOON * 2)
        assert present(opened)["agents"] == []


async def test_pages_are_counted_once_per_stream_and_remembered_after_they_leave(opened: Store) -> None:
    async with beating(opened) as (_, _, heartbeat, _):
        first = heartbeat.page_opened("s1", "http://localhost:3000/")
        second = heartbeat.page_opened("s1", "http://localhost:3000/")
        await trio.sleep(SOON * 2)
        status = present(opened)
        assert [(p["sessionId"], p["url"]) for p in status["pages"]] == [("s1", "http://localhost:3000/")] * 2
        heartbeat.page_closed(first)
        heartbeat.page_closed(second)
        await trio.sleep(SOON * 2)
        status = present(opened)
        assert status["pages"] == []
        assert status["lastPageSeenAt"] is not None


async def test_refused_origins_are_kept_with_their_count(opened: Store) -> None:
    async with beating(opened) as (_, _, heartbeat, _):
        for _ in range(3):
            heartbeat.origin_refused("http://app.example:8080", "/sessions")
        await trio.sleep(BEAT + SOON)
        [refused] = present(opened)["refusedOrigins"]
        assert {k: refused[k] for k in ("origin", "path", "count", "byLiveProcess")} == {
            "origin": "http://app.example:8080",
            "path": "/sessions",
            "count": 3,
            "byLiveProcess": True,
        }


async def test_presence_alone_is_not_flushed_to_disk_but_an_annotation_change_is(opened: Store) -> None:
    hub = opened.hub()
    flushes: list[int] = []
    async with running_writer(opened, hub, in_thread=True, durable=lambda: flushes.append(1)) as writer:
        heartbeat = Heartbeat(wall=trio.current_time, pid=1001)
        heartbeat.agent("stdio").connected({"name": "client", "version": "1"})
        await writer.submit(heartbeat.snapshot())
        assert flushes == []
        assert len(present(opened)["agents"]) == 1
        await writer.submit(CreateSession(url="http://localhost:3000/"))
        assert flushes == [1]
