"""The npm reference 1.3.2 and this server writing one store file at the same time.

Needs `node` and the reference installed (`scripts/install-reference`, or
`AGENTATION_REF_CLI` naming its `dist/cli.js`). CI does
not install the reference, so there this test skips; it is the evidence for
the "both on one file" promise when run where the reference is installed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import apsw
import httpx2
import pytest
import trio
from mcp.client.session import ClientSession

from .conftest import ANNOTATION, free_port, mcp_client, reference_cli, server_env, tool_json, wait_for_log

pytestmark = pytest.mark.anyio


REF_CLI = reference_cli()


def _reference(home: Path, port: int) -> subprocess.Popen[bytes]:
    node = shutil.which("node")
    if node is None or not REF_CLI.is_file():
        pytest.skip("the npm reference is not installed (set AGENTATION_REF_CLI)")
    # Without its native SQLite module the reference falls back to a memory store, which shares nothing.
    native = REF_CLI.parents[2] / "better-sqlite3" / "build" / "Release" / "better_sqlite3.node"
    if not native.is_file():
        pytest.skip(f"the npm reference's better-sqlite3 is not built ({native}): run scripts/install-reference")
    return subprocess.Popen(
        [node, str(REF_CLI), "server", "--port", str(port)],
        env=server_env(home),
        stdin=subprocess.PIPE,  # held open: the reference stops serving MCP when it closes
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_healthy(client: httpx2.AsyncClient) -> None:
    while True:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        await trio.sleep(0.05)  # the reference process is starting


async def test_reference_and_ours_share_one_store(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "ours.log"
    reference = _reference(tmp_path, port)
    replies: list[str] = []
    try:
        with trio.fail_after(90):
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as ref:
                await _wait_healthy(ref)
                session = (await ref.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                ids = [
                    (await ref.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()["id"]
                    for _ in range(6)
                ]
                async with mcp_client(tmp_path, "--mcp-only", AGENTATION_EVENT_LOG=str(log)) as ours:

                    async def through_reference(i: int) -> None:
                        text = f"ref {i}"
                        response = await ref.post(
                            f"/annotations/{ids[i % 6]}/thread", json={"role": "human", "content": text}
                        )
                        assert response.status_code == 201
                        replies.append(text)

                    async def through_ours(client: ClientSession, i: int) -> None:
                        text = f"ours {i}"
                        tool_json(
                            await client.call_tool("agentation_reply", {"annotationId": ids[i % 6], "message": text})
                        )
                        replies.append(text)

                    async with trio.open_nursery() as nursery:
                        for i in range(120):
                            nursery.start_soon(through_reference, i)
                            nursery.start_soon(through_ours, ours, i)
                    conn = apsw.Connection(str(tmp_path / ".agentation" / "store.db"), flags=apsw.SQLITE_OPEN_READONLY)
                    rows = list(conn.execute("SELECT sequence, type FROM events ORDER BY id"))
                    seen = await wait_for_log(log, rows[-1][0])
    finally:
        reference.send_signal(signal.SIGTERM)
        reference.wait(10)
        if reference.stdin is not None:
            reference.stdin.close()
    sequences = [row[0] for row in rows]
    assert len(set(sequences)) == len(sequences)
    assert sequences == sorted(sequences)
    assert conn.execute("PRAGMA integrity_check").get == "ok"
    stored: list[Any] = []
    for (thread,) in conn.execute("SELECT thread FROM annotations"):
        stored += [m["content"] for m in json.loads(str(thread))]
    assert sorted(stored) == sorted(replies)
    # our process published the reference's writes too, in order and once each
    after_start = [line["sequence"] for line in seen if "sequence" in line]
    assert after_start == [s for s in sequences if s > after_start[0] - 1]
