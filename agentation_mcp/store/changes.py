"""Carrying out commands: the rows each one writes and the events it causes.

`apply(conn, command)` is the only way anything is written, and only inside
the writer's transaction (see `transactions`). It returns the command's
result and the events it caused; `append_events` gives those events their
sequences from the `event_sequence` row in the same transaction, so a
sequence is unique and in commit order across every process sharing the
file (the reference's processes included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from .. import commands as c
from ..errors import AnnotationNotFound, SessionNotFound
from ..models import (
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
    to_json,
)
from . import presence
from .reads import Reader, get_annotation, one, session_annotations, session_exists

Applied = tuple[Any, list[PendingEvent]]


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
        case c.RecordPresence():
            presence.record(conn, command)
            return None, []
        case c.EndPresence():
            presence.end(conn, command)
            return None, []
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
    if not session_exists(Reader(conn, None), cmd.session_id):
        raise SessionNotFound(cmd.session_id)
    annotation_id = new_id()
    columns = ["id", "session_id", "status", "created_at", "kind", "extra"]
    values: list[Any] = [annotation_id, cmd.session_id, "pending", now_iso(), cmd.kind, to_json(cmd.extra)]
    for name, value in cmd.fields.items():
        columns.append(FIELD_BY_NAME[name].column)
        values.append(_column_value(name, value))
    # The stored row comes back from the INSERT itself (defaults filled in), as a read would give it.
    cursor = conn.execute(
        f"INSERT INTO annotations ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))}) RETURNING *",
        values,
    )
    names = [d[0] for d in cursor.get_description()]
    [row] = cursor.fetchall()
    annotation = annotation_from_row(dict(zip(names, row, strict=True)))
    return annotation, [PendingEvent(ANNOTATION_CREATED, cmd.session_id, annotation)]


def _annotation_row(conn: apsw.Connection, annotation_id: str) -> JsonObject:
    row = one(conn, "SELECT * FROM annotations WHERE id = ?", (annotation_id,))
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
    annotation = get_annotation(Reader(conn, None), cmd.annotation_id)
    conn.execute("DELETE FROM annotations WHERE id = ?", (cmd.annotation_id,))
    result = {"deleted": True, "annotationId": cmd.annotation_id}
    return result, [PendingEvent(ANNOTATION_DELETED, annotation["sessionId"], annotation)]


def _request_action(conn: apsw.Connection, cmd: c.RequestAction) -> Applied:
    if not session_exists(Reader(conn, None), cmd.session_id):
        raise SessionNotFound(cmd.session_id)
    annotations = session_annotations(Reader(conn, None), cmd.session_id)
    timestamp = now_iso()
    payload = {
        "sessionId": cmd.session_id,
        "annotations": annotations,
        "output": cmd.output,
        "timestamp": timestamp,
    }
    result = {"annotationCount": len(annotations), "payload": payload}
    return result, [PendingEvent(ACTION_REQUESTED, cmd.session_id, payload, timestamp)]


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
