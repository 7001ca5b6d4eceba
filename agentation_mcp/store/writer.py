"""The writer: the one task that writes the store.

Invariants:

* Only the writer task calls `store.apply`; callers send it commands through a
  bounded mailbox and wait for their reply, so writes are serial by
  construction and callers feel back-pressure when it is busy.
* Group commit: the writer takes every command already queued (up to
  `max_batch`) into one `BEGIN IMMEDIATE` transaction, each inside its own
  SAVEPOINT, so one failing command is rolled back alone and one fsync
  acknowledges them all.
* The transaction is one synchronous function with no `await` in it, so
  cancellation cannot split it. It runs on the trio thread when the write
  lock is free (measured: cheaper than handing every batch to a thread,
  where the batch's Python work and the event loop fight over the GIL), and
  on the database thread (`DatabaseThread`) when it must wait for another
  process's lock. The disk flush that makes it durable runs on the database
  thread too (`durable`, see `store.WalSync`), so the event loop keeps
  serving while the disk works; except when a batch of one command commits
  with nothing else queued or being flushed, and the disk flushes quickly
  (`quick_flush`): then the writer flushes, publishes and replies itself,
  with no hop to the database thread and back (which cost as much as the
  fsync).
* A reply means committed and flushed: callers get their result, and the hub
  the events, only after COMMIT and the flush. A caller cancelled while
  waiting may still have had its command committed.
* Closing the writer lets it finish everything already queued, commit it and
  return.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

import outcome
import trio

from ..commands import Command
from ..errors import InternalError, StoreBusy, StoreClosed, StoreFault
from ..models import Event, json_bytes
from .connection import Connection, LockWait
from .hub import Hub
from .transactions import CommandOutcome, commit_batch, try_commit_batch

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Reply:
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome[Any] | None = None


class _Envelope(NamedTuple):
    """A command in the mailbox, with where its caller waits for the outcome."""

    command: Command
    reply: _Reply


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    queued: int
    commands: int
    batches: int
    largest_batch: int


class Writer:
    """The handle callers use: `await writer.submit(command)`."""

    def __init__(self, send: trio.MemorySendChannel[_Envelope], receive: trio.MemoryReceiveChannel[_Envelope]):
        self._send = send
        self._receive = receive
        self.commands = 0
        self.batches = 0
        self.largest_batch = 0

    async def submit(self, command: Command, queued: Callable[[], None] | None = None) -> Any:
        """Apply `command` and return its result once it is committed.

        `queued`, when given, is called once the command is in the mailbox,
        before its commit. Raises the command's `AgentationError`, or
        `StoreClosed` after `close`.
        """
        result, _ = await self._committed(command, queued)
        return result

    async def submit_json(self, command: Command) -> bytes:
        """`submit`, with the result as compact JSON.

        When the result is also the payload of an event the command caused (a
        created or changed annotation), the JSON the event already carries is
        reused instead of encoding the same object again.
        """
        result, events = await self._committed(command)
        for event in events:
            if event.payload is result and event.payload_json is not None:
                return event.payload_json.encode()
        return json_bytes(result)

    async def _committed(self, command: Command, queued: Callable[[], None] | None = None) -> tuple[Any, list[Event]]:
        reply = _Reply()
        envelope = _Envelope(command, reply)
        # `send` yields even when the mailbox has room, and the wait for the reply yields again: with
        # room, the command goes in without that first trip through the scheduler (a cancelled caller
        # still submits nothing).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            try:
                self._send.send_nowait(envelope)
            except trio.WouldBlock:
                await self._send.send(envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StoreClosed() from None
        if queued is not None:
            queued()
        await reply.done.wait()
        assert reply.result is not None
        committed: tuple[Any, list[Event]] = reply.result.unwrap()
        return committed

    def close(self) -> None:
        """Stop taking commands; those already queued are still committed."""
        self._send.close()

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            self._send.statistics().current_buffer_used, self.commands, self.batches, self.largest_batch
        )


class DatabaseThread:
    """The one thread the writer's transactions run on, one at a time.

    A job cannot be cancelled once handed over: the caller waits for its
    outcome whatever happens, so a transaction is never split from its
    reply. (This is what `trio.to_thread.run_sync` with a limiter of one
    gives, minus the thread cache, limiter and context copy it sets up for
    each call.)
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], trio.lowlevel.TrioToken, trio.lowlevel.Task] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="agentation-database", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, token, task = job
            result = outcome.capture(fn)
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    async def run(self, fn: Callable[[], T]) -> T:
        self._jobs.put((fn, trio.lowlevel.current_trio_token(), trio.lowlevel.current_task()))
        result: T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    def stop(self) -> None:
        self._jobs.put(None)


async def run_writer(
    conn: Connection,
    hub: Hub,
    *,
    in_thread: bool = True,
    durable: Callable[[], None] | None = None,
    quick_flush: Callable[[], bool] | None = None,
    lock_wait: LockWait | None = None,
    mailbox: int = 64,
    max_batch: int = 256,
    task_status: trio.TaskStatus[Writer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own `conn` until the writer is closed; reports its `Writer` handle when ready.

    Each batch runs on the trio thread when the write lock is free at once,
    and on the database thread when another process holds it (waiting for a
    lock must not stop the event loop). `durable`, when given, runs on the
    database thread after each COMMIT and before any caller hears of it
    (see `store.WalSync`); `quick_flush`, when given, is tried first on the
    trio thread for a lone command (`WalSync.flush_if_quick`: True when it
    flushed). `lock_wait`, when given, is how a batch on the
    database thread waits for the lock (see `store.LockWait`).
    `in_thread=False` keeps everything on the trio thread: for the in-memory
    store, and for tests on trio's virtual clock.
    """
    send, receive = trio.open_memory_channel[_Envelope](mailbox)
    writer = Writer(send, receive)
    database = DatabaseThread() if in_thread else None
    if lock_wait is not None:
        lock_wait.install(conn)
    task_status.started(writer)
    try:
        await _serve(writer, receive, conn, hub, database, durable, quick_flush, lock_wait, max_batch)
    finally:
        if database is not None:
            database.stop()


Committed = list[CommandOutcome]
"""The outcome of each command of one committed batch, in order."""
_UNFLUSHED = 64  # committed batches waiting for their flush before the writer stops taking more


async def _serve(
    writer: Writer,
    receive: trio.MemoryReceiveChannel[_Envelope],
    conn: Connection,
    hub: Hub,
    database: DatabaseThread | None,
    durable: Callable[[], None] | None,
    quick_flush: Callable[[], bool] | None,
    lock_wait: LockWait | None,
    max_batch: int,
) -> None:
    """Commit batches as they come; each is answered once `durable` has run after it.

    The flush runs in its own task: while the disk flushes one batch, the
    next is already being committed, and one flush answers every batch
    committed before it started.
    """
    flushes, flushed = trio.open_memory_channel[tuple[list[_Envelope], Committed]](_UNFLUSHED)
    unflushed: deque[int] = deque()  # the first sequence of each committed batch not yet answered
    in_flight = [0]  # batches handed to `_answer` and not yet answered
    health = _Health()
    if database is None or durable is None:
        quick_flush = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, flushed, hub, database, durable, unflushed, in_flight)
        async with receive, flushes:
            async for first in receive:
                batch = [first]
                while len(batch) < max_batch:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                commands = [envelope.command for envelope in batch]
                waited = False  # for the lock, on the database thread: other tasks ran since its COMMIT
                try:
                    if database is None:
                        results = commit_batch(conn, commands)
                    else:
                        tried = try_commit_batch(conn, commands, lock_wait)
                        if tried is None:
                            waited = True
                            tried = await database.run(partial(commit_batch, conn, commands))
                        results = tried
                except Exception:
                    # `commit_batch` answers every failure it knows of; this is a bug, and the writer lives on.
                    log.exception("[Store] Committing a batch of %d commands failed", len(commands))
                    results = [outcome.Error(InternalError()) for _ in commands]
                health.saw(results)
                writer.commands += len(batch)
                writer.batches += 1
                writer.largest_batch = max(writer.largest_batch, len(batch))
                first_sequence = _first_sequence(results)
                if (
                    quick_flush is not None
                    and first_sequence is not None
                    and len(batch) == 1
                    and not waited
                    and not in_flight[0]
                    and not receive.statistics().current_buffer_used
                    and _flushed_here(quick_flush)
                ):
                    # Nothing was awaited since COMMIT, so no listener can have heard of it before now.
                    _publish_and_reply(hub, batch, results)
                    continue
                if first_sequence is not None:
                    unflushed.append(first_sequence)
                    hub.hold_from(unflushed[0])
                in_flight[0] += 1
                await flushes.send((batch, results))


class _Health:
    """Logs when writes start failing for a storage fault, and when they succeed again: once each, not per batch."""

    def __init__(self) -> None:
        self.failing: str | None = None

    def saw(self, results: Committed) -> None:
        for result in results:
            if isinstance(result, outcome.Value):
                if self.failing is not None:
                    log.info("[Store] Writes succeed again")
                    self.failing = None
                return
        for result in results:
            if isinstance(result, outcome.Error) and isinstance(result.error, StoreFault):
                if not isinstance(result.error, StoreBusy) and str(result.error) != self.failing:
                    self.failing = str(result.error)
                    log.error("[Store] Writes are failing: %s", self.failing)
                return


def _flushed_here(quick_flush: Callable[[], bool]) -> bool:
    """`quick_flush()`, with a failing flush logged as the database thread's flush logs it."""
    try:
        return quick_flush()
    except OSError:
        log.exception("[Store] Could not flush the store's write-ahead log to disk")
        return True


def _publish_and_reply(hub: Hub, batch: list[_Envelope], results: Committed) -> None:
    for result in results:
        if isinstance(result, outcome.Value):
            hub.publish(result.value[1])
    for envelope, result in zip(batch, results, strict=True):
        envelope.reply.result = result
        envelope.reply.done.set()


def _first_sequence(results: Committed) -> int | None:
    sequences = [events[0].sequence for r in results if isinstance(r, outcome.Value) and (events := r.value[1])]
    return min(sequences, default=None)


async def _answer(
    flushed: trio.MemoryReceiveChannel[tuple[list[_Envelope], Committed]],
    hub: Hub,
    database: DatabaseThread | None,
    durable: Callable[[], None] | None,
    unflushed: deque[int],
    in_flight: list[int],
) -> None:
    """Flush committed batches (all that are waiting, at once), then publish their events and reply, in order.

    The events are published straight from the batches before the hold is
    lifted: lifting it first would have a tail that looked meanwhile read
    the same events back from the table.
    """
    async with flushed:
        async for first in flushed:
            ready = [first]
            while True:
                try:
                    ready.append(flushed.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            # Only changes that caused events need the flush; presence rows (no events) need no durability,
            # and the next flush covers them anyway.
            committed = any(isinstance(r, outcome.Value) and r.value[1] for _, results in ready for r in results)
            if durable is not None and database is not None and committed:
                try:
                    await database.run(durable)
                except OSError:
                    log.exception("[Store] Could not flush the store's write-ahead log to disk")
            # Everything in `ready` is on disk now: hold back only what was committed after it.
            for _ in range(sum(1 for _, results in ready if _first_sequence(results) is not None)):
                unflushed.popleft()
            hold = unflushed[0] if unflushed else None
            hub.hold_from(hold, catch_up=False)
            for batch, results in ready:
                _publish_and_reply(hub, batch, results)
            hub.hold_from(hold)
            in_flight[0] -= len(ready)
