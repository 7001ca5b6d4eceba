"""The writer's quick flush, and its answering of flushed batches without reading its own events back.

* A lone command, with nothing else queued or being flushed, is flushed
  (`WalSync.flush_if_quick`) on the trio thread, then published, then
  answered: each answer comes after its own fsync of the WAL.
* A disk whose flushes are slow, a checkpoint that is due, a batch of
  several commands, or a command that waited for another process's lock
  (other tasks ran after its COMMIT) goes to the database thread as before.
* `WalSync` counts every flush and the time they took.
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

from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.models import Event
from agentation_mcp.store import connection, reads
from agentation_mcp.store.connection import WalSync
from agentation_mcp.store.hub import Hub
from agentation_mcp.store.writer import Writer

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
    return running_writer(opened, hub, in_thread=True, durable=sync, quick_flush=sync.flush_if_quick)


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
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            log.append(("answered", 1))
            for i in range(2, n + 1):
                await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
                log.append(("answered", i))
    main = threading.current_thread().name
    expected: list[tuple[str, Any]] = []
    for i in range(1, n + 1):
        expected += [("fsync", main), ("published", i), ("answered", i)]
    assert log == expected
    assert wal_sync.flushes == n
    assert wal_sync.flush_seconds > 0


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
async def test_a_batch_of_several_commands_is_flushed_on_the_database_thread(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[str, Any]] = []
    _spy_on_fsync(monkeypatch, log)
    n = 20
    with trio.fail_after(10):
        async with _writer(opened, opened.hub(), wal_sync) as writer:
            go = trio.Event()

            async def submit(i: int) -> None:
                await go.wait()
                await writer.submit(CreateSession(url=f"http://localhost:{3000 + i}/"))

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(submit, i)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
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
