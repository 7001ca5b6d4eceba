"""The SSE endpoints (`/events`, `/sessions/:id/events`) and the registry of open streams.

A stream subscribes to the hub first, then replays what the store holds
after its cursor (`Last-Event-ID`, or now), then follows live events,
dropping repeats by sequence; a stream that falls behind the hub is cut off
there and catches up from the table again, so nothing is missed or
repeated. Replay goes out a page at a time, framed straight from the stored
JSON. A live event is framed once for every listener: each listener only
writes those bytes to its socket, and sends whatever has queued up for it
in one write.

The registry answers `/status` and the `delivered.sseListeners` count of an
action request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from . import sse
from .http_wire import ClientGone, Headers, Request, chunk
from .hub import Hub, Subscription
from .models import ANNOTATION_CREATED, Event, now_iso
from .store import StoreReader

_FRAME_CACHE = 512
_REPLAY_PAGE = 1000
_LIVE_BATCH = 64
_Write = Callable[[bytes], Awaitable[None]]


@dataclass(eq=False, slots=True)
class Listener:
    """One open SSE stream."""

    agent: bool
    session_id: str | None
    domain: str | None


class Listeners:
    """The open SSE streams of this process, and which sessions' events each receives."""

    def __init__(self, reader: StoreReader) -> None:
        self._reader = reader
        self._open: set[Listener] = set()
        self._hosts: dict[str, str | None] = {}

    def add(self, listener: Listener) -> None:
        self._open.add(listener)

    def discard(self, listener: Listener) -> None:
        self._open.discard(listener)

    @property
    def count(self) -> int:
        return len(self._open)

    @property
    def agents(self) -> int:
        return sum(1 for listener in self._open if listener.agent)

    def host_of(self, session_id: str) -> str | None:
        """The `host[:port]` of the session's page, as the `?domain=` filter compares it."""
        if session_id not in self._hosts:
            self._hosts[session_id] = sse.url_host(self._reader.session_url(session_id))
        return self._hosts[session_id]

    def wants(self, listener: Listener, session_id: str) -> bool:
        if listener.session_id is not None:
            return session_id == listener.session_id
        return listener.domain is None or listener.domain == self.host_of(session_id)

    def receiving(self, session_id: str) -> int:
        """How many agent listeners receive this session's events."""
        return sum(1 for listener in tuple(self._open) if listener.agent and self.wants(listener, session_id))


class EventStreams:
    """Serves the SSE endpoints of one server process."""

    def __init__(self, hub: Hub, reader: StoreReader, listeners: Listeners, ping_interval: float) -> None:
        self.hub = hub
        self.reader = reader
        self.listeners = listeners
        self.ping_interval = ping_interval
        self._frames: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()

    def _framed(self, event: Event) -> tuple[bytes, bytes]:
        """The event's frame, plain and as one chunk, encoded once however many listeners send it."""
        framed = self._frames.get(event.sequence)
        if framed is None:
            raw = sse.event_frame(event)
            framed = self._frames[event.sequence] = (raw, chunk(raw))
            if len(self._frames) > _FRAME_CACHE:
                self._frames.popitem(last=False)
        return framed

    async def serve(self, request: Request, cors: Headers, session_id: str | None, query: dict[str, str]) -> None:
        agent = query.get("agent") == "true"
        domain = query.get("domain") if session_id is None else None
        listener = Listener(agent=agent, session_id=session_id, domain=domain)
        resume = sse.parse_last_event_id(request.headers.get("last-event-id"))
        cursor = self.reader.last_sequence() if resume is None else resume
        lock = trio.Lock()

        async def write(data: bytes) -> None:
            async with lock:
                await request.send(data)

        self.listeners.add(listener)
        try:
            await request.start_stream(
                200,
                [
                    *cors,
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            )
            await write(sse.connected(domain))
            if agent and session_id is None:
                await write(self._initial_sync(domain))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, request, nursery.cancel_scope)
                nursery.start_soon(self._keepalive, write)
                await self._follow(request, listener, cursor, lock)
        except ClientGone:
            pass
        finally:
            # The stream ends with the connection: it is never marked as answered in full.
            self.listeners.discard(listener)

    async def _follow(self, request: Request, listener: Listener, cursor: int, lock: trio.Lock) -> None:
        """Replay from `cursor`, then send live events, forever; a lag goes back to the table."""
        wants = self.listeners.wants
        while True:
            with self.hub.subscribe() as sub:
                while page := self.reader.event_rows_after(cursor, _REPLAY_PAGE):
                    frames = [sse.frame(*row) for row in page if wants(listener, row[1])]
                    cursor = page[-1][2]
                    if frames:
                        async with lock:
                            await request.send(b"".join(frames))
                cursor = await self._live(request, listener, sub, cursor, lock)
            if not sub.lagged:
                return

    async def _live(self, request: Request, listener: Listener, sub: Subscription, cursor: int, lock: trio.Lock) -> int:
        wants = self.listeners.wants
        async for first in sub.receive:
            events = [first]
            while len(events) < _LIVE_BATCH:
                try:
                    events.append(sub.receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            fresh = [e for e in events if e.sequence > cursor and wants(listener, e.session_id)]
            cursor = max(cursor, events[-1].sequence)
            if not fresh:
                continue
            async with lock:
                if len(fresh) == 1:
                    raw, chunked = self._framed(fresh[0])
                    await request.send_encoded(chunked if request.chunked else raw)
                else:
                    await request.send(b"".join(self._framed(e)[0] for e in fresh))
        return cursor

    def _initial_sync(self, domain: str | None) -> bytes:
        frames: list[bytes] = []
        for annotation in self.reader.pending_annotations(None):
            if domain is not None and self.listeners.host_of(annotation["sessionId"]) != domain:
                continue
            data = {
                "type": ANNOTATION_CREATED,
                "sessionId": annotation["sessionId"],
                "timestamp": annotation["createdAt"],
                "sequence": 0,
                "payload": annotation,
            }
            frames.append(sse.sync_frame(data, ANNOTATION_CREATED, 0))
        complete = {"domain": domain if domain is not None else "all", "count": len(frames), "timestamp": now_iso()}
        frames.append(sse.sync_frame(complete, "sync.complete", None))
        return b"".join(frames)

    async def _keepalive(self, write: _Write) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            await write(sse.PING)


async def _cancel_on_disconnect(request: Request, scope: trio.CancelScope) -> None:
    await request.wait_disconnect()
    scope.cancel()
