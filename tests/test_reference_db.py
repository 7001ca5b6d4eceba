"""A store written by the npm reference 1.3.2 (tests/fixtures), served by our real process."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest
import trio

from .conftest import copy_reference_db, mcp_client, reference_view, tool_json

pytestmark = pytest.mark.anyio


async def test_reference_store_is_served_as_the_reference_serves_it(tmp_path: Path) -> None:
    path = copy_reference_db(tmp_path)
    view = reference_view()
    with trio.fail_after(30):
        async with mcp_client(tmp_path) as client:
            listed = tool_json(await client.call_tool("agentation_list_sessions", {}))
            assert listed["sessions"] == [
                {k: s[k] for k in ("id", "url", "status", "createdAt")} for s in view["sessions"]
            ]
            for session_id, detail in view["sessionDetails"].items():
                got = tool_json(await client.call_tool("agentation_get_session", {"sessionId": session_id}))
                assert got == detail
            pending = tool_json(await client.call_tool("agentation_get_all_pending", {}))
            assert pending["count"] == view["pending"]["count"]
            assert [a["id"] for a in pending["annotations"]] == [a["id"] for a in view["pending"]["annotations"]]
            target = pending["annotations"][0]["id"]
            tool_json(await client.call_tool("agentation_resolve", {"annotationId": target, "summary": "done"}))
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    rows = list(
        conn.execute("SELECT sequence, type FROM events WHERE sequence > ? ORDER BY sequence", (view["maxSequence"],))
    )
    start = view["maxSequence"]
    assert rows == [
        (start + 1, "annotation.updated"),
        (start + 2, "annotation.updated"),
        (start + 3, "thread.message"),
    ]
    assert conn.execute("SELECT value FROM event_sequence").get == start + 3
    assert conn.execute("SELECT COUNT(*) FROM sessions").get == len(view["sessions"])
