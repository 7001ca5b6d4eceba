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
  serving while the disk works; except when a small batch (up to
  `QUICK_BATCH` commands) commits with nothing else queued or being
  flushed, and the disk flushes quickly (`quick_flush`): then the writer
  flushes, publishes and replies itself, with no hop to the database thread
  and back (which cost as much as the fsync, and with a few clients writing
  more: the two threads' handing the GIL back and forth). A larger batch
  means many writers: its flush stays off the loop, which meanwhile reads
  their next requests.
* The caller's own task may stand in for the writer task. When the writer
  is idle (waiting for its mailbox, nothing queued, nothing being flushed),
  the event loop has waited idle for I/O since the write before (so this
  one came alone, from outside: writes that follow each other with work in
  between, such as a burst of tool calls passing their turns, or several
  connections' requests, batch better through the mailbox), no other task
  waits to run, and a flush now would be quick, `submit` commits, flushes
  and publishes the command itself, in one synchronous step, exactly as
  the writer would have for a lone command: the same connection, no
  `await` between the check and the reply, so writes stay serial and in
  order. This saves the two trips through trio's scheduler (to the writer
  task and back) that a lone write otherwise costs. Anything else (a batch
  forming, a lock held by another process, a slow disk, a checkpoint due)
  goes through the mailbox.
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
from typing import Any, NamedTuple, Protocol, TypeVar

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
    committed_by_caller: int  # commands the caller's own task committed (see the module's docstring)


class QuickFlush(Protocol):
    """A flush the writer may do on the trio thread (`store.WalSync` is one)."""

    def quick(self) -> bool:
        """Whether a flush now is expected to be quick, with no checkpoint due."""
        ...

    def flush(self) -> None:
        """Flush the WAL to disk, here and now."""
        ...


class Writer:
    """The handle callers use: `await writer.submit(command)`."""

    def __init__(self, send: trio.MemorySendChannel[_Envelope], receive: trio.MemoryReceiveChannel[_Envelope]):
        self._send = send
        self._receive = receive
        self._here: Callable[[_Envelope], bool] | None = None  # set by the writer task while it may be stood in for
        self.in_mailbox = 0  # commands sent and not yet taken by the writer task
        self.commands = 0
        self.batches = 0
        self.largest_batch = 0
        self.committed_by_caller = 0

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
        if self._here is None or not self._here(envelope):
            # Counted until the writer task takes it: a command handed straight to the waiting writer
            # task is in no buffer, and no caller may commit its own before the writer task has this one.
            self.in_mailbox += 1
            try:
                try:
                    self._send.send_nowait(envelope)
                except trio.WouldBlock:
                    await self._send.send(envelope)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self.in_mailbox -= 1
                raise StoreClosed() from None
            except BaseException:
                self.in_mailbox -= 1
                raise
        if queued is not None:
            queued()
        if not reply.done.is_set():  # committed here, it usually is: then no trip through the scheduler
            await reply.done.wait()
        assert reply.result is not None
        committed: tuple[Any, list[Event]] = reply.result.unwrap()
        return committed

    def close(self) -> None:
        """Stop taking commands; those already queued are still committed."""
        self._here = None
        self._send.close()

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            self._send.statistics().current_buffer_used,
            self.commands,
            self.batches,
            self.largest_batch,
            self.committed_by_caller,
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
    quick_flush: QuickFlush | None = None,
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
    (see `store.WalSync`); `quick_flush`, when given, flushes a small batch
    on the trio thread instead when it says that is quick, and lets callers
    commit a lone command on their own task (see the module's docstring).
    `lock_wait`, when given, is how a batch on the
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
QUICK_BATCH = 8  # the largest batch flushed on the trio thread (when the flush is quick)


async def _serve(
    writer: Writer,
    receive: trio.MemoryReceiveChannel[_Envelope],
    conn: Connection,
    hub: Hub,
    database: DatabaseThread | None,
    durable: Callable[[], None] | None,
    quick_flush: QuickFlush | None,
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
    busy = False  # the writer task holds a batch (committing it, or waiting for the lock or the mailbox to flush)
    idle = _IdleWaits()
    idle_at_last_write = -1  # `idle.count` when the latest write was submitted
    health = _Health()
    if database is None or durable is None:
        quick_flush = None

    def counted(commands: list[Command], results: Committed) -> None:
        health.saw(results)
        writer.commands += len(commands)
        writer.batches += 1
        writer.largest_batch = max(writer.largest_batch, len(commands))

    def commit_here(envelope: _Envelope) -> bool:
        """Commit a lone command on the caller's task; False, with nothing done, if not now.

        Once committed, the command is flushed, published and answered here
        too, unless its commit made a checkpoint due: then its flush (and the
        checkpoint) go to the database thread the writer task's way.
        """
        nonlocal idle_at_last_write
        assert quick_flush is not None
        alone = idle.count != idle_at_last_write
        idle_at_last_write = idle.count
        if (
            not alone
            or busy
            or in_flight[0]
            or writer.in_mailbox
            or trio.lowlevel.current_statistics().tasks_runnable
            or not quick_flush.quick()
        ):
            return False
        batch = [envelope]
        results = _try_commit(conn, [envelope.command], lock_wait)
        if results is None:
            return False  # another process holds the write lock: the writer task waits for it
        counted([envelope.command], results)
        writer.committed_by_caller += 1
        first_sequence = _first_sequence(results)
        if first_sequence is None:
            _publish_and_reply(hub, batch, results)  # nothing changed that needs the disk
        elif quick_flush.quick():
            _flush_here(quick_flush)
            # Nothing was awaited since COMMIT, so no listener can have heard of it before now.
            _publish_and_reply(hub, batch, results)
        else:
            unflushed.append(first_sequence)
            hub.hold_from(unflushed[0])
            in_flight[0] += 1
            flushes.send_nowait((batch, results))  # nothing was in flight: there is room
        return True

    if quick_flush is not None:
        trio.lowlevel.add_instrument(idle)
        writer._here = commit_here
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, flushed, hub, database, durable, unflushed, in_flight)
            async with receive, flushes:
                async for first in receive:
                    busy = True
                    batch = [first]
                    while len(batch) < max_batch:
                        try:
                            batch.append(receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    writer.in_mailbox -= len(batch)
                    commands = [envelope.command for envelope in batch]
                    waited = False  # for the lock, on the database thread: other tasks ran since its COMMIT
                    if database is None:
                        results = _try_commit(conn, commands, None, wait=True)
                    else:
                        results = _try_commit(conn, commands, lock_wait)
                        if results is None:
                            waited = True
                            results = await database.run(partial(_try_commit, conn, commands, None, wait=True))
                    assert results is not None
                    counted(commands, results)
                    first_sequence = _first_sequence(results)
                    if (
                        quick_flush is not None
                        and first_sequence is not None
                        and len(batch) <= QUICK_BATCH
                        and not waited
                        and not in_flight[0]
                        and not receive.statistics().current_buffer_used
                        and quick_flush.quick()
                    ):
                        _flush_here(quick_flush)
                        # Nothing was awaited since COMMIT, so no listener can have heard of it before now.
                        _publish_and_reply(hub, batch, results)
                        busy = False
                        continue
                    if first_sequence is not None:
                        unflushed.append(first_sequence)
                        hub.hold_from(unflushed[0])
                    in_flight[0] += 1
                    await flushes.send((batch, results))
                    busy = False
    finally:
        writer._here = None
        if quick_flush is not None:
            trio.lowlevel.remove_instrument(idle)


class _IdleWaits(trio.abc.Instrument):
    """Counts the times trio's scheduler waited for I/O with nothing to run (a wait with a timeout: with
    a task ready to run, it only polls)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self.count += 1


def _try_commit(
    conn: Connection, commands: list[Command], lock_wait: LockWait | None, *, wait: bool = False
) -> Committed | None:
    """The batch's outcomes; None, with nothing done, if another process holds the lock and `wait` is False."""
    try:
        if wait:
            return commit_batch(conn, commands)
        return try_commit_batch(conn, commands, lock_wait)
    except Exception:
        # `commit_batch` answers every failure it knows of; this is a bug, and the writer lives on.
        log.exception("[Store] Committing a batch of %d commands failed", len(commands))
        return [outcome.Error(InternalError()) for _ in commands]


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


def _flush_here(quick_flush: QuickFlush) -> None:
    """`quick_flush.flush()`, with a failing flush logged as the database thread's flush logs it."""
    try:
        quick_flush.flush()
    except OSError:
        log.exception("[Store] Could not flush the store's write-ahead log to disk")


def _publish(hub: Hub, results: Committed) -> None:
    for result in results:
        if isinstance(result, outcome.Value):
            hub.publish(result.value[1])


def _publish_and_reply(hub: Hub, batch: list[_Envelope], results: Committed) -> None:
    _publish(hub, results)
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
