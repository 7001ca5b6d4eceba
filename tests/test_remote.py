"""Remote mode: `server --mcp-only --http-url URL --api-key K`, the nine tools carried out on another server.

A real server process with an access key on loopback holds the store; a
second process, with a HOME of its own, serves the tools over stdio through
the first one's HTTP API. Its answers must be the local tools' answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from .conftest import ANNOTATION, ServerProcess, mcp_client, tool_json, tool_text

pytestmark = pytest.mark.anyio

KEY = "k" * 32


async def test_every_tool_gives_the_local_answer_through_another_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home, env={"AGENTATION_ACCESS_KEY": KEY})
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        with trio.fail_after(90):
            async with httpx2.AsyncClient(base_url=server.url, headers={"x-api-key": KEY}) as http:
                session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                created = [
                    (
                        await http.post(f"/sessions/{session['id']}/annotations", json={**ANNOTATION, "comment": c})
                    ).json()
                    for c in ("one", "two", "three", "four")
                ]
                ids = [a["id"] for a in created]
                remote_args = ("--mcp-only", "--http-url", server.url, "--api-key", KEY)
                async with (
                    mcp_client(tmp_path / "elsewhere", *remote_args) as remote,
                    mcp_client(home, "--mcp-only") as local,
                ):
                    reads: list[tuple[str, dict[str, Any]]] = [
                        ("agentation_list_sessions", {}),
                        ("agentation_get_session", {"sessionId": session["id"]}),
                        ("agentation_get_pending", {"sessionId": session["id"]}),
                        ("agentation_get_all_pending", {}),
                        ("agentation_get_session", {"sessionId": "nope"}),
                        ("agentation_acknowledge", {"annotationId": "nope"}),
                        ("agentation_reply", {"annotationId": ids[0], "message": ""}),
                    ]
                    for name, args in reads:
                        theirs, ours = await remote.call_tool(name, args), await local.call_tool(name, args)
                        assert (theirs.is_error, tool_text(theirs)) == (ours.is_error, tool_text(ours)), name

                    writes: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
                        (
                            "agentation_acknowledge",
                            {"annotationId": ids[0]},
                            {"acknowledged": True, "annotationId": ids[0]},
                        ),
                        (
                            "agentation_resolve",
                            {"annotationId": ids[1], "summary": "done"},
                            {"resolved": True, "annotationId": ids[1], "summary": "done"},
                        ),
                        (
                            "agentation_dismiss",
                            {"annotationId": ids[2], "reason": "no"},
                            {"dismissed": True, "annotationId": ids[2], "reason": "no"},
                        ),
                        (
                            "agentation_reply",
                            {"annotationId": ids[3], "message": "which one?"},
                            {"replied": True, "annotationId": ids[3], "message": "which one?"},
                        ),
                    ]
                    for name, args, expected in writes:
                        assert tool_json(await remote.call_tool(name, args)) == expected
                    stored = [(await http.get(f"/annotations/{i}")).json() for i in ids]
                    assert [a["status"] for a in stored] == ["acknowledged", "resolved", "dismissed", "pending"]
                    assert [m["content"] for m in stored[1]["thread"]] == ["Resolved: done"]
                    assert [m["content"] for m in stored[2]["thread"]] == ["Dismissed: no"]
                    assert [m["content"] for m in stored[3]["thread"]] == ["which one?"]

                    # watch: the pending one at once; then, once it is listening, the next new one.
                    first = tool_json(await remote.call_tool("agentation_watch_annotations", {"timeoutSeconds": 5}))
                    assert [a["id"] for a in first["annotations"]] == [ids[3]]
                    await http.patch(f"/annotations/{ids[3]}", json={"status": "resolved"})
                    result: dict[str, Any] = {}

                    async def watch() -> None:
                        args = {"timeoutSeconds": 20, "batchWindowSeconds": 1}
                        result.update(tool_json(await remote.call_tool("agentation_watch_annotations", args)))

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch)
                        while (await http.get("/status")).json()["activeListeners"] == 0:  # noqa: ASYNC110
                            await trio.sleep(0.02)  # the other process's stream is open once the server counts it
                        new = (await http.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
                    assert result["timeout"] is False
                    assert [a["id"] for a in result["annotations"]] == [new["id"]]
    finally:
        assert await trio.to_thread.run_sync(server.stop) == 0
    assert not (tmp_path / "elsewhere" / ".agentation").exists(), "the remote-mode process has no store of its own"


async def test_a_wrong_key_and_a_server_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home, env={"AGENTATION_ACCESS_KEY": KEY})
    await trio.to_thread.run_sync(server.wait_listening)
    with trio.fail_after(90):
        try:
            async with mcp_client(tmp_path / "a", "--mcp-only", "--http-url", server.url, "--api-key", "wrong") as bad:
                refused = await bad.call_tool("agentation_list_sessions", {})
                assert refused.is_error
                assert tool_text(refused) == f"The agentation server at {server.url} refused the access key (401)."
            async with mcp_client(tmp_path / "b", "--mcp-only", "--http-url", server.url, "--api-key", KEY) as remote:
                assert tool_json(await remote.call_tool("agentation_list_sessions", {})) == {"sessions": []}
                assert await trio.to_thread.run_sync(server.stop) == 0
                calls: list[tuple[str, dict[str, Any]]] = [
                    ("agentation_get_all_pending", {}),
                    ("agentation_watch_annotations", {}),
                ]
                for name, args in calls:
                    down = await remote.call_tool(name, args)
                    assert down.is_error, name
                    assert tool_text(down).startswith(f"Cannot reach the agentation server at {server.url}"), name
                server = ServerProcess(home, port=server.port, env={"AGENTATION_ACCESS_KEY": KEY})
                await trio.to_thread.run_sync(server.wait_listening)
                back = tool_json(await remote.call_tool("agentation_get_all_pending", {}))
                assert back == {"count": 0, "annotations": []}
        finally:
            if server.proc.poll() is None:
                server.stop()
