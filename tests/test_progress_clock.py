"""Progress of a long watch on trio's virtual clock: every 5 s, with how long it waited of how long it may."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from mcp.client import Client

from agentation_mcp.agent.features import Features
from agentation_mcp.agent.sdk_server import build_mcp_server
from agentation_mcp.agent.tools import LocalBackend

from .conftest import Store, running_writer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_a_two_minute_watch_reports_progress_every_five_seconds(opened: Store) -> None:
    hub = opened.hub()
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with running_writer(opened, hub) as writer:
        features = Features(LocalBackend(writer, hub, opened.reader))
        server = build_mcp_server(writer, hub, opened.reader, features=features)
        with trio.fail_after(1000):
            async with Client(server, mode="legacy") as client:
                started = trio.current_time()
                await client.call_tool("agentation_watch_annotations", {}, progress_callback=on_progress)
                waited = trio.current_time() - started
                plain = await client.call_tool("agentation_watch_annotations", {"timeoutSeconds": 12})
    assert 120 <= waited < 121
    values = [value for value, _, _ in reports]
    # The beat at 120 s coincides with the end of the wait: it may or may not go out first.
    assert values in ([5.0 * n for n in range(1, 24)], [5.0 * n for n in range(1, 25)])
    assert {total for _, total, _ in reports} == {130.0}
    assert reports[5] == (30.0, 130.0, "waiting for annotations, 30 s of 120 s")
    assert plain.is_error is False, "a call without a progress token is answered as before"
