"""Reading the store: sessions, annotations and events, in their stored form.

Every function takes a `Reader`: a connection, and the `AnnotationCache` the
edges share (the writer reads through one without a cache, inside its
transaction). A storage error (a damaged file, an I/O error, a lock held too
long) comes out as our `StoreFault`, through `faults.mapped`.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from ..errors import AnnotationNotFound, SessionNotFound
from ..models import (
    VIEW_COLUMNS,
    Event,
    JsonObject,
    RowBuilder,
    agent_view_from_row,
    annotation_builder,
    annotation_from_row,
    from_json,
    session_from_row,
)
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
        self._builders: dict[tuple[str, ...], RowBuilder] = {}

    def builder(self, names: Sequence[str]) -> RowBuilder:
        """`models.annotation_builder(names)`, made once per column list."""
        key = tuple(names)
        made = self._builders.get(key)
        if made is None:
            made = self._builders[key] = annotation_builder(key)
        return made

    def build(self, names: Sequence[str], row: tuple[Any, ...]) -> JsonObject:
        built = self._built.get(row)
        if built is None:
            built = self.builder(names)(row)
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
    if cache is None:
        return _built_as_read(cursor, annotation_builder(names), [])
    rows = list(itertools.islice(cursor, cache.size + 1))
    if len(rows) <= cache.size:
        return [cache.build(names, row) for row in rows]
    # More rows than the cache holds would only churn it: build them directly, as they are read.
    build = cache.builder(names)
    first = [build(row) for row in rows]
    del rows
    return _built_as_read(cursor, build, first)


def _built_as_read(cursor: apsw.Cursor, build: RowBuilder, out: list[JsonObject]) -> list[JsonObject]:
    """`out`, then an annotation built from each row left in `cursor`, each row dropped once built.

    With the garbage collector paused: the annotations hold no cycles, and
    its passes over a list of 25,000 growing under it were 8% of the time
    (and holding every row until the end, another 5-10%).
    """
    append = out.append
    collecting = gc.isenabled()
    gc.disable()
    try:
        for row in cursor:
            append(build(row))
    finally:
        if collecting:
            gc.enable()
    return out


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
# Sessions first (CROSS JOIN keeps them the outer loop): newest first down `idx_sessions_created`, each
# session's pending annotations in order down `idx_annotations_session_status_time`, so the list comes
# out sorted, and a page of it costs a page. Joined the other way round, SQLite sorted the whole list
# before returning its first row (measured: a third of the time of 25,000 pending).
_PENDING_FROM = " FROM sessions AS s CROSS JOIN annotations AS a ON a.session_id = s.id"
_ORDER = " ORDER BY s.created_at DESC, s.rowid DESC, a.timestamp, a.rowid"
_PENDING = f"SELECT a.*{_PENDING_FROM} WHERE a.status = 'pending'{_ORDER}"


@mapped
def pending_annotations(src: Reader, session_id: str | None = None) -> list[JsonObject]:
    """Pending annotations: of one session, or of all (sessions newest first), each by timestamp."""
    if session_id is not None:
        return _annotations(src, _PENDING_OF_SESSION, (session_id,))
    return _annotations(src, _PENDING)


Position = tuple[str, int, int, int]
"""Where an annotation stands in the pending list: its session's `created_at` and rowid, its own
`timestamp` and rowid (the list's sort keys, so a position stays meaningful after the annotation changes)."""

_PENDING_ROWS = "SELECT s.created_at, s.rowid, a.timestamp, a.rowid, a.*" + _PENDING_FROM
_PENDING_VIEWS = (
    "SELECT s.created_at, s.rowid, a.timestamp, a.rowid, " + ", ".join(f"a.{c}" for c in VIEW_COLUMNS) + _PENDING_FROM
)
_SESSION_ORDER = " ORDER BY a.timestamp, a.rowid"
# After a position, in list order: sessions newest first, then each session's annotations oldest first.
_AFTER_IN_LIST = (
    " AND (s.created_at < ? OR (s.created_at = ? AND (s.rowid < ? OR (s.rowid = ? AND "
    "(a.timestamp > ? OR (a.timestamp = ? AND a.rowid > ?))))))"
)
_AFTER_IN_SESSION = " AND (a.timestamp > ? OR (a.timestamp = ? AND a.rowid > ?))"


@dataclass(frozen=True, slots=True)
class Scan:
    """The pending annotations a scan took, the position of the last one, and how many more follow it."""

    annotations: list[JsonObject]
    last: Position | None
    more: int


def _pending_where(session_id: str | None, after: Position | None) -> tuple[str, list[Any], str]:
    params: list[Any]
    if session_id is not None:
        where, params, order = " WHERE a.session_id = ? AND a.status = 'pending'", [session_id], _SESSION_ORDER
        if after is not None:
            where += _AFTER_IN_SESSION
            params += [after[2], after[2], after[3]]
    else:
        where, params, order = " WHERE a.status = 'pending'", [], _ORDER
        if after is not None:
            where += _AFTER_IN_LIST
            params += [after[0], after[0], after[1], after[1], after[2], after[2], after[3]]
    return where, params, order


@mapped
def pending_scan(
    src: Reader,
    session_id: str | None,
    after: Position | None,
    limit: int,
    take: Callable[[JsonObject], bool] | None = None,
    *,
    views: bool = False,
) -> Scan:
    """Pending annotations in list order (of one session, or of all), from just after `after`.

    Takes at most `limit`, and stops before the first one `take` refuses (it is asked about each in
    turn; the first is taken whatever it answers, so every page moves on). Reading stops there too, so
    a small page of a long list costs a small page. With `views`, each is its agent view
    (`models.agent_view`), read from the few columns it shows.
    """
    where, params, order = _pending_where(session_id, after)
    select = _PENDING_VIEWS if views else _PENDING_ROWS
    cursor = src.conn.execute(f"{select}{where}{order} LIMIT ?", [*params, limit + 1])
    try:
        names = [d[0] for d in cursor.get_description()][4:]
    except apsw.ExecutionCompleteError:
        return Scan([], None, 0)
    cache = None if views else src.cache
    taken: list[JsonObject] = []
    last: Position | None = None
    cut = False
    try:
        for row in cursor:
            stored = row[4:]
            if views:
                annotation = agent_view_from_row(stored)
            elif cache is not None:
                annotation = cache.build(names, stored)
            else:
                annotation = annotation_from_row(dict(zip(names, stored, strict=True)))
            if len(taken) >= limit or (not (take is None or take(annotation)) and taken):
                cut = True
                break
            taken.append(annotation)
            last = (row[0], row[1], row[2], row[3])
    finally:
        cursor.close()
    if not cut:
        return Scan(taken, last, 0)
    where, params, _ = _pending_where(session_id, last)
    remaining = src.conn.execute(f"SELECT COUNT(*){_PENDING_FROM}{where}", params).get
    return Scan(taken, last, int(remaining) if isinstance(remaining, int) else 0)


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
def event_texts_after(
    src: Reader, after: int, rendering: str, *, session_id: str | None = None, limit: int = 1000
) -> list[tuple[int, bytes]]:
    """(sequence, UTF-8 text) of persisted events above `after` (of one session, or all), in order, each
    event rendered by `rendering`, an SQL expression over the `events` table's columns (an SSE frame, say)."""
    where = "sequence > ?" if session_id is None else "session_id = ? AND sequence > ?"
    params = (after, limit) if session_id is None else (session_id, after, limit)
    cursor = src.conn.execute(
        f"SELECT sequence, CAST({rendering} AS BLOB) FROM events WHERE {where} ORDER BY sequence LIMIT ?",
        params,
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
