"""A replay framed by SQLite is byte for byte the replay framed in Python.

* `reads.event_texts_after` with `sse.FRAME_SQL` gives, for every stored
  event, exactly `sse.frame` of its row: strings with quotes, backslashes,
  control characters, line separators and text beyond ASCII included, and
  payloads as stored (by this server or another).
* With a session, only that session's events, in order, from the cursor on.
"""

from __future__ import annotations

import orjson

from agentation_mcp.commands import AddThreadMessage, CreateAnnotation, CreateSession, NewThreadMessage
from agentation_mcp.store import reads
from agentation_mcp.web import sse

from .conftest import Store, commit

ANNOTATION = {
    "comment": 'Say "hello"\\world\n\tnext line \u2028 é€😀 \x01',
    "element": "button",
    "elementPath": "body > button",
    "x": 1.5,
    "y": 2,
    "timestamp": 1_700_000_000_000,
}
ODD = ['we"ird\\id', "line\nbreak\r\t\b\f", "\x01\x1f\x7f", "é€😀", "\u2028\u2029"]


def _fill(opened: Store) -> list[str]:
    sessions = []
    for port in (3000, 3001):
        [(session, _)] = commit(opened.conn, CreateSession(url=f"http://localhost:{port}/"))
        [(annotation, _)] = commit(opened.conn, CreateAnnotation.from_body(session["id"], ANNOTATION))
        reply = NewThreadMessage.from_body({"role": "agent", "content": "ok ✓"})
        commit(opened.conn, AddThreadMessage(annotation["id"], reply))
        sessions.append(session["id"])
    # Events as another process might have stored them: odd strings in every text column.
    last = reads.last_sequence(opened.reader)
    with opened.conn:
        for i, odd in enumerate(ODD, start=1):
            payload = orjson.dumps({"text": odd, "n": 1.25}).decode()
            opened.conn.execute(
                "INSERT INTO events (type, timestamp, session_id, sequence, payload) VALUES (?, ?, ?, ?, ?)",
                (f"custom.{i}", odd, odd, last + i, payload),
            )
    return sessions


def test_sqlite_frames_every_event_as_python_does(opened: Store) -> None:
    _fill(opened)
    rows = reads.event_rows_after(opened.reader, 0)
    texts = reads.event_texts_after(opened.reader, 0, sse.FRAME_SQL)
    assert len(texts) == len(rows) > len(ODD)
    assert texts == [(row[2], sse.frame(*row)) for row in rows]


def test_a_session_replay_has_that_sessions_events_from_the_cursor(opened: Store) -> None:
    first, second = _fill(opened)
    rows = [row for row in reads.event_rows_after(opened.reader, 0) if row[1] == second]
    assert len(rows) >= 3
    texts = reads.event_texts_after(opened.reader, 0, sse.FRAME_SQL, session_id=second)
    assert texts == [(row[2], sse.frame(*row)) for row in rows]
    after = rows[0][2]
    assert reads.event_texts_after(opened.reader, after, sse.FRAME_SQL, session_id=second, limit=1) == [
        (rows[1][2], sse.frame(*rows[1]))
    ]
    assert first != second
