"""This process's presence, kept in memory and written to the store by a heartbeat.

The front ends tell `Heartbeat` what they serve: each MCP connection through
its `Agent` (`connected`, `called`, `watching`, `stopped_watching`,
`disconnected`), each toolbar page's SSE stream (`page_opened`,
`page_closed`), each refused page origin (`origin_refused`), and whether
this process owns the HTTP port. None of that writes anything: a tool call
only sets a time in memory. `run` writes the whole snapshot through the
writer (one `RecordPresence` command) every `BEAT` seconds, and soon after
a change that someone looking would notice (a client connecting or leaving,
a watch starting or ending, a page opening or closing), several changes
in one write. When it stops, it deletes this process's rows.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import __version__
from ..commands import AgentPresence, EndPresence, PagePresence, ProcessPresence, RecordPresence, RefusedOrigin
from ..errors import AgentationError, StoreFault
from ..models import JsonObject, now_iso
from . import presence
from .presence import HOST
from .reads import Reader
from .writer import Writer

log = logging.getLogger(__name__)

BEAT = 2.0
"""Seconds between heartbeats (well inside `presence.EXPIRY`)."""
SOON = 0.05
"""Seconds a change waits for others to join its write."""
END_WITHIN = 0.5
"""Seconds the last write (deleting this process's rows) may take while the process stops."""
MAX_REFUSED = 32


@dataclass(eq=False, slots=True)
class Agent:
    """One MCP connection's presence: what `initialize` said, and what it does now."""

    heartbeat: Heartbeat
    transport: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_name: str | None = None
    client_version: str | None = None
    connected_at: str | None = None
    last_call: float | None = None  # seconds since the epoch: cheaper to take than a formatted time
    watches: list[str | None] = field(default_factory=list)

    def connected(self, client_info: Mapping[str, Any] | None, transport: str | None = None) -> None:
        """The client's `initialize` arrived, with its `clientInfo` (`name`, `version`)."""
        info = client_info or {}
        name, version = info.get("name"), info.get("version")
        self.client_name = name if isinstance(name, str) else None
        self.client_version = version if isinstance(version, str) else None
        if transport is not None:
            self.transport = transport
        first = self.connected_at is None
        self.connected_at = now_iso()
        self.heartbeat._join(self, first)

    def called(self) -> None:
        """A tool call arrived: remembered, written with the next heartbeat."""
        self.last_call = self.heartbeat.wall()

    def watching(self, session_id: str | None) -> None:
        """An `agentation_watch_annotations` call starts waiting (on one session, or on all)."""
        self.watches.append(session_id)
        self.heartbeat._changed()

    def stopped_watching(self) -> None:
        if self.watches:
            self.watches.pop(0)
        self.heartbeat._changed()

    def disconnected(self) -> None:
        self.heartbeat._leave(self)

    def row(self) -> AgentPresence:
        return AgentPresence(
            id=self.id,
            client_name=self.client_name,
            client_version=self.client_version,
            transport=self.transport,
            connected_at=self.connected_at or now_iso(),
            last_call_at=presence.iso(self.last_call) if self.last_call is not None else None,
            watching=bool(self.watches),
            watching_session_id=self.watches[-1] if self.watches else None,
        )


class Heartbeat:
    """The presence of this process; `run` keeps it written to the store."""

    def __init__(self, *, wall: Callable[[], float] = time.time, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.instance = f"{self.pid}-{uuid.uuid4().hex[:12]}"
        self.started_at = now_iso()
        self.wall = wall
        self.owns_port = False
        self.port: int | None = None
        self.detail: Callable[[], JsonObject] | None = None
        """What the port owner adds to its row: its `/status` keys (set by the HTTP side)."""
        self._agents: dict[str, Agent] = {}
        self._pages: dict[str, PagePresence] = {}
        self._refused: dict[str, RefusedOrigin] = {}
        self._dirty = trio.Event()
        self._others_seen: set[str] = set()
        self.beats = 0

    # What the front ends report.

    def agent(self, transport: str) -> Agent:
        """A new MCP connection's presence; it counts once `connected` is called."""
        return Agent(self, transport)

    def page_opened(self, session_id: str | None, url: str | None) -> str:
        """A toolbar page's SSE stream opened; returns its id for `page_closed`."""
        first = not any(p.session_id == session_id and p.url == url for p in self._pages.values())
        page = PagePresence(uuid.uuid4().hex, session_id, url, now_iso())
        self._pages[page.id] = page
        if first:
            where = f" (session {session_id})" if session_id else ""
            log.info("[HTTP] Toolbar page connected: %s%s", url or "a page", where)
        self._changed()
        return page.id

    def page_closed(self, page_id: str) -> None:
        if self._pages.pop(page_id, None) is not None:
            self._changed()

    def origin_refused(self, origin: str, path: str) -> None:
        """A request from a page at `origin` was refused by the CORS rules: kept for `doctor`, written with the
        next heartbeat."""
        known = self._refused.get(origin)
        if known is None and len(self._refused) >= MAX_REFUSED:
            return
        count = known.count + 1 if known is not None else 1
        self._refused[origin] = RefusedOrigin(origin, path, now_iso(), count)

    def set_owner(self, owns: bool, port: int | None = None) -> None:
        """This process now listens on the HTTP port (`port`), or no longer does."""
        self.owns_port = owns
        self.port = port if owns else None
        self._changed()

    @property
    def agents(self) -> list[Agent]:
        return list(self._agents.values())

    # Internals.

    def _join(self, agent: Agent, first: bool) -> None:
        self._agents[agent.id] = agent
        if first:
            version = f" {agent.client_version}" if agent.client_version else ""
            name = agent.client_name or "an unnamed client"
            log.info("[MCP] Agent connected: %s%s (%s)", name, version, agent.transport)
        self._changed()

    def _leave(self, agent: Agent) -> None:
        if self._agents.pop(agent.id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        """Write soon: someone looking would notice."""
        self._dirty.set()

    def snapshot(self) -> RecordPresence:
        process = ProcessPresence(
            instance=self.instance,
            pid=self.pid,
            host=HOST,
            version=__version__,
            started_at=self.started_at,
            owns_port=self.owns_port,
            port=self.port,
            detail=self.detail() if self.owns_port and self.detail is not None else {},
        )
        return RecordPresence(
            process=process,
            beat_at=self.wall(),
            agents=tuple(agent.row() for agent in self._agents.values() if agent.connected_at is not None),
            pages=tuple(self._pages.values()),
            refused=tuple(self._refused.values()),
        )

    async def run(
        self,
        writer: Writer,
        reader: Reader | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Write the snapshot every `BEAT` seconds and soon after each change, until cancelled; then delete it.

        With `reader`, while this process owns the port, each beat also logs
        the agents that connected to other processes on the store since the
        last: the port owner's terminal is the one a person watches.
        """
        try:
            await self._beat(writer)
            task_status.started()
            while True:
                with trio.move_on_after(BEAT):
                    await self._dirty.wait()
                    await trio.sleep(SOON)
                self._dirty = trio.Event()
                await self._beat(writer)
                if reader is not None and self.owns_port:
                    self._log_others(reader)
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + END_WITHIN
                try:
                    await writer.submit(EndPresence(self.instance))
                except AgentationError:
                    pass

    def _log_others(self, reader: Reader) -> None:
        try:
            present = presence.agents_present(reader, self.wall())
        except StoreFault:
            return
        others = {row["id"]: row for row in present if row["instance"] != self.instance}
        for agent_id, row in others.items():
            if agent_id not in self._others_seen:
                version = f" {row['client_version']}" if row["client_version"] else ""
                name = row["client_name"] or "an unnamed client"
                log.info("[MCP] Agent connected: %s%s (%s, process %s)", name, version, row["transport"], row["pid"])
        self._others_seen = set(others)

    async def _beat(self, writer: Writer) -> None:
        try:
            await writer.submit(self.snapshot())
        except AgentationError as exc:
            # A full disk or a busy store: the writer has said so once; presence just tries again next beat.
            log.debug("[Store] Presence not written: %s", exc)
        self.beats += 1
