"""The writer actor: group commit, savepoint isolation, replies after commit, drain on close."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.testing

from agentation_mcp.commands import CreateAnnotation, CreateSession, UpdateAnnotation
from agentation_mcp.errors import AnnotationNotFound, StoreClosed, StoreFull
from agentation_mcp.models import Event
from agentation_mcp.store import connection, reads
from agentation_mcp.store import writer as writer_module
from agentation_mcp.store.writer import run_writer

from .conftest import ANNOTATION, Store, open_store, running_writer
from .faulty_disk import FaultyDisk

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("in_thread", [False, True])
async def test_concurrent_submitters_share_batches_and_get_their_own_results(opened: Store, in_thread: bool) -> None:
    hub = opened.hub()
    results: dict[int, Any] = {}
    async with running_writer(opened, hub, in_thread=in_thread) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        go = trio.Event()

        async def submit(i: int) -> None:
            await go.wait()
            results[i] = await writer.submit(
                CreateAnnotation.from_body(session["id"], {**ANNOTATION, "comment": f"note {i}"})
            )

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(submit, i)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
        stats = writer.statistics()
    assert {i: r["comment"] for i, r in results.items()} == {i: f"note {i}" for i in range(100)}
    assert stats.commands == 101
    assert stats.batches < 101
    assert stats.largest_batch > 1
    sequences = [e.sequence for e in reads.events_after(opened.reader, 0)]
    assert sequences == list(range(1, 102))


async def test_a_full_flush_queue_stops_the_writer_taking_commands_until_a_flush_answers(
    opened: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed batches waiting for their flush are bounded: past the bound, commands wait in the mailbox."""
    monkeypatch.setattr(writer_module, "_UNFLUSHED", 2)
    disk_free, flushes = threading.Event(), []
    disk_free.set()

    def durable() -> None:
        flushes.append(disk_free.wait(20))

    hub = opened.hub()
    async with running_writer(opened, hub, in_thread=True, durable=durable, max_batch=1) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        before = reads.last_sequence(opened.reader)
        answered: list[int] = []

        async def submit(i: int) -> None:
            await writer.submit(CreateAnnotation.from_body(session["id"], {**ANNOTATION, "comment": f"note {i}"}))
            answered.append(i)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                disk_free.clear()
                for i in range(10):
                    nursery.start_soon(submit, i)
                    await trio.testing.wait_all_tasks_blocked()
                # One batch in its flush, two queued for the next, one committed and waiting for room: no more.
                assert reads.last_sequence(opened.reader) - before == 4
                assert writer.statistics().queued == 6
                assert answered == []
                disk_free.set()
        assert sorted(answered) == list(range(10))
    assert reads.last_sequence(opened.reader) - before == 10
    assert all(flushes)


async def test_a_failing_command_fails_alone_in_its_batch(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        outcomes: dict[str, Any] = {}

        async def submit(name: str, command: Any) -> None:
            try:
                outcomes[name] = await writer.submit(command)
            except AnnotationNotFound as exc:
                outcomes[name] = exc

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, "before", CreateAnnotation.from_body(session["id"], ANNOTATION))
                nursery.start_soon(submit, "bad", UpdateAnnotation("missing", {"status": "resolved"}))
                nursery.start_soon(submit, "after", CreateAnnotation.from_body(session["id"], ANNOTATION))
        assert writer.statistics().largest_batch == 3
    assert isinstance(outcomes["bad"], AnnotationNotFound)
    assert outcomes["before"]["id"] != outcomes["after"]["id"]
    assert opened.conn.execute("SELECT COUNT(*) FROM annotations").get == 2
    assert [e.sequence for e in reads.events_after(opened.reader, 0)] == [1, 2, 3]


async def test_events_reach_subscribers_only_after_commit(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub, in_thread=True) as writer:
        with hub.subscribe() as sub:
            result = await writer.submit(CreateSession(url="http://localhost:3000/"))
            event = sub.receive.receive_nowait()
    assert event.payload == result
    # committed: a fresh read connection sees it
    assert reads.events_after(opened.reader, 0)[0].sequence == event.sequence


async def test_closing_drains_what_is_queued(opened: Store) -> None:
    hub = opened.hub()
    results: list[Any] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            writer = await nursery.start(
                lambda task_status: run_writer(opened.conn, hub, in_thread=False, task_status=task_status)
            )

            async def submit(i: int) -> None:
                results.append(await writer.submit(CreateSession(url=f"http://localhost:{3000 + i}/")))

            for i in range(5):
                nursery.start_soon(submit, i)
            await trio.testing.wait_all_tasks_blocked()
            writer.close()
    assert len(results) == 5
    assert opened.conn.execute("SELECT COUNT(*) FROM sessions").get == 5
    with pytest.raises(StoreClosed):
        await writer.submit(CreateSession(url="http://localhost:1/"))


@pytest.fixture
def disk() -> Iterator[FaultyDisk]:
    faulty = FaultyDisk()
    try:
        yield faulty
    finally:
        faulty.unregister()


async def test_the_writer_lives_through_a_full_disk_and_writes_again_once_there_is_room(
    disk: FaultyDisk, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Many callers during the fault each get `StoreFull`; nothing they sent is stored or published;
    the first write after the fault succeeds, with no restart; every acknowledged write survives."""
    acknowledged: list[str] = []
    failed: list[BaseException] = []
    with open_store(db_path) as st:
        hub = st.hub()
        published: list[Event] = []
        hub.add_sink(published.append)
        sync = connection.WalSync.attach(st.conn, st.location)
        assert sync is not None
        with caplog.at_level(logging.INFO, logger="agentation_mcp"):
            async with running_writer(st, hub, in_thread=True, durable=sync) as writer:
                with trio.fail_after(20):
                    session = await writer.submit(CreateSession(url="http://localhost:3000/"))
                    acknowledged.append(session["id"])

                    async def submit(i: int) -> None:
                        body = {**ANNOTATION, "comment": f"note {i}"}
                        try:
                            created = await writer.submit(CreateAnnotation.from_body(session["id"], body))
                        except StoreFull as exc:
                            failed.append(exc)
                        else:
                            acknowledged.append(created["id"])

                    with disk.failing(apsw.FullError):
                        async with trio.open_nursery() as nursery:
                            for i in range(40):
                                nursery.start_soon(submit, i)
                    assert len(failed) == 40
                    assert not acknowledged[1:]
                    assert len(published) == 1

                    # Reads go on while writes fail, and the next write after the fault succeeds.
                    assert reads.get_session(st.reader, session["id"])["annotations"] == []
                    await submit(40)
                    assert len(acknowledged) == 2
                    assert [e.sequence for e in published] == [1, 2]
        sync.close()
    assert all(f"The disk holding {db_path} is full; free space and retry." == str(exc) for exc in failed)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Writes are failing" in m for m in messages) == 1, "logged once, not once per batch"
    assert sum("Writes succeed again" in m for m in messages) == 1
    with open_store(db_path) as again:
        stored = {row[0] for row in again.conn.execute("SELECT id FROM sessions UNION ALL SELECT id FROM annotations")}
        assert stored == set(acknowledged)
        assert again.conn.execute("PRAGMA integrity_check").get == "ok"
