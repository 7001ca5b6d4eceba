"""SSE streams and /mcp against a real server process, read by real streaming clients."""

from __future__ import annotations

import gc
import socket
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agentation_mcp.commands import UpdateAnnotation
from agentation_mcp.models import Event
from agentation_mcp.web import sse

from .conftest import ANNOTATION, ServerProcess, commit_to_file, stream, tool_json
from .mcp_clients import SDK_CLIENT_GENERATORS

pytestmark = pytest.mark.anyio


def test_frames_and_cursor_parsing() -> None:
    event = Event("annotation.updated", "s1", {"id": "a", "n": 1}, 7, "2026-01-01T00:00:00.000Z")
    assert sse.event_frame(event) == (
        b'event: annotation.updated\nid: 7\ndata: {"type":"annotation.updated","sessionId":"s1",'
        b'"payload":{"id":"a","n":1},"sequence":7,"timestamp":"2026-01-01T00:00:00.000Z"}\n\n'
    )
    assert sse.connected() == b": connected\n\n"
    assert sse.connected("localhost:3000") == b": connected to domain localhost:3000\n\n"
    assert [sse.parse_last_event_id(v) for v in ("12", "12abc", "-5", "abc", None, " 3")] == [12, 12, 0, None, None, 3]
    # Past what a sequence can be: start live, as for anything else unreadable; far below zero: replay all.
    huge = [str(2**63), "9" * 5000, f"{2**64}abc"]
    assert [sse.parse_last_event_id(v) for v in huge] == [None, None, None]
    assert sse.parse_last_event_id(str(2**63 - 1)) == 2**63 - 1
    assert sse.parse_last_event_id("-" + "9" * 5000) == 0


async def post(client: httpx2.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_replay_by_last_event_id_on_both_endpoints(server: ServerProcess) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url) as api:
            s1 = await post(api, "/sessions", {"url": "http://localhost:3000/"})  # seq 1
            s2 = await post(api, "/sessions", {"url": "http://localhost:4000/"})  # seq 2
            a1 = await post(api, f"/sessions/{s1['id']}/annotations", ANNOTATION)  # seq 3
            await post(api, f"/sessions/{s2['id']}/annotations", ANNOTATION)  # seq 4
            await post(api, f"/annotations/{a1['id']}/thread", {"role": "human", "content": "hi"})  # seq 5, 6
            async with stream(f"{server.url}/sessions/{s1['id']}/events", {"Last-Event-ID": "2"}) as per_session:
                frames = await per_session.frames(3)
                assert [(f["event"], f["id"]) for f in frames] == [
                    ("annotation.created", "3"),
                    ("annotation.updated", "5"),
                    ("thread.message", "6"),
                ]
                assert per_session.comments[0] == ": connected"
                data = frames[0]["data"]
                assert list(data) == ["type", "sessionId", "payload", "sequence", "timestamp"]
                assert (data["type"], data["sessionId"], data["payload"], data["sequence"]) == (
                    "annotation.created",
                    s1["id"],
                    a1,
                    3,
                )
                patched = await api.patch(f"/annotations/{a1['id']}", json={"status": "resolved"})  # seq 7
                live = await per_session.frame()
                assert (live["event"], live["id"]) == ("annotation.updated", "7")
                assert live["data"]["payload"] == patched.json()
            async with stream(f"{server.url}/events", {"Last-Event-ID": "5"}) as everything:
                assert [f["id"] for f in await everything.frames(2)] == ["6", "7"]
                await post(api, "/sessions", {"url": "http://localhost:5000/"})
                assert (await everything.frame())["id"] == "8"
            async with stream(f"{server.url}/events") as live_only:
                await post(api, f"/sessions/{s2['id']}/action", {"output": "go"})
                frame = await live_only.frame()
                assert (frame["event"], frame["id"]) == ("action.requested", "9")
                assert frame["data"]["payload"]["output"] == "go"


async def test_agent_sync_domain_filter_and_listener_counts(server: ServerProcess) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url) as api:
            local = await post(api, "/sessions", {"url": "http://localhost:3000/app"})
            other = await post(api, "/sessions", {"url": "http://example.com:8080/x"})
            a_local = await post(api, f"/sessions/{local['id']}/annotations", ANNOTATION)
            a_other = await post(api, f"/sessions/{other['id']}/annotations", ANNOTATION)
            async with stream(f"{server.url}/events?agent=true") as agent:
                sync = await agent.frames(3)
                assert [(f["event"], f["id"], f["data"]["payload"]["id"]) for f in sync[:2]] == [
                    ("annotation.created", "0", a_other["id"]),
                    ("annotation.created", "0", a_local["id"]),
                ]
                assert sync[2]["event"] == "sync.complete"
                assert sync[2]["id"] is None
                assert sync[2]["data"]["domain"] == "all"
                assert sync[2]["data"]["count"] == 2
                async with stream(f"{server.url}/events?agent=true&domain=localhost:3000") as scoped:
                    scoped_sync = await scoped.frames(2)
                    assert scoped.comments[0] == ": connected to domain localhost:3000"
                    assert [f["data"]["payload"]["id"] for f in scoped_sync[:1]] == [a_local["id"]]
                    assert scoped_sync[1]["data"] == {**scoped_sync[1]["data"], "domain": "localhost:3000", "count": 1}
                    status = (await api.get("/status")).json()
                    assert (status["activeListeners"], status["agentListeners"]) == (2, 2)
                    result = await post(api, f"/sessions/{other['id']}/action", {"output": "x"})
                    assert result["delivered"] == {"sseListeners": 1, "webhooks": 0, "total": 1}
                    result = await post(api, f"/sessions/{local['id']}/action", {"output": "y"})
                    assert result["delivered"]["sseListeners"] == 2
                    await post(api, f"/sessions/{other['id']}/annotations", ANNOTATION)
                    await post(api, f"/sessions/{local['id']}/annotations", ANNOTATION)
                    seen = await scoped.frames(2)
                    assert [(f["event"], f["data"]["sessionId"]) for f in seen] == [
                        ("action.requested", local["id"]),
                        ("annotation.created", local["id"]),
                    ]
            with trio.fail_after(5):
                # Another process notices the disconnects; nothing here to wait on but its answers.
                while (await api.get("/status")).json()["activeListeners"] != 0:  # noqa: ASYNC110
                    await trio.sleep(0.02)


async def test_events_written_by_another_process_appear(server: ServerProcess, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url) as api:
            session = await post(api, "/sessions", {"url": "http://localhost:3000/"})
            annotation = await post(api, f"/sessions/{session['id']}/annotations", ANNOTATION)
            async with stream(f"{server.url}/sessions/{session['id']}/events") as events:
                await trio.to_thread.run_sync(
                    commit_to_file, tmp_path / "home", UpdateAnnotation(annotation["id"], {"status": "acknowledged"})
                )
                frame = await events.frame()
    assert frame["event"] == "annotation.updated"
    assert frame["data"]["payload"]["status"] == "acknowledged"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_stuck_client_slows_no_one_and_memory_stays_bounded(server: ServerProcess) -> None:
    total = 5000
    with trio.fail_after(120):
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as api:
            session = await post(api, "/sessions", {"url": "http://localhost:3000/"})
            annotation = await post(api, f"/sessions/{session['id']}/annotations", ANNOTATION)
            stuck = socket.socket()
            # Small before connecting: shrinking it on an open connection makes the kernel drop data and
            # back off, which would stall the stream on the client's side.
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(("127.0.0.1", server.port))
            stuck.sendall(f"GET /sessions/{session['id']}/events HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            rss_before = _rss_kib(server.proc.pid)
            received: list[int] = []
            async with stream(f"{server.url}/sessions/{session['id']}/events") as reader:

                async def patch_many(worker: int) -> None:
                    for i in range(worker, total, 8):
                        response = await api.patch(f"/annotations/{annotation['id']}", json={"comment": f"c{i}" * 20})
                        assert response.status_code == 200

                async with trio.open_nursery() as nursery:
                    for worker in range(8):
                        nursery.start_soon(patch_many, worker)
                    while len(received) < total:
                        received.append(int((await reader.frame())["id"]))
            status = (await api.get("/status")).json()
            rss_after = _rss_kib(server.proc.pid)
            # The stuck client now reads. It was cut off from the live fan-out and catches up from the
            # table; if it was stuck so long that the server closed its connection, it reconnects with
            # Last-Event-ID as a browser does. Either way it gets every event in order, each once.
            stuck_ids = await _read_event_ids(trio.socket.from_stdlib_socket(stuck), until=received[-1])
            while stuck_ids[-1:] != received[-1:]:
                again = await trio.open_tcp_stream("127.0.0.1", server.port)
                last = stuck_ids[-1] if stuck_ids else received[0] - 1
                await again.send_all(
                    f"GET /sessions/{session['id']}/events HTTP/1.1\r\nHost: localhost\r\n"
                    f"Last-Event-ID: {last}\r\n\r\n".encode()
                )
                stuck_ids += await _read_event_ids(again.socket, until=received[-1])
                await again.aclose()
            stuck.close()
    first = received[0]
    assert received == list(range(first, first + total))
    assert stuck_ids == list(range(first, first + total))
    # Not exact: the stuck stream is still open, and the reader's, closed just before, may not yet have been
    # noticed by the server process.
    assert status["activeListeners"] in (1, 2)
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)


async def _read_event_ids(sock: trio.socket.SocketType, *, until: int) -> list[int]:
    """The `id:` of every frame of a raw chunked SSE response, until event `until` has arrived or the server closes."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        more = await sock.recv(65536)
        if not more:
            return []
        raw += more
    body = raw.split(b"\r\n\r\n", 1)[1]
    data = b""
    ids: list[int] = []
    while not ids or ids[-1] < until:
        while True:  # take every complete chunk
            size_line, sep, rest = body.partition(b"\r\n")
            if not sep or len(rest) < int(size_line, 16) + 2:
                break
            size = int(size_line, 16)
            data += rest[:size]
            body = rest[size + 2 :]
        *frames, data = data.split(b"\n\n")
        ids += [int(line[4:]) for frame in frames for line in frame.split(b"\n") if line.startswith(b"id: ")]
        if ids and ids[-1] >= until:
            break
        try:
            more = await sock.recv(65536)
        except ConnectionResetError:
            more = b""
        if not more:
            break
        body += more
    return ids


@pytest.mark.filterwarnings(SDK_CLIENT_GENERATORS)
async def test_mcp_over_streamable_http(server: ServerProcess) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url) as api:
            session = await post(api, "/sessions", {"url": "http://localhost:3000/"})
            created = await post(
                api, f"/sessions/{session['id']}/annotations", {**ANNOTATION, "sourceFile": "src/App.tsx:12:5"}
            )
        async with (
            streamable_http_client(f"{server.url}/mcp") as (read, write_stream),
            ClientSession(read, write_stream) as client,
        ):
            await client.initialize()
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert len(names) == 9
            pending = tool_json(await client.call_tool("agentation_get_pending", {"sessionId": session["id"]}))
            assert pending["count"] == 1
            assert pending["annotations"][0]["id"] == created["id"]
            assert pending["annotations"][0]["sourceFile"] == "src/App.tsx:12:5"
            tool_json(await client.call_tool("agentation_resolve", {"annotationId": created["id"], "summary": "done"}))
        async with httpx2.AsyncClient(base_url=server.url) as api:
            stored = (await api.get(f"/annotations/{created['id']}")).json()
    gc.collect()  # the client's leftovers are reported here, under this test's filter
    assert stored["status"] == "resolved"


async def test_the_second_server_takes_the_port_over_and_replay_misses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = ServerProcess(home).wait_listening()
    waiting = ServerProcess(home, port=owner.port)
    try:
        with trio.fail_after(60):
            assert await trio.to_thread.run_sync(waiting.port_taken.wait, 20)
            async with httpx2.AsyncClient(base_url=owner.url) as api:
                session = await post(api, "/sessions", {"url": "http://localhost:3000/"})
                annotation = await post(api, f"/sessions/{session['id']}/annotations", ANNOTATION)
                last_seen = None
                async with stream(f"{owner.url}/sessions/{session['id']}/events") as events:
                    await api.patch(f"/annotations/{annotation['id']}", json={"comment": "one"})
                    last_seen = (await events.frame())["id"]
                    assert await trio.to_thread.run_sync(owner.stop) == 0
                # Written while nobody serves HTTP: through the store, from another process.
                await trio.to_thread.run_sync(
                    commit_to_file, home, UpdateAnnotation(annotation["id"], {"comment": "two"})
                )
                # The waiting server takes the port within 3 s of the owner stopping (it retries each second).
                assert await trio.to_thread.run_sync(waiting.listening.wait, 3)
                async with stream(
                    f"{waiting.url}/sessions/{session['id']}/events", {"Last-Event-ID": str(last_seen)}
                ) as resumed:
                    frame = await resumed.frame()
        assert frame["id"] == str(int(str(last_seen)) + 1)
        assert frame["data"]["payload"]["comment"] == "two"
    finally:
        for proc in (owner, waiting):
            if proc.proc.poll() is None:
                proc.stop()
