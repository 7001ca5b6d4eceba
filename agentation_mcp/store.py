"""Synchronous SQL over apsw: opening the store, applying commands, reading.

`apply(conn, command)` is the only way anything is written; only the writer
calls it, inside its transaction. Each call returns the command's result and
the events it caused; `append_events` gives those events their sequences
from the `event_sequence` row in the same transaction, so a sequence is
unique and in commit order across every process sharing the file (the
reference's processes included). Reads take a connection of their own.
Nothing here awaits or knows about trio.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import outcome

from . import commands as c
from .errors import AgentationError, AnnotationNotFound, SessionNotFound, StoreBusy, StoreUnusable
from .models import (
    ACTION_REQUESTED,
    ANNOTATION_CREATED,
    ANNOTATION_DELETED,
    ANNOTATION_UPDATED,
    CLOSED_STATUSES,
    FIELD_BY_NAME,
    SESSION_CREATED,
    THREAD_MESSAGE,
    Event,
    JsonObject,
    PendingEvent,
    annotation_from_row,
    from_json,
    new_id,
    now_iso,
    now_ms,
    session_from_row,
    to_json,
)

BUSY_TIMEOUT_MS = 5000
# How often a batch tries again while other processes hold the write lock,
# each try waiting up to BUSY_TIMEOUT_MS.
BUSY_RETRIES = 6
Connection = apsw.Connection
log = logging.getLogger(__name__)


class InternalError(AgentationError):
    def __init__(self) -> None:
        super().__init__("The server could not apply this change; its log on stderr has the details.")


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where the store lives: a file, or a database private to this process."""

    path: Path | None  # None: in memory
    memory_name: str = ""

    @property
    def in_memory(self) -> bool:
        return self.path is None

    @classmethod
    def memory(cls) -> StoreLocation:
        return cls(None, f"/agentation-{os.getpid()}-{uuid.uuid4().hex}")


def _memory_uri(location: StoreLocation) -> str:
    # SQLite's memdb VFS shares one database between the connections of a
    # process that open the same "/name"; it lives until the last one closes.
    return f"file:{location.memory_name}?vfs=memdb"


def open_write_connection(location: StoreLocation) -> apsw.Connection:
    """The writer's connection: creates the file and folder, WAL, full sync, foreign keys."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    if location.path is None:
        conn = apsw.Connection(_memory_uri(location), flags=flags)
    else:
        location.path.parent.mkdir(parents=True, exist_ok=True)
        conn = apsw.Connection(str(location.path), flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    if location.path is not None:
        for _ in range(20):
            try:
                conn.pragma("journal_mode", "wal")
                break
            except apsw.BusyError:
                continue
        conn.pragma("synchronous", "FULL")
    conn.pragma("foreign_keys", True)
    return conn


def unusable(exc: BaseException, location: StoreLocation) -> StoreUnusable | None:
    """What went wrong opening the store, in one line a person can act on; None for anything else."""
    path = location.path
    if path is None:
        return None
    if isinstance(exc, (NotADirectoryError, PermissionError, FileExistsError)) and not path.parent.is_dir():
        return StoreUnusable(
            f"Cannot create the store's folder {path.parent}: {exc.strerror or exc}. "
            "Set HOME to a folder this user can write, or fix that folder's permissions."
        )
    if path.is_dir():
        return StoreUnusable(f"The store {path} is a directory, not a SQLite file. Move it aside and start again.")
    if isinstance(exc, apsw.NotADBError):
        return StoreUnusable(
            f"The store {path} is not a SQLite database. Move it aside and start again; a new store is created."
        )
    if isinstance(exc, apsw.CorruptError):
        return StoreUnusable(
            f"The store {path} is damaged (SQLite reports corruption). Check it with "
            f"sqlite3 '{path}' 'PRAGMA integrity_check', then restore a backup or move it aside."
        )
    if isinstance(exc, (apsw.ReadOnlyError, apsw.CantOpenError, PermissionError)):
        return StoreUnusable(
            f"Cannot open the store {path} for writing ({exc}). Make it and its folder writable by this user."
        )
    if isinstance(exc, apsw.Error):
        return StoreUnusable(f"Cannot open the store {path}: {exc}.")
    return None


class WalSync:
    """Makes each commit durable without holding the event loop while the disk flushes.

    `attach` switches the writer's connection to `synchronous=NORMAL`, so
    COMMIT writes the WAL without waiting for the disk, and takes over
    checkpoints from SQLite's automatic ones (a WAL hook counts the pages).
    Calling the object, on the database thread, after COMMIT and before any
    caller is answered, flushes the WAL file, and checkpoints once the WAL
    holds `CHECKPOINT_PAGES` or more. A reply still means the write survives
    a power loss, as with `synchronous=FULL`; the fsync just happens where
    the event loop does not wait for it. Checkpoints use a connection of
    their own, so they never touch the writer's while it commits the next
    batch.
    """

    CHECKPOINT_PAGES = 1000

    def __init__(self, checkpointer: apsw.Connection, wal_path: str) -> None:
        self.checkpointer = checkpointer
        self.wal_path = wal_path
        self.pages = 0

    @classmethod
    def attach(cls, conn: apsw.Connection, location: StoreLocation) -> WalSync | None:
        """The syncer for a file store in WAL mode; None (and `synchronous=FULL` kept) otherwise."""
        if location.path is None or conn.pragma("journal_mode") != "wal":
            return None
        checkpointer = apsw.Connection(str(location.path), flags=apsw.SQLITE_OPEN_READWRITE)
        checkpointer.set_busy_timeout(0)
        # A connection learns that the file is in WAL mode from its first read; until then a
        # checkpoint through it does nothing.
        checkpointer.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        sync = cls(checkpointer, f"{location.path}-wal")
        conn.pragma("synchronous", "NORMAL")
        conn.set_wal_hook(sync._count)
        return sync

    def _count(self, conn: apsw.Connection, name: str, pages: int) -> int:
        self.pages = pages
        return apsw.SQLITE_OK

    def __call__(self) -> None:
        fd = os.open(self.wal_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.pages >= self.CHECKPOINT_PAGES:
            try:
                wal_pages, _ = self.checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.BusyError:
                return  # another connection is checkpointing; the next flush tries again
            if wal_pages >= 0:
                self.pages = 0

    def close(self) -> None:
        self.checkpointer.close()


def open_read_connection(location: StoreLocation) -> apsw.Connection:
    """A read-only connection: SQLite itself then keeps it from writing."""
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    target = _memory_uri(location) if location.path is None else str(location.path)
    conn = apsw.Connection(target, flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    return conn


def _rows(conn: apsw.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[JsonObject]:
    cursor = conn.execute(sql, params)
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return []
    return [dict(zip(names, row, strict=False)) for row in cursor]


class AnnotationCache:
    """Annotations already built from stored rows, by the row's values.

    Building an annotation from its row is most of the cost of a read. The
    key is the whole row, so any change to any column (by this process or
    another) is a different key: nothing can go stale. Built annotations are
    shared between reads: treat them as read-only.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._built: dict[tuple[Any, ...], JsonObject] = {}

    def build(self, names: Sequence[str], row: tuple[Any, ...]) -> JsonObject:
        built = self._built.get(row)
        if built is None:
            built = annotation_from_row(dict(zip(names, row, strict=True)))
            if len(self._built) >= self.size:
                del self._built[next(iter(self._built))]
            self._built[row] = built
        return built


def _annotations(
    conn: apsw.Connection, sql: str, params: Sequence[Any] = (), cache: AnnotationCache | None = None
) -> list[JsonObject]:
    cursor = conn.execute(sql, params)
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return []
    if cache is None:
        return [annotation_from_row(dict(zip(names, row, strict=True))) for row in cursor]
    return [cache.build(names, row) for row in cursor]


def _one(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> JsonObject | None:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


# --- reads ------------------------------------------------------------------


def list_sessions(conn: apsw.Connection) -> list[JsonObject]:
    """Every session, newest first."""
    return [session_from_row(r) for r in _rows(conn, "SELECT * FROM sessions ORDER BY created_at DESC, rowid DESC")]


def get_session(conn: apsw.Connection, session_id: str, cache: AnnotationCache | None = None) -> JsonObject:
    """A session with all its annotations (by timestamp); raises `SessionNotFound`."""
    row = _one(conn, "SELECT * FROM sessions WHERE id = ?", (session_id,))
    if row is None:
        raise SessionNotFound(session_id)
    session = session_from_row(row)
    session["annotations"] = session_annotations(conn, session_id, cache)
    return session


def session_exists(conn: apsw.Connection, session_id: str) -> bool:
    return conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).get is not None


def session_annotations(
    conn: apsw.Connection, session_id: str, cache: AnnotationCache | None = None
) -> list[JsonObject]:
    sql = "SELECT * FROM annotations WHERE session_id = ? ORDER BY timestamp, rowid"
    return _annotations(conn, sql, (session_id,), cache)


def get_annotation(conn: apsw.Connection, annotation_id: str, cache: AnnotationCache | None = None) -> JsonObject:
    """One annotation in its stored form; raises `AnnotationNotFound`."""
    found = _annotations(conn, "SELECT * FROM annotations WHERE id = ?", (annotation_id,), cache)
    if not found:
        raise AnnotationNotFound(annotation_id)
    return found[0]


def annotations_by_id(
    conn: apsw.Connection, annotation_ids: Iterable[str], cache: AnnotationCache | None = None
) -> dict[str, JsonObject]:
    ids = list(dict.fromkeys(annotation_ids))
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    found = _annotations(conn, f"SELECT * FROM annotations WHERE id IN ({marks})", ids, cache)
    return {annotation["id"]: annotation for annotation in found}


def pending_annotations(
    conn: apsw.Connection, session_id: str | None = None, cache: AnnotationCache | None = None
) -> list[JsonObject]:
    """Pending annotations: of one session, or of all (sessions newest first), each by timestamp."""
    if session_id is not None:
        sql = "SELECT * FROM annotations WHERE session_id = ? AND status = 'pending' ORDER BY timestamp, rowid"
        return _annotations(conn, sql, (session_id,), cache)
    sql = (
        "SELECT a.* FROM annotations AS a JOIN sessions AS s ON s.id = a.session_id "
        "WHERE a.status = 'pending' "
        "ORDER BY s.created_at DESC, s.rowid DESC, a.timestamp, a.rowid"
    )
    return _annotations(conn, sql, (), cache)


def _event_from_row(row: Mapping[str, Any]) -> Event:
    return Event(
        type=row["type"],
        session_id=row["session_id"],
        payload=from_json(row["payload"]),
        sequence=int(row["sequence"]),
        timestamp=row["timestamp"],
    )


def events_after(
    conn: apsw.Connection,
    after: int,
    *,
    upto: int | None = None,
    session_id: str | None = None,
    limit: int = 1000,
) -> list[Event]:
    """Persisted events with `after < sequence (<= upto)`, in sequence order."""
    sql = "SELECT type, timestamp, session_id, sequence, payload FROM events WHERE sequence > ?"
    params: list[Any] = [after]
    if upto is not None:
        sql += " AND sequence <= ?"
        params.append(upto)
    if session_id is not None:
        sql += " AND session_id = ?"
        params.append(session_id)
    sql += " ORDER BY sequence LIMIT ?"
    params.append(limit)
    return [_event_from_row(r) for r in _rows(conn, sql, params)]


EventRow = tuple[str, str, int, str, str]
"""(type, session_id, sequence, payload as JSON text, timestamp) of one persisted event."""


def event_rows_after(conn: apsw.Connection, after: int, *, limit: int = 1000) -> list[EventRow]:
    """Persisted events with a sequence above `after`, in order, as stored (the payload left as JSON text)."""
    cursor = conn.execute(
        "SELECT type, session_id, sequence, payload, timestamp FROM events "
        "WHERE sequence > ? ORDER BY sequence LIMIT ?",
        (after, limit),
    )
    return list(cursor)


def last_sequence(conn: apsw.Connection) -> int:
    """The highest sequence handed out so far (events may have been pruned since)."""
    value = conn.execute(
        "SELECT MAX(COALESCE((SELECT value FROM event_sequence WHERE id = 1), 0), "
        "COALESCE((SELECT MAX(sequence) FROM events), 0))"
    ).get
    return int(value) if isinstance(value, int) else 0


def data_version(conn: apsw.Connection) -> int:
    """Changes whenever another connection commits to the store."""
    value = conn.execute("PRAGMA data_version").get
    return int(value) if isinstance(value, int) else 0


# --- writes -------------------------------------------------------------------


def prune_events(conn: apsw.Connection, retention_days: int) -> int:
    """Delete events older than `retention_days`; the next sequence is never lowered."""
    cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).isoformat(timespec="milliseconds")
    cutoff = cutoff.replace("+00:00", "Z")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Record the high-water mark first, so pruning every event cannot lower it.
        conn.execute(
            "UPDATE event_sequence SET value = MAX(value, (SELECT COALESCE(MAX(sequence), 0) FROM events)) WHERE id = 1"
        )
        conn.execute("DELETE FROM events WHERE timestamp < ?", (cutoff,))
        pruned = conn.changes()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return pruned


def append_events(conn: apsw.Connection, pending: Sequence[PendingEvent]) -> list[Event]:
    """Persist `pending` with the next sequences; call inside the command's transaction."""
    if not pending:
        return []
    # All of the command's sequences in one step, then its events in one INSERT.
    last = conn.execute(
        "UPDATE event_sequence SET value = MAX(value, (SELECT COALESCE(MAX(sequence), 0) FROM events)) + ? "
        "WHERE id = 1 RETURNING value",
        (len(pending),),
    ).get
    assert isinstance(last, int), "event_sequence row is missing"
    first = last - len(pending) + 1
    out = [
        Event(p.type, p.session_id, p.payload, sequence, p.timestamp, to_json(p.payload))
        for sequence, p in enumerate(pending, start=first)
    ]
    conn.execute(
        "INSERT INTO events (type, timestamp, session_id, sequence, payload) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * len(out)),
        [value for e in out for value in (e.type, e.timestamp, e.session_id, e.sequence, e.payload_json)],
    )
    return out


Applied = tuple[Any, list[PendingEvent]]
Committed = outcome.Outcome[tuple[Any, list[Event]]]


def commit_batch(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[Committed]:
    """Apply `commands` in one `BEGIN IMMEDIATE` transaction, each in its own savepoint.

    A command that raises is rolled back alone and its error becomes its
    outcome; the others commit together. Retries while another process
    holds the write lock, then fails every command with `StoreBusy`.
    """
    for _ in range(BUSY_RETRIES):
        try:
            return _commit_once(conn, commands)
        except apsw.BusyError:
            continue
    try:
        return _commit_once(conn, commands)
    except apsw.BusyError:
        return [outcome.Error(StoreBusy()) for _ in commands]


def try_commit_batch(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[Committed] | None:
    """`commit_batch` if the write lock is free right now; None, with nothing done, if another process holds it."""
    conn.set_busy_timeout(0)
    try:
        return _commit_once(conn, commands)
    except apsw.BusyError:
        return None
    finally:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)


class _PartlyApplied(Exception):
    """A command failed after it had written something: the batch is redone with a savepoint per command."""


def _commit_once(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[Committed]:
    """One try; raises `apsw.BusyError`, with everything rolled back, while another process holds the lock.

    Commands first run without savepoints: a command that fails almost
    always fails before it writes anything (the thing it names does not
    exist), and then there is nothing to undo. Only when one fails after
    writing is the batch rolled back and run again with a savepoint around
    each command, so that it still fails alone.
    """
    try:
        return _transaction(conn, commands, _apply_plain)
    except _PartlyApplied:
        return _transaction(conn, commands, _apply_in_savepoint)


def _transaction(
    conn: apsw.Connection, commands: Sequence[c.Command], apply_one: Callable[[apsw.Connection, c.Command], Committed]
) -> list[Committed]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = [apply_one(conn, command) for command in commands]
        conn.execute("COMMIT")
    except BaseException:
        if not conn.get_autocommit():
            conn.execute("ROLLBACK")
        raise
    return results


def _apply_plain(conn: apsw.Connection, command: c.Command) -> Committed:
    before = conn.total_changes()
    try:
        result, pending = apply(conn, command)
        events = append_events(conn, pending)
    except AgentationError as exc:
        if conn.total_changes() != before:
            raise _PartlyApplied from exc
        return outcome.Error(exc)
    except apsw.BusyError:
        raise
    except Exception as exc:
        if conn.total_changes() != before:
            raise _PartlyApplied from exc
        log.exception("applying %s failed", type(command).__name__)
        return outcome.Error(InternalError())
    return outcome.Value((result, events))


def _apply_in_savepoint(conn: apsw.Connection, command: c.Command) -> Committed:
    conn.execute("SAVEPOINT command")
    try:
        result, pending = apply(conn, command)
        events = append_events(conn, pending)
    except AgentationError as exc:
        conn.execute("ROLLBACK TO command; RELEASE command")
        return outcome.Error(exc)
    except apsw.BusyError:
        raise
    except Exception:
        log.exception("applying %s failed", type(command).__name__)
        conn.execute("ROLLBACK TO command; RELEASE command")
        return outcome.Error(InternalError())
    conn.execute("RELEASE command")
    return outcome.Value((result, events))


def apply(conn: apsw.Connection, command: c.Command) -> Applied:
    """Carry out one command; returns its result and the events it caused."""
    match command:
        case c.CreateSession():
            return _create_session(conn, command)
        case c.CreateAnnotation():
            return _create_annotation(conn, command)
        case c.UpdateAnnotation():
            return _update_annotation(conn, command)
        case c.AddThreadMessage():
            return _add_message(conn, command.annotation_id, command.message, [])
        case c.DeleteAnnotation():
            return _delete_annotation(conn, command)
        case c.RequestAction():
            return _request_action(conn, command)
        case _:
            raise TypeError(f"not a command: {command!r}")


def _create_session(conn: apsw.Connection, cmd: c.CreateSession) -> Applied:
    session: JsonObject = {"id": new_id(), "url": cmd.url, "status": "active", "createdAt": now_iso()}
    if cmd.project_id is not None:
        session["projectId"] = cmd.project_id
    conn.execute(
        "INSERT INTO sessions (id, url, status, created_at, project_id) VALUES (?, ?, 'active', ?, ?)",
        (session["id"], cmd.url, session["createdAt"], cmd.project_id),
    )
    return session, [PendingEvent(SESSION_CREATED, session["id"], session)]


def _column_value(name: str, value: Any) -> Any:
    storage = FIELD_BY_NAME[name].storage
    if storage == "json":
        return to_json(value)
    if storage == "bool":
        return int(bool(value))
    return value


def _create_annotation(conn: apsw.Connection, cmd: c.CreateAnnotation) -> Applied:
    if not session_exists(conn, cmd.session_id):
        raise SessionNotFound(cmd.session_id)
    annotation_id = new_id()
    columns = ["id", "session_id", "status", "created_at", "kind", "extra"]
    values: list[Any] = [annotation_id, cmd.session_id, "pending", now_iso(), cmd.kind, to_json(cmd.extra)]
    for name, value in cmd.fields.items():
        columns.append(FIELD_BY_NAME[name].column)
        values.append(_column_value(name, value))
    conn.execute(
        f"INSERT INTO annotations ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )
    annotation = get_annotation(conn, annotation_id)
    return annotation, [PendingEvent(ANNOTATION_CREATED, cmd.session_id, annotation)]


def _annotation_row(conn: apsw.Connection, annotation_id: str) -> JsonObject:
    row = _one(conn, "SELECT * FROM annotations WHERE id = ?", (annotation_id,))
    if row is None:
        raise AnnotationNotFound(annotation_id)
    return row


def _update_annotation(conn: apsw.Connection, cmd: c.UpdateAnnotation) -> Applied:
    row = _annotation_row(conn, cmd.annotation_id)
    now = now_iso()
    sets: dict[str, Any] = {"updated_at": now}
    for name, value in cmd.changes.items():
        sets[FIELD_BY_NAME[name].column] = _column_value(name, value)
    new_status = cmd.changes.get("status")
    if new_status is not None:
        if new_status in CLOSED_STATUSES:
            if new_status != row["status"] or row["resolved_at"] is None:
                sets["resolved_at"] = now
        else:
            sets["resolved_at"] = None
            if "resolvedBy" not in cmd.changes:
                sets["resolved_by"] = None
    if cmd.extra_changes:
        extra = from_json(row["extra"]) if row["extra"] else {}
        if not isinstance(extra, dict):
            extra = {}
        extra.update(cmd.extra_changes)
        sets["extra"] = to_json(extra)
    assignments = ", ".join(f"{column} = ?" for column in sets)
    conn.execute(f"UPDATE annotations SET {assignments} WHERE id = ?", [*sets.values(), cmd.annotation_id])
    # The row as it now stands, without reading it back: every value set is already in the form SQLite
    # returns for its column (text, JSON text, 0/1), but for the REAL columns, which hold every number as
    # a double.
    row.update(sets)
    for column in _REAL_COLUMNS:
        if isinstance(row.get(column), int):
            row[column] = float(row[column])
    annotation = annotation_from_row(row)
    events = [PendingEvent(ANNOTATION_UPDATED, annotation["sessionId"], annotation)]
    if cmd.message is not None:
        return _add_message(conn, cmd.annotation_id, cmd.message, events, row)
    return annotation, events


_REAL_COLUMNS = ("x", "y")


def _add_message(
    conn: apsw.Connection,
    annotation_id: str,
    message: c.NewThreadMessage,
    events: list[PendingEvent],
    row: JsonObject | None = None,
) -> Applied:
    if row is None:
        row = _annotation_row(conn, annotation_id)
    entry = {"id": new_id(), "role": message.role, "content": message.content, "timestamp": now_ms()}
    sets = {"thread": _append_to_array(row["thread"], to_json(entry)), "updated_at": now_iso()}
    conn.execute(
        "UPDATE annotations SET thread = ?, updated_at = ? WHERE id = ?",
        (sets["thread"], sets["updated_at"], annotation_id),
    )
    row.update(sets)
    annotation = annotation_from_row(row)
    session_id = annotation["sessionId"]
    events += [
        PendingEvent(ANNOTATION_UPDATED, session_id, annotation),
        PendingEvent(THREAD_MESSAGE, session_id, entry),
    ]
    return annotation, events


def _append_to_array(stored: Any, item_json: str) -> str:
    """The JSON array text `stored` with `item_json` added at the end, without decoding what is there.

    Anything that is not bracketed like an array (nothing yet, or a value some
    other client wrote) starts a new one; bracketed text is kept as it is
    (this server and the reference only ever write JSON there).
    """
    text = stored.strip() if isinstance(stored, str) else ""
    if not (text.startswith("[") and text.endswith("]")):
        return f"[{item_json}]"
    if text[1:-1].strip() == "":
        return f"[{item_json}]"
    return f"{text[:-1]},{item_json}]"


def _delete_annotation(conn: apsw.Connection, cmd: c.DeleteAnnotation) -> Applied:
    annotation = get_annotation(conn, cmd.annotation_id)
    conn.execute("DELETE FROM annotations WHERE id = ?", (cmd.annotation_id,))
    result = {"deleted": True, "annotationId": cmd.annotation_id}
    return result, [PendingEvent(ANNOTATION_DELETED, annotation["sessionId"], annotation)]


def _request_action(conn: apsw.Connection, cmd: c.RequestAction) -> Applied:
    if not session_exists(conn, cmd.session_id):
        raise SessionNotFound(cmd.session_id)
    annotations = session_annotations(conn, cmd.session_id)
    timestamp = now_iso()
    payload = {
        "sessionId": cmd.session_id,
        "annotations": annotations,
        "output": cmd.output,
        "timestamp": timestamp,
    }
    result = {"annotationCount": len(annotations), "payload": payload}
    return result, [PendingEvent(ACTION_REQUESTED, cmd.session_id, payload, timestamp)]


class StoreReader:
    """The read functions above, bound to the read-only connection the edges use.

    Annotations it returns come from its `AnnotationCache`: read-only.
    """

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.cache = AnnotationCache()

    def list_sessions(self) -> list[JsonObject]:
        return list_sessions(self.conn)

    def get_session(self, session_id: str) -> JsonObject:
        return get_session(self.conn, session_id, self.cache)

    def session_exists(self, session_id: str) -> bool:
        return session_exists(self.conn, session_id)

    def session_url(self, session_id: str) -> str | None:
        value = self.conn.execute("SELECT url FROM sessions WHERE id = ?", (session_id,)).get
        return value if isinstance(value, str) else None

    def get_annotation(self, annotation_id: str) -> JsonObject:
        return get_annotation(self.conn, annotation_id, self.cache)

    def annotations_by_id(self, annotation_ids: Iterable[str]) -> dict[str, JsonObject]:
        return annotations_by_id(self.conn, annotation_ids, self.cache)

    def pending_annotations(self, session_id: str | None = None) -> list[JsonObject]:
        return pending_annotations(self.conn, session_id, self.cache)

    def events_after(self, after: int, upto: int | None = None, session_id: str | None = None) -> list[Event]:
        return events_after(self.conn, after, upto=upto, session_id=session_id)

    def event_rows_after(self, after: int, limit: int = 1000) -> list[EventRow]:
        return event_rows_after(self.conn, after, limit=limit)

    def last_sequence(self) -> int:
        return last_sequence(self.conn)

    def data_version(self) -> int:
        return data_version(self.conn)
