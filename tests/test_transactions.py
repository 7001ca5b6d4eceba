"""The transaction policy under storage faults, on a real store file behind a disk that fails on demand.

Each fault is injected where SQLite meets the disk (`faulty_disk.FaultyDisk`),
so the errors are SQLite's own: a full disk at COMMIT or in the middle of a
command, an I/O error, a file turned read-only, pages read back damaged, a
lock held by another connection. Every test checks what a caller gets, that
nothing was half-applied, and that the store works again once the fault is
gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import outcome
import pytest

from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    NewThreadMessage,
    UpdateAnnotation,
)
from agentation_mcp.errors import (
    InternalError,
    StoreBusy,
    StoreCorrupt,
    StoreDiskError,
    StoreFault,
    StoreFull,
    StoreReadOnly,
)
from agentation_mcp.store import connection, reads, transactions

from .conftest import ANNOTATION, Store, commit, open_store
from .faulty_disk import FaultyDisk

FAULTS = [
    pytest.param(apsw.FullError, StoreFull, "is full; free space and retry.", id="disk-full"),
    pytest.param(apsw.IOError, StoreDiskError, "reported an error", id="io-error"),
    pytest.param(apsw.ReadOnlyError, StoreReadOnly, "can no longer be written", id="read-only"),
]


@pytest.fixture
def on_disk(disk: FaultyDisk, db_path: Path) -> Iterator[Store]:
    with open_store(db_path) as st:
        yield st


def snapshot(conn: apsw.Connection) -> dict[str, list[Any]]:
    """Everything stored, table by table."""
    tables = ("sessions", "annotations", "events", "event_sequence")
    return {table: list(conn.execute(f"SELECT * FROM {table} ORDER BY rowid")) for table in tables}


def a_batch(session_id: str, annotation_id: str, comment: str = "Make it blue") -> list[Command]:
    return [
        CreateAnnotation.from_body(session_id, {**ANNOTATION, "comment": comment}),
        UpdateAnnotation.from_body(annotation_id, {"status": "acknowledged"}),
        AddThreadMessage(annotation_id, NewThreadMessage(role="agent", content="On it")),
        CreateSession(url="http://localhost:3001/"),
    ]


def seeded(st: Store) -> tuple[str, str]:
    [(session, _)] = commit(st.conn, CreateSession(url="http://localhost:3000/"))
    [(annotation, _)] = commit(st.conn, CreateAnnotation.from_body(session["id"], ANNOTATION))
    return session["id"], annotation["id"]


def assert_healthy(conn: apsw.Connection) -> None:
    assert conn.execute("PRAGMA integrity_check").get == "ok"


@pytest.mark.parametrize(("fault", "error", "text"), FAULTS)
@pytest.mark.parametrize("where", ["at-commit", "mid-command"])
def test_a_storage_fault_fails_every_command_of_the_batch_and_changes_nothing(
    on_disk: Store, disk: FaultyDisk, fault: type[apsw.Error], error: type[StoreFault], text: str, where: str
) -> None:
    session_id, annotation_id = seeded(on_disk)
    comment = "Make it blue"
    if where == "mid-command":
        # A page cache of two pages and an annotation of many pages: SQLite must spill to the
        # WAL while the INSERT runs, so the fault hits inside the command, not at COMMIT.
        on_disk.conn.pragma("cache_size", 2)
        comment = "x" * 300_000
    before = snapshot(on_disk.conn)
    last = reads.last_sequence(on_disk.reader)

    with disk.failing(fault):
        results = transactions.commit_batch(on_disk.conn, a_batch(session_id, annotation_id, comment))

    assert disk.refused > 0
    assert len(results) == 4
    for result in results:
        with pytest.raises(error) as caught:
            result.unwrap()
        assert str(on_disk.location.path) in str(caught.value)
        assert text in str(caught.value)
    assert on_disk.conn.get_autocommit(), "the failed transaction is over"
    assert snapshot(on_disk.conn) == before, "nothing of the batch was applied"

    # The fault is gone: the same batch commits, with the sequences that follow on.
    again = [r.unwrap() for r in transactions.commit_batch(on_disk.conn, a_batch(session_id, annotation_id, comment))]
    sequences = [event.sequence for _, events in again for event in events]
    assert sequences == list(range(last + 1, last + 1 + len(sequences)))
    assert_healthy(on_disk.conn)


def test_the_writers_try_without_waiting_fails_the_batch_the_same_way(on_disk: Store, disk: FaultyDisk) -> None:
    session_id, annotation_id = seeded(on_disk)
    before = snapshot(on_disk.conn)
    with disk.failing(apsw.FullError):
        results = transactions.try_commit_batch(on_disk.conn, a_batch(session_id, annotation_id))
    assert results is not None
    assert [type(r.error) for r in results if isinstance(r, outcome.Error)] == [StoreFull] * 4
    assert snapshot(on_disk.conn) == before


def test_a_damaged_store_is_reported_as_such_to_writes_and_reads(disk: FaultyDisk, db_path: Path) -> None:
    with open_store(db_path) as st:
        session_id, _ = seeded(st)
        st.conn.pragma("wal_checkpoint", "TRUNCATE")  # every page now comes from the main file
    with open_store(db_path) as st, disk.corrupt_reads():
        [result] = transactions.commit_batch(st.conn, [CreateAnnotation.from_body(session_id, ANNOTATION)])
        with pytest.raises(StoreCorrupt) as caught:
            result.unwrap()
        message = str(caught.value)
        assert f"The store {db_path} is damaged" in message
        assert f"sqlite3 '{db_path}' 'PRAGMA integrity_check'" in message
        assert '"When things go wrong" in the README' in message
        with pytest.raises(StoreCorrupt):
            reads.pending_annotations(st.reader)


def test_a_command_whose_error_ends_the_transaction_fails_alone_and_its_error_is_not_masked(
    opened: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger's RAISE(ROLLBACK) makes SQLite end the whole transaction itself.

    Rolling back to the command's savepoint would then fail with "no such
    savepoint" and hide the real error; instead the command fails alone, the
    others are committed, and the log names the trigger's error.
    """
    _, annotation_id = seeded(opened)
    opened.conn.execute(
        "CREATE TEMP TRIGGER ends_it BEFORE UPDATE OF comment ON annotations WHEN NEW.comment = 'boom' "
        "BEGIN SELECT RAISE(ROLLBACK, 'refused by a trigger'); END"
    )
    batch: list[Command] = [
        CreateSession(url="http://localhost:3001/"),
        UpdateAnnotation.from_body(annotation_id, {"comment": "boom"}),
        UpdateAnnotation.from_body(annotation_id, {"comment": "kept"}),
    ]
    with caplog.at_level(logging.ERROR):
        first, culprit, last = transactions.commit_batch(opened.conn, batch)
    with pytest.raises(InternalError):
        culprit.unwrap()
    assert first.unwrap()[0]["url"] == "http://localhost:3001/"
    assert last.unwrap()[0]["comment"] == "kept"
    assert reads.get_annotation(opened.reader, annotation_id)["comment"] == "kept"
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert logged
    assert "refused by a trigger" in str(logged[0])
    assert not any("savepoint" in r.getMessage() for r in caplog.records)
    assert opened.conn.get_autocommit()
    assert_healthy(opened.conn)


def test_a_store_locked_past_the_timeout_fails_the_batch_with_store_busy(
    opened: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session_id, annotation_id = seeded(opened)
    assert opened.location.path is not None
    other = connection.open_write_connection(opened.location)
    monkeypatch.setattr(transactions, "BUSY_RETRIES", 1)
    monkeypatch.setattr(transactions, "BUSY_TIMEOUT_MS", 20)
    opened.conn.set_busy_timeout(20)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        before = snapshot(opened.conn)
        assert transactions.try_commit_batch(opened.conn, a_batch(session_id, annotation_id)) is None
        with caplog.at_level(logging.WARNING):
            results = transactions.commit_batch(opened.conn, a_batch(session_id, annotation_id))
        for result in results:
            with pytest.raises(StoreBusy, match="busy"):
                result.unwrap()
        assert opened.conn.get_autocommit()
        assert not caplog.records, "no rollback was attempted without a transaction"
        other.execute("ROLLBACK")
        assert snapshot(opened.conn) == before
        assert all(r.unwrap() for r in transactions.commit_batch(opened.conn, a_batch(session_id, annotation_id)))
    finally:
        other.close()


def test_pruning_on_a_full_disk_is_skipped_not_fatal(
    on_disk: Store, disk: FaultyDisk, caplog: pytest.LogCaptureFixture
) -> None:
    seeded(on_disk)
    on_disk.conn.execute("UPDATE events SET timestamp = '2000-01-01T00:00:00.000Z'")
    with disk.failing(apsw.FullError), caplog.at_level(logging.WARNING):
        assert transactions.prune_events(on_disk.conn, 7) == 0
    assert any("is full" in r.getMessage() for r in caplog.records)
    assert on_disk.conn.get_autocommit()
    assert transactions.prune_events(on_disk.conn, 7) == 2
