"""Results that fit the client: a large store's pending list comes in pages under the budget, over
stdio and `/mcp`, and the pages join up to exactly the list, writes between pages included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from agentation_mcp.agent.budget import DEFAULT_BUDGET
from agentation_mcp.commands import CreateAnnotation, CreateSession

from .conftest import ANNOTATION, ServerProcess, commit, open_store, tool_text
from .mcp_clients import SDK_CLIENT_GENERATORS, TRANSPORTS, connect

pytestmark = pytest.mark.anyio


def _fill(home: Path, sessions: int, per_session: int) -> None:
    """`sessions` sessions of `per_session` pending annotations each, comments of varied length."""
    with open_store(home / ".agentation" / "store.db") as st:
        created = commit(st.conn, *(CreateSession(url=f"http://localhost:3000/page{n}") for n in range(sessions)))
        commands = [
            CreateAnnotation.from_body(
                session["id"], {**ANNOTATION, "timestamp": 1_700_000_000_000 + i, "comment": f"{i} " + "w" * (i % 700)}
            )
            for session, _ in created
            for i in range(per_session)
        ]
        commit(st.conn, *commands)


async def _post(api: httpx2.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.mark.filterwarnings(SDK_CLIENT_GENERATORS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_large_store_comes_in_pages_that_fit_and_join_up_exactly(tmp_path: Path, transport: str) -> None:
    home = tmp_path / "home"
    await trio.to_thread.run_sync(_fill, home, 3, 500)
    server = ServerProcess(home).wait_listening()
    try:
        with trio.fail_after(120):
            async with httpx2.AsyncClient(base_url=server.url) as api, connect(transport, home, server.url) as client:
                full = [a["id"] for a in (await api.get("/pending")).json()["annotations"]]
                assert len(full) == 1500
                seen: list[str] = []
                pages = 0
                after: str | None = None
                resolved_unseen = added = None
                while True:
                    result = await client.call_tool(
                        "agentation_get_all_pending", {} if after is None else {"after": after}
                    )
                    text = tool_text(result)
                    assert len(text) <= DEFAULT_BUDGET, f"page {pages} is {len(text)} characters"
                    page = json.loads(text)
                    assert result.structured_content == page, "the structured content is the same page"
                    ids = [a["id"] for a in page["annotations"]]
                    assert page["count"] == len(ids) > 0
                    seen += ids
                    pages += 1
                    if "more" not in page:
                        assert "after" not in page
                        break
                    after = page["after"]
                    left = [i for i in full if i not in seen and i != resolved_unseen]
                    if added is not None:
                        left.append(added)
                    assert page["more"] == len(left)
                    if pages == 2:
                        # Between pages: one seen and one not yet seen are resolved, one is added to the
                        # session the list ends with, and a new session (listed first) gets one too.
                        resolved_unseen = left[len(left) // 2]
                        for done in (seen[0], resolved_unseen):
                            response = await api.patch(f"/annotations/{done}", json={"status": "resolved"})
                            assert response.status_code == 200, response.text
                        last_session = (await api.get(f"/annotations/{full[-1]}")).json()["sessionId"]
                        body = {**ANNOTATION, "timestamp": 1_800_000_000_000}
                        added = (await _post(api, f"/sessions/{last_session}/annotations", body))["id"]
                        newer = await _post(api, "/sessions", {"url": "http://localhost:3000/new"})
                        await _post(api, f"/sessions/{newer['id']}/annotations", ANNOTATION)
        expected = [i for i in full if i != resolved_unseen] + [added]
        assert len(seen) == len(set(seen)), "no annotation is repeated"
        assert seen == expected, "every annotation after the cursor comes once, in list order"
        assert pages >= 10, "1,500 annotations do not fit in a few pages"
    finally:
        server.stop()


async def test_an_explicit_limit_wins_over_the_budget_and_a_bad_cursor_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await trio.to_thread.run_sync(_fill, home, 1, 300)
    with trio.fail_after(60):
        async with connect("stdio", home, "") as client:
            everything = await client.call_tool("agentation_get_all_pending", {"limit": 300})
            assert len(tool_text(everything)) > DEFAULT_BUDGET
            assert json.loads(tool_text(everything))["count"] == 300
            sid = json.loads(tool_text(await client.call_tool("agentation_list_sessions", {})))["sessions"][0]["id"]
            first = json.loads(tool_text(await client.call_tool("agentation_get_pending", {"sessionId": sid})))
            assert 0 < first["count"] < 300
            assert first["more"] == 300 - first["count"]
            rest = await client.call_tool(
                "agentation_get_pending", {"sessionId": sid, "after": first["after"], "limit": 1000}
            )
            assert json.loads(tool_text(rest))["count"] == 300 - first["count"]
            for bad in ("", "not a cursor", "WyJpZCIsIngiXQ"):
                refused = await client.call_tool("agentation_get_all_pending", {"after": bad})
                assert refused.is_error
                assert tool_text(refused) == "after must be the `after` value a previous page of this list returned."
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["agentation_get_all_pending"].meta == {"anthropic/maxResultSizeChars": DEFAULT_BUDGET}
