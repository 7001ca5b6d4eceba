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
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio

from ..errors import AgentationError, AnnotationNotFound, SessionNotFound
from ..models import ANNOTATION_CREATED, Event, JsonObject, agent_view
from ..store import reads
from ..store.hub import Hub
from ..store.reads import Reader

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
    position = _Position(cursor)
    while True:
        collected: list[str] = []
        with trio.move_on_at(deadline):
            await _gather(hub, position, session_id, collected, first_only=True)
        if not collected:
            return _timed_out(timeout)
        with trio.move_on_after(batch_window):
            await _gather(hub, position, session_id, collected, first_only=False)
        current = reads.annotations_by_id(reader, collected)
        still_pending = [current[i] for i in dict.fromkeys(collected) if current.get(i, {}).get("status") == "pending"]
        if still_pending:
            return _batch(still_pending)
        if trio.current_time() >= deadline:
            return _timed_out(timeout)


class _Position:
    """The last sequence a watch has seen; survives the cancelled waits that update it."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence


async def _gather(
    hub: Hub, position: _Position, session_id: str | None, collected: list[str], *, first_only: bool
) -> None:
    """Append ids of newly created annotations to `collected`; returns after the first if asked."""
    async with aclosing(hub.follow(position.sequence)) as events:
        async for event in events:
            position.sequence = event.sequence
            if event.type == ANNOTATION_CREATED and (session_id is None or event.session_id == session_id):
                collected.append(event.payload["id"])
                if first_only:
                    return


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
        fault = next((exc for exc in _leaves(group) if isinstance(exc, AgentationError)), None)
        if fault is None:
            raise
        raise fault from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


async def _watch_remote(
    remote: AsyncRemoteClient, session_id: str | None, batch_window: float, timeout: float
) -> JsonObject:
    deadline = trio.current_time() + timeout
    send, receive = trio.open_memory_channel[Event](math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(_follow_remote, remote, session_id, send)
        try:
            pending = await remote.pending(session_id)
            if pending:
                return _batch(pending)
            while True:
                collected: list[str] = []
                with trio.move_on_at(deadline):
                    await _gather_created(receive, collected, first_only=True)
                if not collected:
                    return _timed_out(timeout)
                with trio.move_on_after(batch_window):
                    await _gather_created(receive, collected, first_only=False)
                still_pending = []
                for annotation_id in dict.fromkeys(collected):
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


async def _follow_remote(
    remote: AsyncRemoteClient,
    session_id: str | None,
    send: trio.MemorySendChannel[Event],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed `send` with the remote events, reconnecting (from the last one seen) when the stream drops.

    Reports started once the first connection is made; raises `RemoteUnavailable` if that one fails.
    """
    from .remote import RemoteUnavailable

    last_id: str | None = None
    opened = False

    def on_open() -> None:
        nonlocal opened, task_status
        if not opened:
            opened = True
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED

    while True:
        try:
            async with aclosing(remote.events(session_id, last_id, on_open=on_open)) as events:
                async for event in events:
                    last_id = str(event.sequence)
                    send.send_nowait(event)
        except RemoteUnavailable:
            if not opened:
                raise  # the first connection failed: the caller hears of it now
        await trio.sleep(1)


async def _gather_created(receive: trio.MemoryReceiveChannel[Event], collected: list[str], *, first_only: bool) -> None:
    async for event in receive:
        if event.type == ANNOTATION_CREATED:
            collected.append(event.payload["id"])
            if first_only:
                return
