"""The annotation commands as a person or a script runs them: real `agentation-mcp` processes.

They work on a store that a running server shares (whose SSE stream must
show their writes), and on that server over HTTP with an access key; the
server going away and coming back is covered too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from .conftest import ANNOTATION, ServerProcess, agentation, free_port, server_env, stream

pytestmark = pytest.mark.anyio

KEY = "k" * 32


async def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(lambda: agentation(home, *args))


async def seed(url: str, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    async with httpx2.AsyncClient(base_url=url, headers=headers) as http:
        session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
        annotation = (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
    return session, annotation


async def test_commands_on_the_shared_store_reach_the_running_servers_listeners(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        with trio.fail_after(60):
            session, annotation = await seed(server.url)
            aid = annotation["id"]
            listed = await run(home, "sessions", "--json")
            assert json.loads(listed.stdout) == {
                "sessions": [
                    {"id": session["id"], "url": session["url"], "status": "active", "createdAt": session["createdAt"]}
                ]
            }
            pending = json.loads((await run(home, "pending", "--json")).stdout)
            assert pending["count"] == 1
            assert pending["annotations"][0]["id"] == aid
            table = (await run(home, "pending", session["id"])).stdout
            assert aid in table
            assert "Make the button blue" in table

            async with stream(f"{server.url}/sessions/{session['id']}/events") as events:
                acked = await run(home, "ack", aid)
                assert (acked.returncode, acked.stdout) == (0, f"Acknowledged {aid}.\n")
                frame = await events.frame()
                assert (frame["event"], frame["data"]["payload"]["status"]) == ("annotation.updated", "acknowledged")

                replied = await run(home, "reply", aid, "Which blue?", "--json")
                assert json.loads(replied.stdout) == {"replied": True, "annotationId": aid, "message": "Which blue?"}
                updated, message = await events.frames(2)
                assert updated["event"] == "annotation.updated"
                assert (message["event"], message["data"]["payload"]["content"]) == ("thread.message", "Which blue?")

                resolved = await run(home, "resolve", aid, "--summary", "Made it #00f")
                assert resolved.returncode == 0
                frames = await events.frames(3)
                assert [f["event"] for f in frames] == ["annotation.updated", "annotation.updated", "thread.message"]
                assert frames[-1]["data"]["payload"]["content"] == "Resolved: Made it #00f"

            shown = json.loads((await run(home, "show", aid, "--json")).stdout)
            assert shown["status"] == "resolved"
            assert [m["content"] for m in shown["thread"]] == ["Which blue?", "Resolved: Made it #00f"]
            assert "Resolved: Made it #00f" in (await run(home, "show", aid)).stdout
            assert json.loads((await run(home, "pending", "--json")).stdout)["count"] == 0

            # Refusals: the tools' texts, exit 1; usage errors exit 2.
            missing = await run(home, "ack", "nope")
            assert (missing.returncode, missing.stderr) == (1, "Annotation not found: nope\n")
            empty = await run(home, "reply", aid, "")
            assert (empty.returncode, empty.stderr) == (1, "message must not be empty.\n")
            unknown_session = await run(home, "pending", "no-such-session")
            assert (unknown_session.returncode, unknown_session.stderr) == (1, "Session not found: no-such-session\n")
            usage = await run(home, "dismiss", aid)
            assert usage.returncode == 2
            assert "--reason" in usage.stderr
    finally:
        assert await trio.to_thread.run_sync(server.stop) == 0


async def test_commands_on_a_remote_server_with_an_access_key_and_when_it_is_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"  # the commands' own HOME holds no store: everything goes over HTTP
    server = ServerProcess(home, env={"AGENTATION_ACCESS_KEY": KEY})
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        with trio.fail_after(60):
            session, annotation = await seed(server.url, {"x-api-key": KEY})
            aid = annotation["id"]
            remote = ("--http-url", server.url, "--api-key", KEY)
            pending = json.loads((await run(elsewhere, "pending", "--json", *remote)).stdout)
            assert [a["id"] for a in pending["annotations"]] == [aid]
            assert (await run(elsewhere, "dismiss", aid, "--reason", "Out of scope", *remote)).returncode == 0
            shown = json.loads((await run(elsewhere, "show", aid, "--json", *remote)).stdout)
            assert shown["status"] == "dismissed"
            assert [m["content"] for m in shown["thread"]] == ["Dismissed: Out of scope"]
            missing = await run(elsewhere, "ack", "nope", *remote)
            assert (missing.returncode, missing.stderr) == (1, "Annotation not found: nope\n")
            wrong = await run(elsewhere, "sessions", "--http-url", server.url, "--api-key", "wrong")
            assert wrong.returncode == 1
            assert "refused the access key (401)" in wrong.stderr
            for command in ("sessions", "pending"):
                keyless = await run(elsewhere, command, "--http-url", server.url)
                assert keyless.returncode == 1
                assert "needs an access key (401): pass it with --api-key KEY" in keyless.stderr
                assert "refused" not in keyless.stderr
            assert not (elsewhere / ".agentation").exists()
    finally:
        assert await trio.to_thread.run_sync(server.stop) == 0
    down = await run(elsewhere, "sessions", "--http-url", server.url, "--api-key", KEY)
    assert down.returncode == 1
    assert down.stderr.startswith(f"Cannot reach the agentation server at {server.url}")

    # Back again (a new server on the same port and store): the same command works.
    again = ServerProcess(home, port=server.port, env={"AGENTATION_ACCESS_KEY": KEY})
    try:
        await trio.to_thread.run_sync(again.wait_listening)
        listed = await run(elsewhere, "sessions", "--json", "--http-url", server.url, "--api-key", KEY)
        assert [s["id"] for s in json.loads(listed.stdout)["sessions"]] == [session["id"]]
    finally:
        assert await trio.to_thread.run_sync(again.stop) == 0


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_watch_prints_each_new_batch_as_one_json_line(tmp_path: Path, where: str) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        session, _ = await seed(server.url)
        remote = ("--http-url", server.url) if where == "remote" else ()
        watcher = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "agentation_mcp",
                "watch",
                "--json",
                "--batch-window",
                "2",
                "--timeout",
                "8",
                *remote,
            ],
            env=server_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with trio.fail_after(30):
                assert watcher.stderr is not None
                said = b""
                while b"Watching" not in said:
                    said += await watcher.stderr.receive_some(1024)
                async with httpx2.AsyncClient(base_url=server.url) as http:
                    created = []
                    for comment in ("one", "two"):
                        body = {**ANNOTATION, "comment": comment}
                        created.append((await http.post(f"/sessions/{session['id']}/annotations", json=body)).json())
                assert await watcher.wait() == 0
                assert watcher.stdout is not None
                out = b""
                while chunk := await watcher.stdout.receive_some(65536):
                    out += chunk
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
    finally:
        assert await trio.to_thread.run_sync(server.stop) == 0
    [line] = out.decode().splitlines()
    batch = json.loads(line)
    assert (batch["timeout"], batch["count"], batch["sessions"]) == (False, 2, [session["id"]])
    assert [a["id"] for a in batch["annotations"]] == [a["id"] for a in created]


async def test_command_line_writes_beside_a_busy_server_are_neither_lost_nor_reordered(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        with trio.fail_after(90):
            session, annotation = await seed(server.url)
            aid = annotation["id"]
            async with (
                stream(f"{server.url}/sessions/{session['id']}/events") as events,
                httpx2.AsyncClient(base_url=server.url) as http,
                trio.open_nursery() as nursery,
            ):
                for i in range(8):
                    nursery.start_soon(run, home, "reply", aid, f"from the command line {i}")
                    body = {"role": "human", "content": f"from the toolbar {i}"}
                    nursery.start_soon(partial(http.post, f"/annotations/{aid}/thread", json=body))
                # 16 replies: an annotation.updated and a thread.message each, with consecutive sequences.
                frames = await events.frames(32)
        ids = [int(str(f["id"])) for f in frames]
        assert ids == list(range(ids[0], ids[0] + 32))
        messages = [f["data"]["payload"]["content"] for f in frames if f["event"] == "thread.message"]
        async with httpx2.AsyncClient(base_url=server.url) as http:
            stored = (await http.get(f"/annotations/{aid}")).json()
        assert [m["content"] for m in stored["thread"]] == messages
        assert sorted(messages) == sorted(
            [f"from the command line {i}" for i in range(8)] + [f"from the toolbar {i}" for i in range(8)]
        )
    finally:
        assert await trio.to_thread.run_sync(server.stop) == 0


async def test_watch_against_a_server_not_yet_up_says_so_then_connects_and_prints(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    watcher = await trio.lowlevel.open_process(
        [sys.executable, "-m", "agentation_mcp", "watch", "--json", "--batch-window", "0", "--http-url", url],
        env=server_env(tmp_path / "watcher"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server: ServerProcess | None = None
    try:
        with trio.fail_after(40):
            stderr, stdout = watcher.stderr, watcher.stdout
            assert stderr is not None
            assert stdout is not None
            said = b""

            async def read_until(text: bytes) -> None:
                nonlocal said
                while text not in said:
                    said += await stderr.receive_some(1024)

            await read_until(b"Retrying every 2 s.")
            assert f"Cannot reach the agentation server at {url}".encode() in said
            server = ServerProcess(home, port=port)
            await trio.to_thread.run_sync(server.wait_listening)
            await read_until(f"Connected to {url} again".encode())
            assert said.count(b"Cannot reach") == 1  # said once, not at every try
            async with httpx2.AsyncClient(base_url=server.url) as http:
                session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                created = (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
            line = b""
            while not line.endswith(b"\n"):
                line += await stdout.receive_some(65536)
    finally:
        watcher.kill()
        await watcher.wait()
        if server is not None:
            assert await trio.to_thread.run_sync(server.stop) == 0
    batch = json.loads(line)
    assert [a["id"] for a in batch["annotations"]] == [created["id"]]
