"""Batches of new annotations, for the watch tool (local and remote) and `agentation-mcp watch`.

A batch opens with the first annotation created (in the watched session, when
one is given) and collects events for the batch window: more annotations
created, and changes to or deletions of those in the batch. Events reach the
batcher through a bounded channel fed by one task (`feed`, or the remote
follower): when the batcher falls behind, the feeding task waits, and the
source keeps what is not yet read (the hub's table catch-up, the remote
server's socket), so nothing is lost and nothing piles up in memory.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

import trio

from ..models import ANNOTATION_CREATED, ANNOTATION_DELETED, ANNOTATION_UPDATED, Event, JsonObject

EVENT_BUFFER = 256
"""Events read ahead of the batcher before the task feeding it waits."""


def event_channel() -> tuple[trio.MemorySendChannel[Event], trio.MemoryReceiveChannel[Event]]:
    return trio.open_memory_channel[Event](EVENT_BUFFER)


@asynccontextmanager
async def fed_from(events: AsyncGenerator[Event, None]) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
    """A channel of `events`, fed by a task of its own until the block ends."""
    send, receive = event_channel()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_feed, events, send)
        try:
            yield receive
        finally:
            nursery.cancel_scope.cancel()


async def _feed(events: AsyncGenerator[Event, None], send: trio.MemorySendChannel[Event]) -> None:
    async with aclosing(events) as source, send:
        async for event in source:
            await send.send(event)


def _created(event: Event, session_id: str | None) -> bool:
    return event.type == ANNOTATION_CREATED and (session_id is None or event.session_id == session_id)


async def next_batch(
    events: trio.MemoryReceiveChannel[Event], session_id: str | None, window: float, deadline: float = math.inf
) -> list[Event]:
    """The events of the next batch, in order; empty when `deadline` passes before a first annotation."""
    batch: list[Event] = []
    with trio.move_on_at(deadline):
        async for event in events:
            if _created(event, session_id):
                batch.append(event)
                break
    if not batch:
        return batch
    ids = {batch[0].payload["id"]}
    with trio.move_on_after(window):
        async for event in events:
            if _created(event, session_id):
                ids.add(event.payload["id"])
                batch.append(event)
            elif event.type in (ANNOTATION_UPDATED, ANNOTATION_DELETED) and event.payload.get("id") in ids:
                batch.append(event)
    return batch


def created_ids(batch: list[Event]) -> list[str]:
    """The ids of the annotations the batch created, in order."""
    return [event.payload["id"] for event in batch if event.type == ANNOTATION_CREATED]


def still_pending(batch: list[Event]) -> list[JsonObject]:
    """The batch's annotations as its last events left them, those still pending."""
    annotations: dict[str, JsonObject] = {}
    for event in batch:
        if event.type == ANNOTATION_DELETED:
            annotations.pop(str(event.payload.get("id")), None)
        else:
            annotations[event.payload["id"]] = event.payload
    return [a for a in annotations.values() if a.get("status", "pending") == "pending"]
