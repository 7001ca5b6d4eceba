"""`connection.LockWait`: the writer's wait for a lock another process holds, which shutdown can end at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from agentation_mcp.store import connection
from agentation_mcp.store.connection import LockWait, StoreLocation


class ObservedWait(LockWait):
    """A `LockWait` that says when it first had to wait."""

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(timeout_ms)
        self.waiting = threading.Event()

    def __call__(self, tries: int) -> bool:
        self.waiting.set()
        return super().__call__(tries)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[apsw.Connection, apsw.Connection]]:
    """(a writer's connection, another connection holding the write lock)."""
    location = StoreLocation(tmp_path / "store.db")
    writer = connection.open_write_connection(location)
    holder = connection.open_write_connection(location)
    holder.execute("BEGIN IMMEDIATE")
    yield writer, holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()
    writer.close()


def begin_in_thread(conn: apsw.Connection) -> tuple[threading.Thread, list[BaseException | None]]:
    """BEGIN IMMEDIATE on `conn` in a thread; the list gets None, or the error it raised."""
    outcome: list[BaseException | None] = []

    def begin() -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=begin)
    thread.start()
    return thread, outcome


def test_the_writer_gets_the_lock_once_the_other_process_lets_it_go(
    locked: tuple[apsw.Connection, apsw.Connection],
) -> None:
    writer, holder = locked
    wait = ObservedWait(timeout_ms=30_000)
    wait.install(writer)
    thread, outcome = begin_in_thread(writer)
    assert wait.waiting.wait(10)
    holder.execute("ROLLBACK")
    thread.join(10)
    assert outcome == [None]
    writer.execute("ROLLBACK")


def test_a_wait_gives_up_after_its_timeout(locked: tuple[apsw.Connection, apsw.Connection]) -> None:
    writer, _ = locked
    LockWait(timeout_ms=200).install(writer)
    thread, outcome = begin_in_thread(writer)
    thread.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], apsw.BusyError)


def test_stop_ends_a_wait_at_once_and_every_later_one(locked: tuple[apsw.Connection, apsw.Connection]) -> None:
    writer, _ = locked
    wait = ObservedWait(timeout_ms=60_000)
    wait.install(writer)
    thread, outcome = begin_in_thread(writer)
    assert wait.waiting.wait(10)
    wait.stop()
    thread.join(5)  # far less than the minute the wait would otherwise last
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], apsw.BusyError)
    with pytest.raises(apsw.BusyError):
        writer.execute("BEGIN IMMEDIATE")


def test_a_long_wait_is_told_on_stderr_once(
    locked: tuple[apsw.Connection, apsw.Connection], caplog: pytest.LogCaptureFixture
) -> None:
    writer, _ = locked
    wait = LockWait(timeout_ms=400)
    wait.NOTICE_AFTER = 0.1
    wait.install(writer)
    with caplog.at_level(logging.WARNING):
        thread, outcome = begin_in_thread(writer)
        thread.join(10)
    assert isinstance(outcome[0], apsw.BusyError)
    notices = [r for r in caplog.records if "another process holds the store's write lock" in r.getMessage()]
    assert len(notices) == 1
