"""Schema and migrations: a fresh store, a reference store, versions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import apsw
import pytest

from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.errors import SchemaTooNew
from agentation_mcp.store import connection, reads, schema
from agentation_mcp.store.connection import StoreLocation

from .conftest import ANNOTATION, FIXTURES, Store, commit

REFERENCE_ANNOTATION_COLUMNS = [
    "id", "session_id", "x", "y", "comment", "element", "element_path", "timestamp", "selected_text",
    "bounding_box", "nearby_text", "css_classes", "nearby_elements", "computed_styles", "full_path",
    "accessibility", "is_multi_select", "is_fixed", "react_components", "source_file", "url", "intent",
    "severity", "status", "thread", "created_at", "updated_at", "resolved_at", "resolved_by", "author_id",
    "kind", "extra",
]  # fmt: skip


def _columns(conn: apsw.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_fresh_store_has_the_reference_tables_and_columns(tmp_path: Path) -> None:
    conn = connection.open_write_connection(StoreLocation(tmp_path / "s.db"))
    assert schema.migrate(conn) == 0
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {
        "organizations",
        "users",
        "api_keys",
        "sessions",
        "annotations",
        "events",
        "event_sequence",
    } <= tables
    assert _columns(conn, "annotations") == REFERENCE_ANNOTATION_COLUMNS
    assert _columns(conn, "events") == [
        "id",
        "type",
        "timestamp",
        "session_id",
        "sequence",
        "payload",
        "user_id",
    ]
    assert conn.execute("SELECT value FROM event_sequence WHERE id = 1").get == 0
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION
    assert conn.pragma("journal_mode") == "wal"
    assert conn.pragma("synchronous") == 2  # FULL
    assert conn.pragma("foreign_keys") == 1


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    conn = connection.open_write_connection(StoreLocation(tmp_path / "s.db"))
    schema.migrate(conn)
    before = list(conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name"))
    assert schema.migrate(conn) == schema.SCHEMA_VERSION
    assert list(conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name")) == before


def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    conn = connection.open_write_connection(StoreLocation(tmp_path / "s.db"))
    schema.migrate(conn)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    newer, ours = schema.SCHEMA_VERSION + 1, schema.SCHEMA_VERSION
    with pytest.raises(SchemaTooNew, match=rf"schema version {newer}.*up to {ours}"):
        schema.migrate(conn)
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION + 1


def test_an_old_reference_store_without_later_columns_gains_them(tmp_path: Path) -> None:
    conn = apsw.Connection(str(tmp_path / "old.db"))
    conn.execute(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, url TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', "
        "created_at TEXT NOT NULL, updated_at TEXT, project_id TEXT, metadata TEXT, user_id TEXT);"
        "CREATE TABLE annotations (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, "
        "comment TEXT NOT NULL, element TEXT NOT NULL, element_path TEXT NOT NULL, timestamp INTEGER NOT NULL, "
        "selected_text TEXT, bounding_box TEXT, nearby_text TEXT, css_classes TEXT, nearby_elements TEXT, "
        "computed_styles TEXT, full_path TEXT, accessibility TEXT, is_multi_select INTEGER DEFAULT 0, "
        "is_fixed INTEGER DEFAULT 0, react_components TEXT, url TEXT, intent TEXT, severity TEXT, "
        "status TEXT DEFAULT 'pending', thread TEXT, created_at TEXT NOT NULL, updated_at TEXT, resolved_at TEXT, "
        "resolved_by TEXT, author_id TEXT);"
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, timestamp TEXT NOT NULL, "
        "session_id TEXT NOT NULL, sequence INTEGER NOT NULL UNIQUE, payload TEXT NOT NULL, user_id TEXT);"
        "INSERT INTO events (type, timestamp, session_id, sequence, payload) "
        "VALUES ('session.created', '2026-01-01T00:00:00.000Z', 's', 41, '{}');"
    )
    conn.close()
    conn = connection.open_write_connection(StoreLocation(tmp_path / "old.db"))
    schema.migrate(conn)
    assert {"kind", "extra", "source_file"} <= set(_columns(conn, "annotations"))
    assert conn.execute("SELECT value FROM event_sequence").get == 41


def test_the_reference_fixture_migrates_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ref.db"
    shutil.copy(FIXTURES / "reference-1.3.2.db", path)
    raw = apsw.Connection(str(path))
    counts = {t: raw.execute(f"SELECT COUNT(*) FROM {t}").get for t in ("sessions", "annotations", "events")}
    raw.close()
    conn = connection.open_write_connection(StoreLocation(path))
    assert schema.migrate(conn) == 0
    assert {t: conn.execute(f"SELECT COUNT(*) FROM {t}").get for t in counts} == counts
    assert conn.execute("PRAGMA integrity_check").get == "ok"


READ_INDEXES = {
    "idx_annotations_status",
    "idx_annotations_session_time",
    "idx_annotations_session_status_time",
    "idx_sessions_created",
    "idx_events_timestamp",
}


def test_the_index_migration_on_a_reference_written_store_keeps_every_row_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "ref.db"
    shutil.copy(FIXTURES / "reference-1.3.2.db", path)
    raw = apsw.Connection(str(path))
    tables = ("sessions", "annotations", "events", "event_sequence")
    before = {t: list(raw.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in tables}
    had = {r[0] for r in raw.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    raw.close()
    assert not READ_INDEXES & had
    conn = connection.open_write_connection(StoreLocation(path))
    schema.migrate(conn)
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION == 4
    # The presence tables (ours, `presence_*`) bring indexes of their own.
    not_presence = "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name NOT LIKE 'presence%'"
    indexes = {r[0] for r in conn.execute(not_presence)}
    assert indexes == had | READ_INDEXES
    assert {t: list(conn.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in tables} == before
    assert conn.execute("PRAGMA integrity_check").get == "ok"


def test_every_query_a_request_or_tool_call_runs_reads_through_an_index(opened: Store) -> None:
    """The real statements of each read, captured as they run, planned by SQLite: no table is scanned."""
    [(session, _)] = commit(opened.conn, CreateSession(url="http://localhost:3000/"))
    [(annotation, _)] = commit(opened.conn, CreateAnnotation.from_body(session["id"], ANNOTATION))
    commit(opened.conn, CreateAnnotation.from_body(session["id"], ANNOTATION))  # pages of one leave one over
    ran: list[tuple[str, Any]] = []

    def record(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        ran.append((sql, bindings))
        return True

    reader = opened.reader
    reader.conn.exec_trace = record
    reads.list_sessions(reader)
    reads.get_session(reader, session["id"])
    reads.get_annotation(reader, annotation["id"])
    reads.annotations_by_id(reader, [annotation["id"]])
    reads.pending_annotations(reader, session["id"])
    reads.pending_annotations(reader, None)
    reads.pending_scan(reader, session["id"], None, 1)
    reads.pending_scan(reader, None, None, 1)
    position = ("2000-01-01T00:00:00.000Z", 1, 0, 1)
    reads.pending_scan(reader, session["id"], position, 1)
    reads.pending_scan(reader, None, position, 1)
    reads.pending_scan(reader, None, position, 1, views=True)
    reads.events_after(reader, 0)
    reads.events_after(reader, 0, session_id=session["id"])
    reads.event_rows_after(reader, 0)
    reads.last_sequence(reader)
    reader.conn.exec_trace = None
    # One statement a read, but two for a session (its annotations too) and for a page of pending with more left
    # after it (the count of the rest): three of the five scans here.
    assert len(ran) == 19
    for sql, bindings in ran:
        plan = [str(row[3]) for row in reader.conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings or ())]
        scans = [
            step for step in plan if step.startswith("SCAN") and "USING" not in step and step != "SCAN CONSTANT ROW"
        ]
        assert not scans, (sql, plan)
