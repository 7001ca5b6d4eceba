"""The writer's quick flush, and its answering of flushed batches without reading its own events back.

* A lone command, with nothing else queued or being flushed, is flushed
  (`WalSync.quick`, `WalSync.flush`) on the trio thread, then published, then
  answered: each answer comes after its own fsync of the WAL.
* So is a small batch (up to `QUICK_BATCH` commands).
* A disk whose flushes are slow, a checkpoint that is due, a larger batch,
  or a command that waited for another process's lock (other tasks ran
  after its COMMIT) goes to the database thread as before.
* `WalSync` counts every flush and the time they took.
* The caller's task stands in for the writer task for a lone command that
  came after the event loop waited idle: same order of flush, publication
  and answer, no batch split, nothing committed for a cancelled or late
  caller, and one client's writes in order whoever commits them.
* When the cross-process tail looked at the store while a batch was being
  flushed, the batch's events still reach listeners from the batch itself,
  not read back from the table.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from agentation_mcp.commands import AddThreadMessage, CreateAnnotation, CreateSession, NewThreadMessage
from agentation_mcp.errors import StoreClosed
from agentation_mcp.models import Event, to_json
from agentation_mcp.store import connection, reads
from agentation_mcp.store.connection import WalSync
from agentation_mcp.store.hub import Hub
from agentation_mcp.store.writer import QUICK_BATCH, Writer

from .conftest import HeldFlush, Store, running_writer

ANNOTATION = {
    "comment": "Make it blue",
    "element": "button",
    "elementPath": "body > button",
    "x": 1,
    "y": 2,
    "timestamp": 1_700_000_000_000,
}


def _spy_on_fsync(monkeypatch: pytest.MonkeyPatch, log: list[tuple[str, Any]]) -> None:
    """Log ("fsync", thread name) for every `os.fsync` from now on."""
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        log.append(("fsync", threading.current_thread().name))

    monkeypatch.setattr(os, "fsync", spy)


def _writer(opened: Store, hub: Hub, sync: WalSync) -> Any:
    return running_writer(opened, hub, in_thread=True, durable=sync, quick_flush=sync)


async def _idle() -> None:
    """Let the event loop wait for I/O with nothing to run, as it does between a client's requests."""
    await trio.sleep(0.001)


async def _burst(writer: Writer, n: int, first_port: int = 3000) -> None:
    """`n` sessions created by `n` tasks that all submit in the same pass of the scheduler."""
    go = trio.Event()

    async def submit(i: int) -> None:
        await go.wait()
        await writer.submit(CreateSession(url=f"http://localhost:{first_port + i}/"))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(submit, i)
        await trio.testing.wait_all_tasks_blocked()
        go.set()


@pytest.mark.anyio
async def test_a_lone_write_is_flushed_on_the_trio_thread_then_published_then_answered(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal_sync.QUICK_SECONDS = 3600.0  # every flush counts as quick, however busy the machine's disk is
    hub = opened.hub()
    log: list[tuple[str, Any]] = []
    hub.add_sink(lambda event: log.append(("published", event.sequence)))
    _spy_on_fsync(monkeypatch, log)
    n = 5
    with trio.fail_after(10):
        async with _writer(opened, hub, wal_sync) as writer:
            await _idle()
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            log.append(("answered", 1))
            for i in range(2, n + 1):
                await _idle()
                await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
                log.append(("answered", i))
    main = threading.current_thread().name
    expected: list[tuple[str, Any]] = []
    for i in range(1, n + 1):
        expected += [("fsync", main), ("published", i), ("answered", i)]
    assert log == expected
    assert wal_sync.flushes == n
    assert wal_sync.flush_seconds > 0
    stats = writer.statistics()
    assert stats.committed_by_caller == n  # each on its caller's task: the writer task never woke for one
    assert stats.commands == n


@pytest.mark.anyio
async def test_a_slow_disk_keeps_every_flush_on_the_database_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal_sync.QUICK_SECONDS = 0.0  # every flush so far counts as slow
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            for i in range(3):
                await writer.submit(CreateSession(url=f"http://localhost:{3000 + i}/"))
                assert len(log) == i + 1  # answered after its flush
    assert log == [("fsync", "agentation-database")] * 3


@pytest.mark.anyio
async def test_a_due_checkpoint_goes_to_the_database_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal_sync.CHECKPOINT_PAGES = 1  # due after every commit
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            await writer.submit(CreateSession(url="http://localhost:3000/"))
    assert log == [("fsync", "agentation-database")]
    assert wal_sync.pages == 0  # and the checkpoint ran there


@pytest.mark.anyio
@pytest.mark.parametrize("size", [2, QUICK_BATCH])
async def test_a_small_batch_is_flushed_on_the_trio_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    wal_sync.QUICK_SECONDS = 3600.0
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            await _idle()
            await _burst(writer, size + 1)  # the first of the pass commits its own; the others form a batch
            stats = writer.statistics()
    assert stats.largest_batch == size
    assert stats.committed_by_caller == 1
    main = threading.current_thread().name
    assert log == [("fsync", main)] * len(log)


@pytest.mark.anyio
async def test_a_large_batch_is_flushed_on_the_database_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    n = 2 * QUICK_BATCH + 2
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            await _burst(writer, n)
            stats = writer.statistics()
    assert stats.commands == n
    assert stats.largest_batch > 1
    assert ("fsync", "agentation-database") in log


@pytest.mark.anyio
async def test_a_batch_flushed_while_the_tail_looked_is_published_from_the_batch_not_the_table(opened: Store) -> None:
    read_back: list[int] = []

    def read_events(after: int, upto: int | None) -> list[Event]:
        events = reads.events_after(opened.reader, after, upto)
        read_back.extend(event.sequence for event in events)
        return events

    hub = Hub(read_events, reads.last_sequence(opened.reader))
    published: list[Event] = []
    hub.add_sink(published.append)
    held = HeldFlush(opened.reader)

    async def submit(writer: Writer) -> None:
        await writer.submit(CreateSession(url="http://localhost:3000/"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(hub.run_tail, held.data_version))
            await trio.testing.wait_all_tasks_blocked()
            async with running_writer(opened, hub, in_thread=True, durable=held.durable) as writer:
                try:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(submit, writer)
                        await held.flushing.wait()
                        await held.tail_looked.wait()
                        assert published == []
                        held.release.set()
                finally:
                    held.release.set()
            nursery.cancel_scope.cancel()
    assert [event.sequence for event in published] == [1]
    assert read_back == []
    assert published[0].payload_json is not None  # the writer's own event, not one decoded from the table


@pytest.mark.anyio
async def test_a_write_that_waited_for_another_process_lock_is_flushed_on_the_database_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other tasks ran while it waited (the tail among them): its flush and publication go the held way."""
    wal_sync.QUICK_SECONDS = 3600.0
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    other = connection.open_write_connection(opened.location)
    try:
        with trio.fail_after(10):
            async with _writer(opened, opened.hub(), wal_sync) as writer:
                other.execute("BEGIN IMMEDIATE")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/"))
                    # Every task blocked: the writer took the command, found the lock held, and waits on its
                    # database thread.
                    await trio.testing.wait_all_tasks_blocked()
                    assert writer.statistics().batches == 0
                    other.execute("ROLLBACK")
    finally:
        other.close()
    assert log == [("fsync", "agentation-database")]


@pytest.mark.anyio
async def test_only_a_write_that_came_after_the_loop_went_idle_is_committed_by_its_caller(
    opened: Store, wal_sync: WalSync
) -> None:
    """Writes in one scheduler pass form a batch; writes that follow each other with no idle wait
    between (a task writing in a loop, tool calls passing their turns) go through the writer task, so
    they can batch; a write after the loop waited idle is its caller's own."""
    wal_sync.QUICK_SECONDS = 3600.0
    n = 12
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            await _idle()
            await _burst(writer, n)
            burst = writer.statistics()
            await _idle()
            for i in range(5):
                await writer.submit(CreateSession(url=f"http://localhost:{4000 + i}/"))
            in_a_row = writer.statistics()
            for i in range(5):
                await _idle()
                await writer.submit(CreateSession(url=f"http://localhost:{5000 + i}/"))
            idle_between = writer.statistics()
    assert burst.commands == n
    assert burst.committed_by_caller <= 1  # at most the first of the pass, before the others came
    assert burst.largest_batch == n - burst.committed_by_caller
    assert in_a_row.committed_by_caller == burst.committed_by_caller + 1  # only the first, after the idle wait
    assert idle_between.committed_by_caller == in_a_row.committed_by_caller + 5


@pytest.mark.anyio
async def test_a_cancelled_caller_commits_nothing_and_a_closed_writer_takes_nothing(
    opened: Store, wal_sync: WalSync
) -> None:
    wal_sync.QUICK_SECONDS = 3600.0
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            with trio.CancelScope() as scope:
                scope.cancel()
                await writer.submit(CreateSession(url="http://localhost:3000/"))
            assert scope.cancelled_caught
            writer.close()
            with pytest.raises(StoreClosed):
                await writer.submit(CreateSession(url="http://localhost:3001/"))
    assert writer.statistics().commands == 0
    assert opened.conn.execute("SELECT COUNT(*) FROM sessions").get == 0


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(5))
async def test_each_clients_writes_stay_in_order_whether_their_caller_or_the_writer_task_commits_them(
    opened: Store, wal_sync: WalSync, seed: int
) -> None:
    """Eight clients reply to one annotation, each waiting for its answer before the next: first all
    at once with random pauses between, some of them idle waits (the first replies of all of them in
    one pass: a batch), then one client at a time after idle waits (their callers commit them).
    Every client's replies are in its own order in the thread, every answer comes after its flush
    and publication, and the events go out in sequence order."""
    import random

    wal_sync.QUICK_SECONDS = 3600.0
    rng = random.Random(seed)
    clients, replies = 8, 10
    idle = -1  # a pause that lets the loop wait idle; other pauses are that many scheduler checkpoints
    pauses = [[0] + [rng.choice((0, 0, 1, 3, idle)) for _ in range(replies - 1)] for _ in range(clients)]
    hub = opened.hub()
    published: list[int] = []
    texts: list[str] = []

    def sink(event: Event) -> None:
        published.append(event.sequence)
        texts.append(to_json(event.payload))

    hub.add_sink(sink)
    with trio.fail_after(30):
        async with _writer(opened, hub, wal_sync) as writer:
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            annotation = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
            flushes_before = wal_sync.flushes

            async def reply(c: int, r: int) -> None:
                message = NewThreadMessage("human", f"{c}:{r}")
                await writer.submit(AddThreadMessage(annotation["id"], message))
                # Its own events went out, after a flush, before its answer.
                assert any(f'"{c}:{r}"' in text for text in texts)
                assert wal_sync.flushes > flushes_before

            async def client(c: int) -> None:
                for r in range(replies):
                    if pauses[c][r] == idle:
                        await _idle()
                    for _ in range(pauses[c][r]):
                        await trio.lowlevel.checkpoint()
                    await reply(c, r)

            async with trio.open_nursery() as nursery:
                for c in range(clients):
                    nursery.start_soon(client, c)
            together = writer.statistics()
            for c in range(clients):
                for r in range(replies, 2 * replies):
                    await _idle()
                    await reply(c, r)
            stats = writer.statistics()
    thread = reads.get_annotation(opened.reader, annotation["id"])["thread"]
    for c in range(clients):
        mine = [m["content"] for m in thread if m["content"].startswith(f"{c}:")]
        assert mine == [f"{c}:{r}" for r in range(2 * replies)]
    assert published == list(range(1, reads.last_sequence(opened.reader) + 1))
    assert stats.commands == 2 + 2 * clients * replies
    assert together.largest_batch > 1
    assert stats.committed_by_caller - together.committed_by_caller == clients * replies


@pytest.mark.anyio
async def test_a_command_handed_to_the_waiting_writer_task_commits_before_a_later_callers_own(
    opened: Store, wal_sync: WalSync
) -> None:
    """The first write goes to the mailbox (another task waits to run), straight to the waiting writer
    task, and so into no buffer; the second, sent once the first is queued (as a client's turn passes),
    must not commit on its own task before the writer task has committed the first: no idle wait came
    between them, and the first is counted as in the mailbox until the writer task takes it. Trio runs
    the tasks of a pass in a random order, so this is tried many times."""
    wal_sync.QUICK_SECONDS = 3600.0
    with trio.fail_after(30):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            for _ in range(40):
                await _idle()
                annotation = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
                first_queued = trio.Event()

                async def first(nursery: trio.Nursery, annotation_id: str, queued: trio.Event) -> None:
                    nursery.start_soon(trio.lowlevel.checkpoint)  # another task waits to run
                    message = NewThreadMessage("human", "first")
                    await writer.submit(AddThreadMessage(annotation_id, message), queued=queued.set)

                async def second(annotation_id: str, queued: trio.Event) -> None:
                    await queued.wait()
                    await writer.submit(AddThreadMessage(annotation_id, NewThreadMessage("human", "second")))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(second, annotation["id"], first_queued)
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.start_soon(first, nursery, annotation["id"], first_queued)
                thread = reads.get_annotation(opened.reader, annotation["id"])["thread"]
                assert [m["content"] for m in thread] == ["first", "second"]
            stats = writer.statistics()
    assert stats.committed_by_caller >= 40  # the path was open: every annotation was its caller's own
