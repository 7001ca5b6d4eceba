"""The writer actor: group commit, savepoint isolation, replies after commit, drain on close, bounded queues.

Its `durable` hook (the flush) runs after COMMIT, at most once per batch and never for a batch that
committed nothing, before any caller is answered and before the batch's events reach listeners, the
cross-process tail included; with `WalSync` it really checkpoints. It waits for another connection's
write lock off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel
import trio.testing

from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    UpdateAnnotation,
)
from agentation_mcp.errors import AnnotationNotFound, StoreClosed, StoreFull
from agentation_mcp.models import (
    Event,
)
from agentation_mcp.store import changes, connection, reads, transactions
from agentation_mcp.store import writer as writer_module
from agentation_mcp.store.writer import Writer, run_writer

from .conftest import ANNOTATION, HeldFlush, Store, fresh, open_store, running_writer, thread_message
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


# --- 5. the writer's durable hook -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_durable_runs_after_commit_and_before_publishing_and_replies(opened: Store) -> None:
    hub = opened.hub()
    log: list[tuple[str, Any]] = []
    sequence_of: dict[str, int] = {}

    def sink(event: Event) -> None:
        sequence_of[event.payload["id"]] = event.sequence
        log.append(("published", event.sequence))

    hub.add_sink(sink)
    probe = connection.open_read_connection(opened.location)  # another connection: sees only what is committed

    def durable() -> None:
        # On the database thread, while the writer's answering task awaits it: what is committed, not yet published.
        visible = probe.execute(
            "SELECT sequence FROM events WHERE sequence > ? ORDER BY sequence", (hub.last_published,)
        )
        log.append(("durable", [sequence for (sequence,) in visible]))

    n = 60
    try:
        async with running_writer(opened, hub, in_thread=True, durable=durable) as writer:
            go = trio.Event()

            async def submit(i: int) -> None:
                await go.wait()
                result = await writer.submit(CreateSession(url=f"http://localhost:{5000 + i}/"))
                log.append(("returned", result["id"]))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(submit, i)
                    await trio.testing.wait_all_tasks_blocked()
                    go.set()
            stats = writer.statistics()
    finally:
        probe.close()

    flushes = [i for i, (kind, _) in enumerate(log) if kind == "durable"]
    # At most once per batch (one flush may answer several), never once per command.
    assert stats.commands == n
    assert 0 < len(flushes) <= stats.batches < n
    assert [s for kind, s in log if kind == "published"] == list(range(1, n + 1))
    position = {(kind, item): i for i, (kind, item) in enumerate(log) if kind != "durable"}
    returned = [item for kind, item in log if kind == "returned"]
    assert len(returned) == n
    for annotation_id in returned:
        sequence = sequence_of[annotation_id]
        published_at = position[("published", sequence)]
        # Flushed after its COMMIT (the flush before its publication saw it committed, from another connection),
        # published after the flush, and its caller answered after that.
        before = [i for i in flushes if i < published_at]
        assert before, f"sequence {sequence} was published before any flush"
        assert sequence in log[before[-1]][1]
        assert published_at < position[("returned", annotation_id)]


@pytest.mark.anyio
async def test_durable_is_not_called_for_a_batch_that_committed_nothing(opened: Store) -> None:
    hub = opened.hub()
    calls: list[int] = []

    def durable() -> None:
        calls.append(hub.last_published)

    async with running_writer(opened, hub, in_thread=True, durable=durable) as writer:
        with trio.fail_after(10):
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            assert calls == [0]

            # One failing command alone.
            with pytest.raises(AnnotationNotFound):
                await writer.submit(UpdateAnnotation("missing", {"status": "resolved"}))
            assert writer.statistics().batches == 2
            assert calls == [0]

            # A batch of failing commands only, then a batch with one good command among bad ones.
            async def batch(commands: list[Command]) -> list[Any]:
                outcomes: list[Any] = [None] * len(commands)
                go = trio.Event()

                async def submit(i: int, command: Command) -> None:
                    await go.wait()
                    try:
                        outcomes[i] = await writer.submit(command)
                    except AnnotationNotFound as exc:
                        outcomes[i] = exc

                async with trio.open_nursery() as nursery:
                    for i, command in enumerate(commands):
                        nursery.start_soon(submit, i, command)
                    await trio.testing.wait_all_tasks_blocked()
                    go.set()
                return outcomes

            bad: list[Command] = [AddThreadMessage(f"missing-{i}", thread_message("x")) for i in range(3)]
            outcomes = await batch(bad)
            assert all(isinstance(o, AnnotationNotFound) for o in outcomes)
            assert writer.statistics().batches == 3
            assert writer.statistics().largest_batch == 3
            assert calls == [0]

            good = CreateAnnotation.from_body(session["id"], ANNOTATION)
            outcomes = await batch([bad[0], good, bad[1]])
            assert isinstance(outcomes[0], AnnotationNotFound)
            assert isinstance(outcomes[2], AnnotationNotFound)
            assert outcomes[1]["comment"] == ANNOTATION["comment"]
            assert writer.statistics().batches == 4
            assert calls == [0, 1]


@pytest.mark.anyio
async def test_the_tail_does_not_publish_a_batch_of_this_writer_before_its_flush(opened: Store) -> None:
    """In the service `run_tail` runs beside the writer: listeners must not hear of a write that is not on disk."""
    hub = opened.hub()
    published: list[int] = []
    hub.add_sink(lambda event: published.append(event.sequence))
    held = HeldFlush(opened.reader)
    result: dict[str, Any] = {}

    async def submit(writer: Writer) -> None:
        result["session"] = await writer.submit(CreateSession(url="http://localhost:3000/"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, held.data_version)
            await trio.testing.wait_all_tasks_blocked()
            async with running_writer(opened, hub, in_thread=True, durable=held.durable) as writer:
                try:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(submit, writer)
                        await held.flushing.wait()  # committed; the flush has begun and not ended
                        await held.tail_looked.wait()  # and the tail has polled the store since
                        assert published == [], "the event reached listeners before the write was on disk"
                        held.release.set()
                finally:
                    held.release.set()  # before the writer is closed: closing waits for the flush
            nursery.cancel_scope.cancel()
    assert published == [1]
    assert result["session"]["url"] == "http://localhost:3000/"


@pytest.mark.anyio
async def test_batches_answered_by_one_flush_are_published_in_order_with_another_writers_events_between(
    opened: Store,
) -> None:
    """Two of our batches wait for one flush, another connection commits between them: listeners get all, in order."""
    hub = opened.hub()
    published: list[int] = []
    hub.add_sink(lambda event: published.append(event.sequence))
    token = trio.lowlevel.current_trio_token()
    flushing = trio.Event()
    release = threading.Event()
    flushes = 0

    def durable() -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 1:  # hold the first flush open while two more batches commit behind it
            trio.from_thread.run_sync(flushing.set, trio_token=token)
            release.wait(10)

    assert opened.location.path is not None
    other = apsw.Connection(str(opened.location.path))
    try:
        with trio.fail_after(10):
            async with (
                running_writer(opened, hub, in_thread=True, durable=durable) as writer,
                trio.open_nursery() as nursery,
            ):
                try:
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/0"))
                    await flushing.wait()
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/1"))
                    await trio.testing.wait_all_tasks_blocked()
                    transactions.commit_batch(other, [CreateSession(url="http://localhost:3000/other")])
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/2"))
                    await trio.testing.wait_all_tasks_blocked()
                finally:
                    release.set()
    finally:
        other.close()
    assert published == [1, 2, 3, 4]
    assert flushes == 2


# --- 6. waiting for another process's write lock --------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_writer_waits_for_another_connections_lock_off_the_event_loop(opened: Store) -> None:
    hub = opened.hub()
    published: list[Event] = []
    hub.add_sink(published.append)
    assert opened.location.path is not None
    blocker = apsw.Connection(str(opened.location.path))
    blocker.set_busy_timeout(5000)
    try:
        async with running_writer(opened, hub, in_thread=True) as writer:
            with trio.fail_after(10):
                session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            # Another process takes the write lock and writes, but has not committed yet.
            blocker.execute("BEGIN IMMEDIATE")
            _, pending = changes.apply(blocker, CreateSession(url="http://other-process/"))
            [other] = changes.append_events(blocker, pending)

            result: dict[str, Any] = {}
            done = trio.Event()

            async def submit() -> None:
                result["annotation"] = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
                done.set()

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()  # the writer has the command and waits for the lock
                    assert not done.is_set()
                    # The event loop keeps serving: reads and scheduling go on while the submit is pending.
                    gaps: list[float] = []
                    last = time.monotonic()
                    for _ in range(20):
                        assert reads.get_session(opened.reader, session["id"])["annotations"] == []
                        await trio.lowlevel.checkpoint()
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now
                        assert not done.is_set()
                    assert max(gaps) < 2.0
                    assert writer.statistics().batches == 1  # only the first batch has finished
                    assert [e.sequence for e in published] == [1]
                    blocker.execute("COMMIT")
                    await done.wait()
    finally:
        blocker.close()

    annotation = result["annotation"]
    assert annotation["comment"] == ANNOTATION["comment"]
    assert annotation == fresh(opened, annotation["id"])
    # The other process's event (filled in from the table) and then ours, in sequence order.
    assert [e.sequence for e in published] == [1, 2, 3]
    assert published[1] == other
    assert published[2].type == "annotation.created"
    assert published[2].payload == annotation
