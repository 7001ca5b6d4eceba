"""The one batcher of new annotations, and the bounded channel that feeds it, on trio's virtual clock."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
import trio
import trio.testing

from agentation_mcp.clients import batches
from agentation_mcp.models import ANNOTATION_CREATED, ANNOTATION_DELETED, ANNOTATION_UPDATED, Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def event(sequence: int, kind: str = ANNOTATION_CREATED, session: str = "s1", **payload: Any) -> Event:
    return Event(kind, session, {"id": f"a{sequence}", "status": "pending", **payload}, sequence, "")


async def test_a_full_channel_makes_the_source_wait_and_loses_nothing() -> None:
    produced: list[int] = []

    async def source() -> AsyncGenerator[Event, None]:
        for sequence in range(1, 3 * batches.EVENT_BUFFER + 1):
            produced.append(sequence)
            yield event(sequence)

    async with batches.fed_from(source()) as events:
        await trio.testing.wait_all_tasks_blocked()
        # The buffer is full, one more event waits in the feeding task's send, and the source is not read further.
        assert events.statistics().current_buffer_used == batches.EVENT_BUFFER
        assert len(produced) == batches.EVENT_BUFFER + 1
        received = [(await events.receive()).sequence for _ in range(3 * batches.EVENT_BUFFER)]
    assert received == list(range(1, 3 * batches.EVENT_BUFFER + 1))


async def test_a_batch_opens_with_a_creation_in_the_session_and_collects_for_the_window() -> None:
    send, events = batches.event_channel()
    start = trio.current_time()

    async def writes() -> None:
        await trio.sleep(5)
        send.send_nowait(event(1, session="other"))  # another session: does not open the batch
        send.send_nowait(event(2, ANNOTATION_UPDATED))  # a change to an annotation not in the batch
        await trio.sleep(1)
        send.send_nowait(event(3))  # opens it at t=6
        await trio.sleep(3)
        send.send_nowait(event(4))
        send.send_nowait(event(3, ANNOTATION_UPDATED, status="resolved"))
        send.send_nowait(event(5))
        send.send_nowait(event(5, ANNOTATION_DELETED))
        await trio.sleep(10)
        send.send_nowait(event(6))  # after the window

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writes)
        batch = await batches.next_batch(events, "s1", window=10, deadline=start + 60)
        assert trio.current_time() - start == 16
        assert [(e.sequence, e.type) for e in batch] == [
            (3, ANNOTATION_CREATED),
            (4, ANNOTATION_CREATED),
            (3, ANNOTATION_UPDATED),
            (5, ANNOTATION_CREATED),
            (5, ANNOTATION_DELETED),
        ]
        assert batches.created_ids(batch) == ["a3", "a4", "a5"]
        assert [a["id"] for a in batches.still_pending(batch)] == ["a4"]
        assert await batches.next_batch(events, "s1", window=10, deadline=trio.current_time() + 1) == []
        assert [e.sequence for e in await batches.next_batch(events, None, window=0)] == [6]
