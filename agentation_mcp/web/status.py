"""`GET /status` and `GET /status/events`: this server, the processes on its store, who is connected, the counts.

The document keeps the npm server's keys (`mode`, `webhooksConfigured`,
`webhookCount`, `activeListeners`, `agentListeners`) and adds `version`,
`store`, `startedAt`, `processes`, `agents`, `pages` and `counts` (read from
the store's presence tables, so the MCP clients of every process sharing the
store are there), plus `lastPageSeenAt` and `refusedOrigins`.

`/status/events` is an SSE stream of that document: an `event: status`
frame at once, then again each time it changes, and a `: ping` comment
after `ping_interval` seconds without one. The document is built again
when a commit to the store by any process changed it (`PRAGMA
data_version`, looked at every `POLL` seconds); every process's heartbeat is
such a commit every few seconds, so presence that expires without a write
shows too. The document is built once per change however many streams are
open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .. import __version__
from ..errors import StoreFault
from ..models import JsonObject, json_bytes
from ..store import presence, reads
from ..store.heartbeat import Heartbeat
from ..store.reads import Reader
from . import sse
from .wire import ClientGone, Headers, Request

POLL = 0.25  # seconds between looks at the store's data_version while a stream is open


@dataclass(slots=True)
class StatusSource:
    """Builds the status document of one server process."""

    reader: Reader
    npm_keys: Callable[[], JsonObject]
    heartbeat: Heartbeat | None
    store: str
    wall: Callable[[], float] = time.time

    def document(self, npm_keys: JsonObject | None = None) -> JsonObject:
        heartbeat = self.heartbeat
        doc: JsonObject = {
            **(self.npm_keys() if npm_keys is None else npm_keys),
            "version": __version__,
            "store": self.store,
            "startedAt": heartbeat.started_at if heartbeat is not None else None,
        }
        doc.update(presence.status(self.reader, self.wall()))
        return doc


class StatusStreams:
    """Serves `/status/events`: the document again whenever it changes."""

    def __init__(self, source: StatusSource, ping_interval: float) -> None:
        self.source = source
        self.ping_interval = ping_interval
        self._built = b""
        self._built_for: tuple[int, JsonObject] | None = None

    def current(self) -> bytes:
        """The document as JSON, built again only when the store or this process's listeners changed."""
        try:
            version = reads.data_version(self.source.reader)
        except StoreFault:
            version = -1
        npm_keys = self.source.npm_keys()
        if self._built_for != (version, npm_keys):
            self._built = json_bytes(self.source.document(npm_keys))
            self._built_for = (version, npm_keys)
        return self._built

    async def serve(self, request: Request, cors: Headers) -> None:
        headers = [
            *cors,
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        try:
            await request.start_stream(200, headers)
            await request.send(sse.CONNECTED)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, request, nursery.cancel_scope)
                await self._follow(request)
        except ClientGone:
            pass

    async def _follow(self, request: Request) -> None:
        """Send the document whenever it changed, and a ping after `ping_interval` seconds of silence."""
        sent = b""
        last_write = trio.current_time()
        while True:
            document = self.current()
            if document != sent:
                await request.send(b"event: status\ndata: " + document + b"\n\n")
                sent = document
                last_write = trio.current_time()
            elif trio.current_time() - last_write >= self.ping_interval:
                await request.send(sse.PING)
                last_write = trio.current_time()
            await trio.sleep(POLL)


async def _cancel_on_disconnect(request: Request, scope: trio.CancelScope) -> None:
    await request.wait_disconnect()
    scope.cancel()
