"""`agentation_watch_annotations`: wait for new annotations and return them in a batch.

The contract: annotations already pending are returned at once. Otherwise
the call waits at most `timeout` seconds for a first new annotation; once one
arrives it collects more until the batch window ends, then returns the ones
still pending at that moment, all in one shape. Nothing is missed between the
pending check and the wait: the hub subscription starts before the check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ..errors import AgentationError, AnnotationNotFound, SessionNotFound, leaves
from ..models import Event, JsonObject, agent_view
from ..store import reads
from ..store.hub import Hub
from ..store.reads import Reader
from . import batches

if TYPE_CHECKING:
    from .remote import AsyncRemoteClient

log = logging.getLogger(__name__)
DEFAULT_BATCH_WINDOW = 10.0
DEFAULT_TIMEOUT = 120.0


def clamp(value: float | None, default: float, low: float, high: float) -> float:
    if value is None or math.isnan(value):
        return default
    return min(max(value, low), high)


def _batch(annotations: list[JsonObject]) -> JsonObject:
    sessions = list(dict.fromkeys(a["sessionId"] for a in annotations))
    return {
        "timeout": False,
        "count": len(annotations),
        "sessions": sessions,
        "annotations": [agent_view(a) for a in annotations],
    }


def _timed_out(timeout: float) -> JsonObject:
    seconds: Any = int(timeout) if float(timeout).is_integer() else timeout
    return {"timeout": True, "message": f"No new annotations within {seconds} seconds"}


async def watch_annotations(
    hub: Hub,
    reader: Reader,
    *,
    session_id: str | None = None,
    batch_window: float = DEFAULT_BATCH_WINDOW,
    timeout: float = DEFAULT_TIMEOUT,
) -> JsonObject:
    """Return pending annotations now, or the next batch of new ones, or a timeout result.

    `batch_window` and `timeout` are used as given; the caller clamps them.
    Raises `SessionNotFound` for an unknown `session_id`.
    """
    if session_id is not None and not reads.session_exists(reader, session_id):
        raise SessionNotFound(session_id)
    deadline = trio.current_time() + timeout
    cursor = reads.last_sequence(reader)
    pending = reads.pending_annotations(reader, session_id)
    if pending:
        return _batch(pending)

    log.info("[MCP] Watching for new annotations%s", f" in session {session_id}" if session_id else "")
    async with batches.fed_from(hub.follow(cursor)) as events:
        while True:
            batch = await batches.next_batch(events, session_id, batch_window, deadline)
            if not batch:
                return _timed_out(timeout)
            collected = batches.created_ids(batch)
            current = reads.annotations_by_id(reader, collected)
            still_pending = [
                current[i] for i in dict.fromkeys(collected) if current.get(i, {}).get("status") == "pending"
            ]
            if still_pending:
                return _batch(still_pending)
            if trio.current_time() >= deadline:
                return _timed_out(timeout)


async def watch_remote(
    remote: AsyncRemoteClient,
    *,
    session_id: str | None = None,
    batch_window: float = DEFAULT_BATCH_WINDOW,
    timeout: float = DEFAULT_TIMEOUT,
) -> JsonObject:
    """`watch_annotations` against another server: its pending annotations, then its SSE stream.

    The stream is open before the pending check, so nothing created between
    the two is missed; a dropped stream is resumed with `Last-Event-ID`.
    """
    if session_id is not None:
        await remote.get_session(session_id)  # raises SessionNotFound
    try:
        return await _watch_remote(remote, session_id, batch_window, timeout)
    except BaseExceptionGroup as group:
        # The stream task's error (the server is down) is the caller's answer, not a crash.
        fault = next((exc for exc in leaves(group) if isinstance(exc, AgentationError)), None)
        if fault is None:
            raise
        raise fault from None


async def _watch_remote(
    remote: AsyncRemoteClient, session_id: str | None, batch_window: float, timeout: float
) -> JsonObject:
    deadline = trio.current_time() + timeout
    send, events = batches.event_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(follow_remote, remote, session_id, send, retry_after=1.0))
        try:
            pending = await remote.pending(session_id)
            if pending:
                return _batch(pending)
            while True:
                batch = await batches.next_batch(events, session_id, batch_window, deadline)
                if not batch:
                    return _timed_out(timeout)
                still_pending = []
                for annotation_id in dict.fromkeys(batches.created_ids(batch)):
                    try:
                        annotation = await remote.get_annotation(annotation_id)
                    except AnnotationNotFound:
                        continue
                    if annotation.get("status") == "pending":
                        still_pending.append(annotation)
                if still_pending:
                    return _batch(still_pending)
                if trio.current_time() >= deadline:
                    return _timed_out(timeout)
        finally:
            nursery.cancel_scope.cancel()


async def follow_remote(
    remote: AsyncRemoteClient,
    session_id: str | None,
    send: trio.MemorySendChannel[Event],
    *,
    retry_after: float,
    reachable: Callable[[AgentationError | None], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed `send` with the remote events, reconnecting (from the last one seen) when the stream drops.

    Reports started once the first connection is made. Without `reachable`, a
    first connection that fails raises its `AgentationError`; with it, the task
    starts anyway and `reachable` hears of each change: the error when the
    server cannot be reached, None when it can again.
    """
    last_id: str | None = None
    opened = False
    down = False

    def on_open() -> None:
        nonlocal opened, down, task_status
        if not opened:
            opened = True
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
        if down and reachable is not None:
            reachable(None)
        down = False

    while True:
        try:
            async with aclosing(remote.events(session_id, last_id, on_open=on_open)) as events:
                async for event in events:
                    last_id = str(event.sequence)
                    await send.send(event)
        except AgentationError as exc:
            if reachable is None and not opened:
                raise  # the first connection failed: the caller hears of it now
            if not opened:
                opened = True
                task_status.started()  # watching begins anyway; events come once the server is back
                task_status = trio.TASK_STATUS_IGNORED
            if not down and reachable is not None:
                reachable(exc)
            down = True
        await trio.sleep(retry_after)
