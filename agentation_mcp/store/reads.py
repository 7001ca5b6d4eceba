"""Reading the store: sessions, annotations and events, in their stored form.

Every function takes a `Reader`: a connection, and the `AnnotationCache` the
edges share (the writer reads through one without a cache, inside its
transaction). A storage error (a damaged file, an I/O error, a lock held too
long) comes out as our `StoreFault`, through `faults.mapped`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from ..errors import AnnotationNotFound, SessionNotFound
from ..models import Event, JsonObject, annotation_from_row, from_json, session_from_row
from .faults import mapped


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


@dataclass(slots=True)
class Reader:
    """A connection to read with, and the cache its annotations come from (read-only when shared)."""

    conn: apsw.Connection
    cache: AnnotationCache | None = field(default_factory=AnnotationCache)


def rows(conn: apsw.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[JsonObject]:
    """Each row of `sql` as a dict by column name."""
    cursor = conn.execute(sql, params)
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return []
    return [dict(zip(names, row, strict=False)) for row in cursor]


def one(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> JsonObject | None:
    found = rows(conn, sql, params)
    return found[0] if found else None


def _annotations(src: Reader, sql: str, params: Sequence[Any] = ()) -> list[JsonObject]:
    cursor = src.conn.execute(sql, params)
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return []
    cache = src.cache
    rows = cursor.fetchall()
    if cache is None or len(rows) > cache.size:
        # More rows than the cache holds would only churn it: build them directly.
        return [annotation_from_row(dict(zip(names, row, strict=True))) for row in rows]
    return [cache.build(names, row) for row in rows]


@mapped
def list_sessions(src: Reader) -> list[JsonObject]:
    """Every session, newest first."""
    return [session_from_row(r) for r in rows(src.conn, "SELECT * FROM sessions ORDER BY created_at DESC, rowid DESC")]


@mapped
def get_session(src: Reader, session_id: str) -> JsonObject:
    """A session with all its annotations (by timestamp); raises `SessionNotFound`."""
    row = one(src.conn, "SELECT * FROM sessions WHERE id = ?", (session_id,))
    if row is None:
        raise SessionNotFound(session_id)
    session = session_from_row(row)
    session["annotations"] = session_annotations(src, session_id)
    return session


@mapped
def session_exists(src: Reader, session_id: str) -> bool:
    return src.conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).get is not None


@mapped
def session_url(src: Reader, session_id: str) -> str | None:
    value = src.conn.execute("SELECT url FROM sessions WHERE id = ?", (session_id,)).get
    return value if isinstance(value, str) else None


@mapped
def session_annotations(src: Reader, session_id: str) -> list[JsonObject]:
    sql = "SELECT * FROM annotations WHERE session_id = ? ORDER BY timestamp, rowid"
    return _annotations(src, sql, (session_id,))


@mapped
def get_annotation(src: Reader, annotation_id: str) -> JsonObject:
    """One annotation in its stored form; raises `AnnotationNotFound`."""
    found = _annotations(src, "SELECT * FROM annotations WHERE id = ?", (annotation_id,))
    if not found:
        raise AnnotationNotFound(annotation_id)
    return found[0]


@mapped
def annotations_by_id(src: Reader, annotation_ids: Iterable[str]) -> dict[str, JsonObject]:
    ids = list(dict.fromkeys(annotation_ids))
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    found = _annotations(src, f"SELECT * FROM annotations WHERE id IN ({marks})", ids)
    return {annotation["id"]: annotation for annotation in found}


_PENDING_OF_SESSION = "SELECT * FROM annotations WHERE session_id = ? AND status = 'pending' ORDER BY timestamp, rowid"
_PENDING = (
    "SELECT a.* FROM annotations AS a JOIN sessions AS s ON s.id = a.session_id "
    "WHERE a.status = 'pending' "
    "ORDER BY s.created_at DESC, s.rowid DESC, a.timestamp, a.rowid"
)


@mapped
def pending_annotations(src: Reader, session_id: str | None = None) -> list[JsonObject]:
    """Pending annotations: of one session, or of all (sessions newest first), each by timestamp."""
    if session_id is not None:
        return _annotations(src, _PENDING_OF_SESSION, (session_id,))
    return _annotations(src, _PENDING)


@dataclass(frozen=True, slots=True)
class Page:
    """The first annotations of a list, and how many more there are."""

    annotations: list[JsonObject]
    more: int


@mapped
def pending_page(src: Reader, session_id: str | None, limit: int) -> Page:
    """`pending_annotations`, at most `limit` of them, with the count of those left out."""
    if session_id is not None:
        found = _annotations(src, f"{_PENDING_OF_SESSION} LIMIT ?", (session_id, limit))
        total_sql, params = "SELECT COUNT(*) FROM annotations WHERE session_id = ? AND status = 'pending'", [session_id]
    else:
        found = _annotations(src, f"{_PENDING} LIMIT ?", (limit,))
        total_sql = (
            "SELECT COUNT(*) FROM annotations AS a JOIN sessions AS s ON s.id = a.session_id WHERE a.status = 'pending'"
        )
        params = []
    if len(found) < limit:
        return Page(found, 0)
    total = src.conn.execute(total_sql, params).get
    return Page(found, max(int(total) - len(found), 0) if isinstance(total, int) else 0)


def _event_from_row(row: Mapping[str, Any]) -> Event:
    return Event(
        type=row["type"],
        session_id=row["session_id"],
        payload=from_json(row["payload"]),
        sequence=int(row["sequence"]),
        timestamp=row["timestamp"],
    )


@mapped
def events_after(
    src: Reader,
    after: int,
    upto: int | None = None,
    *,
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
    return [_event_from_row(r) for r in rows(src.conn, sql, params)]


EventRow = tuple[str, str, int, str, str]
"""(type, session_id, sequence, payload as JSON text, timestamp) of one persisted event."""


@mapped
def event_rows_after(src: Reader, after: int, *, limit: int = 1000) -> list[EventRow]:
    """Persisted events with a sequence above `after`, in order, as stored (the payload left as JSON text)."""
    cursor = src.conn.execute(
        "SELECT type, session_id, sequence, payload, timestamp FROM events "
        "WHERE sequence > ? ORDER BY sequence LIMIT ?",
        (after, limit),
    )
    return list(cursor)


@mapped
def last_sequence(src: Reader) -> int:
    """The highest sequence handed out so far (events may have been pruned since)."""
    value = src.conn.execute(
        "SELECT MAX(COALESCE((SELECT value FROM event_sequence WHERE id = 1), 0), "
        "COALESCE((SELECT MAX(sequence) FROM events), 0))"
    ).get
    return int(value) if isinstance(value, int) else 0


@mapped
def data_version(src: Reader) -> int:
    """Changes whenever another connection commits to the store."""
    value = src.conn.execute("PRAGMA data_version").get
    return int(value) if isinstance(value, int) else 0
