"""The broadcast hub: persisted events fanned out to listeners, in sequence order.

Invariants:

* `publish` never waits. Each subscriber has a small bounded buffer; one whose
  buffer is full is cut off (its channel closes and `lagged` is set) instead of
  slowing the writer or anyone else.
* Nothing is lost by being cut off: every event is already in the `events`
  table, and `follow` catches a lagged listener up from there by sequence,
  then subscribes again.
* Events go out strictly in sequence order, each once. When the next event is
  not `last_published + 1`, the missing ones (committed by another process, or
  by this one's reader before the writer got here) are read from the table and
  published first; an event at or below `last_published` is dropped as a repeat.
* Other processes' commits are noticed by `run_tail`, which polls
  `PRAGMA data_version` on the read connection while anyone is subscribed:
  every 5 ms while commits come, backing off to every 100 ms when idle.
* A failed table read (a storage fault) publishes nothing past the gap: the
  events stay in the table, and the tail reads them again on its next poll.
* A sink is a subscriber that is called with each event as it is published,
  for a consumer that never waits (the SSE fan-out, which only writes to
  sockets that can take the bytes at once). A sink must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from ..errors import StoreFault
from ..models import Event

log = logging.getLogger(__name__)
# How often `run_tail` polls for other processes' commits: while they come, and at most while none do.
TAIL_FASTEST = 0.005
TAIL_SLOWEST = 0.1

Sink = Callable[[Event], None]
ReadEvents = Callable[[int, int | None], list[Event]]
"""`read(after, upto)`: persisted events with `after < sequence <= upto`, in order (a page of them)."""


@dataclass(frozen=True, slots=True)
class HubStatistics:
    subscribers: int
    published: int
    lagged: int
    last_published: int


class Subscription:
    """One listener's view of the hub: a bounded channel of events."""

    def __init__(self, buffer: int) -> None:
        self._send, self.receive = trio.open_memory_channel[Event](buffer)
        self.lagged = False

    def deliver(self, event: Event) -> bool:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.lagged = True
            self._send.close()
            return False
        except trio.BrokenResourceError:  # the listener already left
            return False
        return True

    def close(self) -> None:
        self._send.close()


class Hub:
    def __init__(self, read_events: ReadEvents, last_sequence: int, *, buffer: int = 256) -> None:
        self._read_events = read_events
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()
        self._sinks: list[Sink] = []
        self._hold: int | None = None
        self._held_back = False
        self._behind = False  # a table read failed; the tail retries it
        self._subscriber_arrived = trio.Event()
        self.last_published = last_sequence
        self._published = 0
        self._lagged = 0

    def statistics(self) -> HubStatistics:
        return HubStatistics(len(self._subscribers), self._published, self._lagged, self.last_published)

    def publish(self, events: Iterable[Event]) -> None:
        """Hand committed events to every subscriber. Never blocks."""
        for event in events:
            if event.sequence <= self.last_published:
                continue
            if not self._subscribers and not self._sinks:
                # Nobody to deliver to: skip the table read for any gap.
                self.last_published = event.sequence
                self._published += 1
                continue
            if event.sequence > self.last_published + 1 and not self._publish_from_table(upto=event.sequence - 1):
                return
            self._deliver(event)

    def catch_up(self) -> None:
        """Publish whatever the table holds beyond `last_published` (and below the hold)."""
        self._publish_from_table(upto=None)

    def hold_from(self, sequence: int | None, *, catch_up: bool = True) -> None:
        """Publish nothing from the table at or above `sequence`; None lifts the hold.

        The writer holds its own committed events back while the disk flushes
        them: the table already shows them to the cross-process tail, but a
        listener must not hear of a write that a power loss could still undo.
        Lifting or raising the hold publishes what it held back, unless
        `catch_up` is False (the writer is about to publish those events
        itself, and then moves the hold again).
        """
        self._hold = sequence
        if catch_up and self._held_back and (self._subscribers or self._sinks):
            self._held_back = False
            self.catch_up()

    def _publish_from_table(self, upto: int | None) -> bool:
        """Publish persisted events up to `upto`; False if the table could not be read."""
        if self._hold is not None and (upto is None or upto >= self._hold):
            upto = self._hold - 1
            self._held_back = True
        if upto is not None and upto <= self.last_published:
            return True
        while True:
            try:
                page = self._read_events(self.last_published, upto)
            except StoreFault as exc:
                if not self._behind:
                    log.warning("[Hub] Events could not be read from the store: %s", exc)
                self._behind = True
                return False
            self._behind = False
            for event in page:
                self._deliver(event)
            if not page or (upto is not None and self.last_published >= upto):
                return True

    def _deliver(self, event: Event) -> None:
        self.last_published = event.sequence
        self._published += 1
        for sink in tuple(self._sinks):  # a sink may remove itself
            sink(event)
        for sub in tuple(self._subscribers):
            if not sub.deliver(event):
                self._subscribers.discard(sub)
                if sub.lagged:
                    self._lagged += 1

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Receive every event published from now on, until the block ends or the listener lags."""
        sub = Subscription(self._buffer)
        self._subscribers.add(sub)
        self._subscriber_arrived.set()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub.close()
            sub.receive.close()

    def add_sink(self, sink: Sink) -> None:
        """Call `sink` with every event published from now on, until `remove_sink`."""
        self._sinks.append(sink)
        self._subscriber_arrived.set()

    def remove_sink(self, sink: Sink) -> None:
        self._sinks.remove(sink)

    def backlog(self, after: int) -> Iterator[Event]:
        """Persisted events with a sequence above `after`, read from the table page by page."""
        while page := self._read_events(after, None):
            yield from page
            after = page[-1].sequence

    async def follow(self, after: int) -> AsyncGenerator[Event, None]:
        """Every event with a sequence above `after`, in order, each once, without end.

        Subscribes first and reads the backlog second, so no commit falls
        between the two; a lag sends it back to the table from its cursor.
        """
        cursor = after
        while True:
            with self.subscribe() as sub:
                for event in self.backlog(cursor):
                    yield event
                    cursor = event.sequence
                async for event in sub.receive:
                    if event.sequence > cursor:
                        yield event
                        cursor = event.sequence
            if not sub.lagged:
                return

    async def run_tail(
        self, data_version: Callable[[], int], *, fastest: float = TAIL_FASTEST, slowest: float = TAIL_SLOWEST
    ) -> None:
        """Publish commits made by other processes; polls only while someone listens.

        Polls every `fastest` seconds while commits keep coming, and backs off
        (doubling) to every `slowest` seconds while nothing changes: an open
        toolbar page keeps a listener here all day, and polling it at full
        speed cost an idle server several percent of a core.
        """
        seen = -1
        interval = fastest
        while True:
            while not self._subscribers and not self._sinks:
                # Only this loop replaces the event, and only after checking: no wake-up is lost.
                self._subscriber_arrived = trio.Event()
                await self._subscriber_arrived.wait()
                interval = fastest
            await trio.sleep(interval)
            try:
                version = data_version()
            except StoreFault:
                continue
            if version != seen or self._behind:
                seen = version
                interval = fastest
                self.catch_up()
            else:
                interval = min(interval * 2, slowest)
