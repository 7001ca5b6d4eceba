"""`connection`: `LockWait`, the writer's wait for a lock another process holds, which shutdown can end at once;
and `WalSync`: `synchronous=NORMAL` on a file store, the WAL fsynced after commits, and checkpoints once the WAL
reaches `CHECKPOINT_PAGES`."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel
import trio.testing

from agentation_mcp.commands import (
    CreateAnnotation,
)
from agentation_mcp.store import connection, schema
from agentation_mcp.store.connection import LockWait, StoreLocation, WalSync

from .conftest import ANNOTATION, Store, commit_one, new_annotation, running_writer


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


# --- 4. WalSync -----------------------------------------------------------------------------------------------------


def test_walsync_switches_a_file_store_to_normal_sync(opened: Store) -> None:
    assert opened.conn.pragma("synchronous") == 2  # FULL, as opened
    sync = WalSync.attach(opened.conn, opened.location)
    assert sync is not None
    try:
        assert opened.conn.pragma("synchronous") == 1  # NORMAL
        assert sync.wal_path == f"{opened.location.path}-wal"
    finally:
        sync.close()


def test_walsync_is_not_attached_to_a_memory_store() -> None:
    location = StoreLocation.memory()
    conn = connection.open_write_connection(location)
    try:
        schema.migrate(conn)
        assert WalSync.attach(conn, location) is None
        assert conn.pragma("synchronous") == 2  # FULL kept
    finally:
        conn.close()


def _real(path: str) -> str:
    return os.path.realpath(path)


def _spy_on_fsync(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the files `os.fsync` is called on from now on (SQLite's own syncs do not go through it)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def test_walsync_fsyncs_the_wal_after_a_commit(
    opened: Store, wal_sync: WalSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _spy_on_fsync(monkeypatch)
    new_annotation(opened)
    assert wal_sync.pages > 0  # the WAL hook counted the commit's pages
    wal_sync()
    assert synced == [_real(wal_sync.wal_path)]
    assert os.path.getsize(wal_sync.wal_path) > 0


def _rows_in_main_file(db_path: Path, copy_to: Path) -> int:
    """Annotations in the main database file alone: a copy of it opened without its WAL."""
    shutil.copyfile(db_path, copy_to)
    conn = apsw.Connection(str(copy_to))
    try:
        count = conn.execute("SELECT COUNT(*) FROM annotations").get
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy_to}{suffix}").unlink(missing_ok=True)
    assert isinstance(count, int)
    return count


def _checkpoint_everything(st_: Store) -> Path:
    """Move the WAL into the main file, so that it alone holds what is there so far; returns the file."""
    assert st_.location.path is not None
    st_.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    return st_.location.path


def test_walsync_checkpoints_once_the_wal_reaches_checkpoint_pages(opened: Store, tmp_path: Path) -> None:
    copy = tmp_path / "main-only.db"
    sid, _ = new_annotation(opened)
    db_path = _checkpoint_everything(opened)
    assert _rows_in_main_file(db_path, copy) == 1
    sync = WalSync.attach(opened.conn, opened.location)
    assert sync is not None
    try:
        sync.CHECKPOINT_PAGES = 12
        written = 0
        while True:
            commit_one(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": "c" * 3000}))
            written += 1
            pages = sync.pages
            assert pages > 0
            sync()
            if pages >= sync.CHECKPOINT_PAGES:
                break
            # Below the threshold: no checkpoint, the new rows are only in the WAL.
            assert sync.pages == pages
            assert _rows_in_main_file(db_path, copy) == 1
            assert written < 50, "the WAL never reached CHECKPOINT_PAGES"
        assert sync.pages == 0
        # The checkpoint really happened: the main file alone now holds every row.
        assert _rows_in_main_file(db_path, copy) == 1 + written
        # The next commit starts the WAL over, so the count starts again from a few pages.
        commit_one(opened, CreateAnnotation.from_body(sid, ANNOTATION))
        assert 0 < sync.pages < pages
        sync()
    finally:
        sync.close()


@pytest.mark.anyio
async def test_the_writer_flushes_and_checkpoints_through_walsync(
    opened: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's configuration: `durable=WalSync.attach(...)` on a writer running `in_thread`."""
    sid, _ = new_annotation(opened)
    db_path = _checkpoint_everything(opened)
    sync = WalSync.attach(opened.conn, opened.location)
    assert sync is not None
    sync.CHECKPOINT_PAGES = 8
    synced = _spy_on_fsync(monkeypatch)
    results: list[Any] = []
    try:
        async with running_writer(opened, opened.hub(), in_thread=True, durable=sync) as writer:
            with trio.fail_after(10):
                for i in range(10):
                    body = {**ANNOTATION, "comment": f"{i}" * 3000}
                    results.append(await writer.submit(CreateAnnotation.from_body(sid, body)))
    finally:
        sync.close()
    assert [r["comment"][0] for r in results] == [str(i) for i in range(10)]
    assert len(synced) == 10  # one flush per answered submit here, each of the WAL
    assert set(synced) == {_real(sync.wal_path)}
    # At 8 pages a checkpoint is due after every commit or two: the main file holds most of the rows.
    assert _rows_in_main_file(db_path, tmp_path / "main-only.db") >= 1 + 8
