"""Storage faults as the toolbar and the agent see them, with the server running through them.

The in-process tests run the real HTTP API (on a loopback port) and the real
MCP server (through the SDK's in-process client) over a store file behind
`faulty_disk.FaultyDisk`. The disk-full test runs a real server process on a
real, tiny tmpfs and fills it; it needs root to mount, and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import apsw
import httpx2
import pytest
import trio
from mcp.client import Client

from agentation_mcp.agent.sdk_server import build_mcp_server
from agentation_mcp.errors import StoreBusy
from agentation_mcp.store import transactions

from .conftest import ANNOTATION, ServerProcess, Store, open_store, serving_http, tool_json, tool_text
from .faulty_disk import FaultyDisk

pytestmark = pytest.mark.anyio

INTERNAL = "The server could not apply this change; its log on stderr has the details."


@asynccontextmanager
async def both_edges(st: Store) -> AsyncIterator[tuple[httpx2.AsyncClient, Client]]:
    """The real HTTP API on a loopback port and the in-process MCP server, over `st`, for the block."""
    async with (
        serving_http(st) as server,
        httpx2.AsyncClient(base_url=server.url, timeout=10) as http,
        Client(build_mcp_server(server.writer, server.hub, st.reader)) as mcp,
    ):
        yield http, mcp


def stored_ids(path: Path, vfs: str | None = None) -> set[str]:
    """Every session and annotation id in the store, after checking its integrity (through the real disk)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs=vfs)
    try:
        assert conn.execute("PRAGMA integrity_check").get == "ok"
        return {str(row[0]) for row in conn.execute("SELECT id FROM sessions UNION ALL SELECT id FROM annotations")}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        pytest.param(apsw.FullError, 507, "is full; free space and retry.", id="disk-full"),
        pytest.param(apsw.IOError, 503, "reported an error", id="io-error"),
        pytest.param(apsw.ReadOnlyError, 503, "can no longer be written", id="read-only"),
    ],
)
async def test_writes_fail_clearly_while_reads_and_mcp_keep_answering(
    disk: FaultyDisk, db_path: Path, fault: type[apsw.Error], status: int, text: str
) -> None:
    acknowledged: list[str] = []
    with open_store(db_path) as st:
        async with both_edges(st) as (http, mcp):
            with trio.fail_after(30):
                session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                annotation = (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
                acknowledged += [session["id"], annotation["id"]]

                with disk.failing(fault):
                    writes = [
                        await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION),
                        await http.patch(f"/annotations/{annotation['id']}", json={"comment": "changed"}),
                        await http.post("/sessions", json={"url": "http://localhost:3001/"}),
                    ]
                    for response in writes:
                        assert response.status_code == status
                        message = response.json()["error"]
                        assert str(db_path) in message
                        assert text in message
                    resolved = await mcp.call_tool("agentation_resolve", {"annotationId": annotation["id"]})
                    assert resolved.is_error
                    assert tool_text(resolved) == message

                    # Reads, health and the MCP side go on.
                    assert (await http.get("/health")).status_code == 200
                    assert (await http.get("/pending")).json()["count"] == 1
                    assert (await http.get(f"/annotations/{annotation['id']}")).json()["comment"] == ANNOTATION[
                        "comment"
                    ]
                    pending = tool_json(await mcp.call_tool("agentation_get_all_pending", {}))
                    assert [a["id"] for a in pending["annotations"]] == [annotation["id"]]

                # The fault is gone: the next writes succeed, with no restart.
                again = await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)
                assert again.status_code == 201
                acknowledged.append(again.json()["id"])
                assert not (await mcp.call_tool("agentation_resolve", {"annotationId": annotation["id"]})).is_error
    assert stored_ids(db_path, disk.base) == set(acknowledged)


async def test_a_bug_in_applying_a_change_is_a_500_and_a_tool_error_without_internals(opened: Store) -> None:
    async with both_edges(opened) as (http, mcp):
        with trio.fail_after(30):
            session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
            annotation = (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
            opened.conn.execute(
                "CREATE TEMP TRIGGER broken BEFORE UPDATE ON annotations BEGIN SELECT RAISE(ABORT, 'secret'); END"
            )
            response = await http.patch(f"/annotations/{annotation['id']}", json={"comment": "changed"})
            assert response.status_code == 500
            assert response.json() == {"error": INTERNAL}
            result = await mcp.call_tool("agentation_acknowledge", {"annotationId": annotation["id"]})
            assert result.is_error
            assert tool_text(result) == INTERNAL


async def test_a_store_locked_too_long_is_a_503_and_a_tool_error(
    opened: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transactions, "BUSY_RETRIES", 1)
    monkeypatch.setattr(transactions, "BUSY_TIMEOUT_MS", 20)
    opened.conn.set_busy_timeout(20)
    assert opened.location.path is not None
    other = apsw.Connection(str(opened.location.path))
    try:
        async with both_edges(opened) as (http, mcp):
            with trio.fail_after(30):
                session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                other.execute("BEGIN IMMEDIATE")
                response = await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)
                assert response.status_code == 503
                assert response.json()["error"] == str(StoreBusy())
                result = await mcp.call_tool("agentation_reply", {"annotationId": "x", "message": "hi"})
                assert result.is_error
                other.execute("ROLLBACK")
                assert (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).status_code == 201
    finally:
        other.close()


# --- a real full disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the real disk-full test needs root")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command on this machine")
    target = tmp_path / "tiny"
    target.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until the disk is full; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    for size in (4096, 512, 1):
        try:
            with filler.open("ab") as out:
                while True:
                    out.write(b"\0" * size)
                    out.flush()
        except OSError:
            continue
    return filler


async def test_a_real_full_disk_gets_507_and_the_server_writes_again_when_there_is_room(tiny_disk: Path) -> None:
    home = tiny_disk / "home"
    server = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        acknowledged: list[str] = []
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            with trio.fail_after(60):
                session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                acknowledged.append(session["id"])
                filler = fill(tiny_disk)
                big = {**ANNOTATION, "comment": "x" * 200_000}
                refused: list[Any] = []
                for _ in range(3):
                    response = await http.post(f"/sessions/{session['id']}/annotations", json=big)
                    if response.status_code == 201:  # a page freed by a checkpoint can still take one
                        acknowledged.append(response.json()["id"])
                        continue
                    refused.append(response)
                assert refused, "the full disk refused no write"
                for response in refused:
                    assert response.status_code == 507
                    assert response.json()["error"] == (
                        f"The disk holding {home / '.agentation' / 'store.db'} is full; free space and retry."
                    )
                assert (await http.get("/health")).status_code == 200
                assert (await http.get("/sessions")).status_code == 200
                assert server.proc.poll() is None, "the server is still running"
        assert sum("Writes are failing" in line for line in server.lines) == 1

        # Restarted on the still-full disk, it starts, serves reads, and refuses writes the same way.
        assert await trio.to_thread.run_sync(server.stop) == 0
        server = ServerProcess(home, port=server.port)
        await trio.to_thread.run_sync(server.wait_listening)
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            with trio.fail_after(60):
                assert (await http.get(f"/sessions/{session['id']}")).status_code == 200
                response = await http.post(f"/sessions/{session['id']}/annotations", json=big)
                assert response.status_code == 507
                filler.unlink()
                response = await http.post(f"/sessions/{session['id']}/annotations", json=big)
                assert response.status_code == 201
                acknowledged.append(response.json()["id"])
        assert await trio.to_thread.run_sync(server.stop) == 0
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert stored_ids(home / ".agentation" / "store.db") == set(acknowledged)
