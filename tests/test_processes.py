"""Several server processes on one store, and a server killed mid-write."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import apsw
import pytest
import trio
from mcp.client.session import ClientSession

from agentation_mcp.commands import CreateAnnotation, CreateSession

from .conftest import ANNOTATION, commit_to_file, mcp_client, tool_json, wait_for_log

pytestmark = pytest.mark.anyio


def server_pids(home: Path) -> list[int]:
    """Pids of `agentation-mcp server` processes whose HOME is `home`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agentation_mcp" in cmdline and f"HOME={home}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def read_db(home: Path) -> apsw.Connection:
    return apsw.Connection(str(home / ".agentation" / "store.db"), flags=apsw.SQLITE_OPEN_READONLY)


def all_messages(conn: apsw.Connection) -> list[str]:
    messages: list[str] = []
    for (thread,) in conn.execute("SELECT thread FROM annotations WHERE thread IS NOT NULL"):
        messages += [m["content"] for m in json.loads(str(thread))]
    return messages


async def test_two_processes_share_one_store_without_losing_or_misordering(tmp_path: Path) -> None:
    session = commit_to_file(tmp_path, CreateSession(url="http://localhost:3000/"))
    ids = [commit_to_file(tmp_path, CreateAnnotation.from_body(session["id"], ANNOTATION))["id"] for _ in range(10)]
    start_sequence = 11
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    errors: list[str] = []
    sent: list[str] = []

    async def call(client: ClientSession, i: int) -> None:
        aid = ids[i % len(ids)]
        action = i % 4
        if action == 0:
            result = await client.call_tool("agentation_acknowledge", {"annotationId": aid})
        elif action == 1:
            sent.append(f"reply {i}")
            result = await client.call_tool("agentation_reply", {"annotationId": aid, "message": f"reply {i}"})
        elif action == 2:
            sent.append(f"Resolved: fix {i}")
            result = await client.call_tool("agentation_resolve", {"annotationId": aid, "summary": f"fix {i}"})
        else:
            sent.append(f"Dismissed: why {i}")
            result = await client.call_tool("agentation_dismiss", {"annotationId": aid, "reason": f"why {i}"})
        if result.is_error:
            errors.append(str(result.content))

    with trio.fail_after(120):
        async with (
            mcp_client(tmp_path, AGENTATION_EVENT_LOG=str(logs[0])) as a,
            mcp_client(tmp_path, AGENTATION_EVENT_LOG=str(logs[1])) as b,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(240):
                    nursery.start_soon(call, a if i % 2 else b, i)
            conn = read_db(tmp_path)
            rows = list(conn.execute("SELECT sequence, type FROM events ORDER BY id"))
            seen = [await wait_for_log(log, rows[-1][0]) for log in logs]
    assert errors == []
    messages = all_messages(conn)
    assert Counter(messages) == Counter(sent)
    sequences = [r[0] for r in rows]
    assert sequences == list(range(1, len(sequences) + 1))
    # 60 acknowledges + 60 replies (2 events) + 60 resolves and 60 dismisses (3 events each)
    assert len(sequences) - start_sequence == 60 + 120 + 180 + 180
    expected = [{"sequence": s, "type": t, "sessionId": session["id"]} for s, t in rows if s > start_sequence]
    for lines in seen:
        # A listener whose buffer overflowed is cut off and catches up from the table (a
        # "lagged" line); what it receives is still every event, in order, exactly once.
        assert [line for line in lines if "lagged" not in line] == expected


async def test_a_killed_server_loses_no_acknowledged_write(tmp_path: Path) -> None:
    session = commit_to_file(tmp_path, CreateSession(url="http://localhost:3000/"))
    ids = [commit_to_file(tmp_path, CreateAnnotation.from_body(session["id"], ANNOTATION))["id"] for _ in range(4)]
    acknowledged: list[str] = []
    enough = trio.Event()
    killed = trio.Event()

    async def keep_replying(client: ClientSession, worker: int) -> None:
        for n in range(10_000):
            text = f"w{worker} n{n}"
            try:
                result = await client.call_tool("agentation_reply", {"annotationId": ids[worker % 4], "message": text})
            except Exception:
                return
            if not result.is_error:
                acknowledged.append(text)
                if len(acknowledged) >= 150:
                    enough.set()

    with trio.fail_after(60):
        with trio.move_on_after(30):
            async with mcp_client(tmp_path) as client, trio.open_nursery() as nursery:
                (pid,) = server_pids(tmp_path)
                for worker in range(16):
                    nursery.start_soon(keep_replying, client, worker)
                await enough.wait()
                os.kill(pid, signal.SIGKILL)
                killed.set()
                nursery.cancel_scope.cancel()
        assert killed.is_set()
        conn = read_db(tmp_path)
        assert conn.execute("PRAGMA integrity_check").get == "ok"
        stored = Counter(all_messages(conn))
        assert all(stored[text] == 1 for text in acknowledged)
        old_max = conn.execute("SELECT MAX(sequence) FROM events").get
        conn.close()
        assert isinstance(old_max, int)
        async with mcp_client(tmp_path) as client:
            tool_json(await client.call_tool("agentation_acknowledge", {"annotationId": ids[0]}))
    conn = read_db(tmp_path)
    newest = conn.execute("SELECT sequence, type FROM events ORDER BY id DESC LIMIT 1").get
    assert newest == (old_max + 1, "annotation.updated")
