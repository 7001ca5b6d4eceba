"""The pending tools' read: agent views built from a dozen columns, in list order, without a sort.

* `pending_scan(..., views=True)` gives exactly `agent_view` of what the full
  scan gives, with the same cursor position and count of what follows, for
  annotations of every kind, with and without `extra` keys, a source file,
  fractional numbers, and under a budget that cuts the page.
* The pending list of every session, full or as views, is read in its order
  from the indexes: SQLite plans no temporary B-tree to sort it.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentation_mcp.agent.budget import PageBudget
from agentation_mcp.commands import CreateAnnotation, CreateSession, UpdateAnnotation
from agentation_mcp.models import agent_view, annotation_builder, annotation_from_row, json_bytes
from agentation_mcp.store import reads

from .conftest import Store, commit

BASE = {"comment": "Make it blue", "element": "button", "elementPath": "body > button", "x": 1, "y": 2}
VARIANTS: list[dict[str, Any]] = [
    {},
    {"x": 10.5, "y": 3.25, "sourceFile": "src/App.tsx:12", "reactComponents": "App > Button"},
    {"sourceFile": "", "nearbyText": "Buy now", "intent": "fix", "severity": "blocking"},
    {"attributes": {"data-testid": "buy"}, "frame": {"src": "https://example.com/"}},
    {"kind": "placement", "placement": {"w": 1, "h": 2}, "custom": [1, 2]},
    {"kind": "rearrange", "rearrange": {"selector": "main > h2"}, "attributes": {"role": "heading"}},
    {"rearrange": {"selector": "s"}, "custom": 1},  # feedback: its rearrange is not shown
    {"boundingBox": {"x": 1, "y": 2, "width": 3, "height": 4.5}, "isFixed": True, "url": "http://localhost:3000/a"},
]


def _fill(opened: Store, sessions: int = 3) -> None:
    for s in range(sessions):
        [(session, _)] = commit(opened.conn, CreateSession(url=f"http://localhost:{3000 + s}/"))
        created = commit(
            opened.conn,
            *(
                CreateAnnotation.from_body(session["id"], {**BASE, **variant, "timestamp": 1_700_000_000_000 + i % 3})
                for i, variant in enumerate(VARIANTS)
            ),
        )
        commit(opened.conn, UpdateAnnotation(created[0][0]["id"], {"status": "resolved"}))


@pytest.mark.parametrize("session", [False, True])
@pytest.mark.parametrize("limit", [1, 5, 100])
def test_views_are_the_agent_views_of_the_full_scan(opened: Store, session: bool, limit: int) -> None:
    _fill(opened)
    session_id = reads.list_sessions(opened.reader)[1]["id"] if session else None
    after = None
    while True:
        full = reads.pending_scan(opened.reader, session_id, after, limit)
        views = reads.pending_scan(opened.reader, session_id, after, limit, views=True)
        assert views.annotations == [agent_view(a) for a in full.annotations]
        assert [list(v) for v in views.annotations] == [list(agent_view(a)) for a in full.annotations]  # key order
        assert (views.last, views.more) == (full.last, full.more)
        if not full.more:
            break
        after = full.last
    assert full.annotations or after is not None


def test_views_under_a_budget_stop_where_the_full_scan_stops(opened: Store) -> None:
    _fill(opened)
    budget = PageBudget(3000)
    views = reads.pending_scan(opened.reader, None, None, 1000, budget.take_view, views=True)
    check = PageBudget(3000)
    full = reads.pending_scan(opened.reader, None, None, 1000, lambda a: check.take_view(agent_view(a)))
    assert 0 < len(views.annotations) == len(full.annotations) < len(VARIANTS) * 3
    assert views.annotations == [agent_view(a) for a in full.annotations]
    assert (views.last, views.more) == (full.last, full.more)


def test_the_pending_list_of_every_session_is_read_in_order_without_a_sort(opened: Store) -> None:
    _fill(opened)
    ran: list[tuple[str, Any]] = []

    def record(cursor: Any, sql: str, bindings: Any) -> bool:
        ran.append((sql, bindings))
        return True

    reader = opened.reader
    reader.conn.exec_trace = record
    listed = reads.pending_annotations(reader, None)
    reads.pending_scan(reader, None, None, 1000)
    reads.pending_scan(reader, None, None, 1000, views=True)
    reader.conn.exec_trace = None
    assert len(ran) == 3
    for sql, bindings in ran:
        plan = [str(row[3]) for row in reader.conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings or ())]
        assert not [step for step in plan if "TEMP B-TREE" in step], (sql, plan)
    # And the order is the list's: sessions newest first, each one's annotations by timestamp.
    sessions = [s["id"] for s in reads.list_sessions(reader)]
    keys = [(sessions.index(a["sessionId"]), a["timestamp"]) for a in listed]
    assert keys == sorted(keys)
    assert len(listed) == (len(VARIANTS) - 1) * 3


def test_the_row_builder_gives_exactly_what_annotation_from_row_gives(opened: Store) -> None:
    _fill(opened)
    commit(opened.conn, UpdateAnnotation(reads.pending_annotations(opened.reader)[0]["id"], {"thread": []}))
    # Rows another program could have stored: numbers past 2**53, fractions, infinities and integers as
    # REAL, flags as other integers, JSON columns holding text that is no JSON, or JSON a strict parser refuses.
    odd_rows = [
        (2.0**53, -(2.0**53), "1", "[1,2", 2),
        (2.0**53 + 2, 0.1 + 0.2, "NaN", "[]", 0),
        (float("inf"), float("-inf"), '{"x": 1.0, "y": 1e3}', "null", 1),
        (-0.0, 7, "", '[{"id": "m", "content": "\u00e9"}]', -1),
    ]
    ids = [row[0] for row in opened.conn.execute("SELECT id FROM annotations WHERE extra = '{}' ORDER BY rowid")]
    assert len(ids) >= len(odd_rows)
    for annotation_id, (x, y, box, thread, flag) in zip(ids, odd_rows, strict=False):
        opened.conn.execute(
            "UPDATE annotations SET x = ?, y = ?, bounding_box = ?, thread = ?, is_fixed = ? WHERE id = ?",
            (x, y, box, thread, flag, annotation_id),
        )
    cursor = opened.conn.execute("SELECT * FROM annotations")
    names = [d[0] for d in cursor.get_description()]
    rows = cursor.fetchall()
    build = annotation_builder(names)
    for row in rows:
        expected = annotation_from_row(dict(zip(names, row, strict=True)))
        built = build(row)
        assert built == expected
        assert list(built) == list(expected)  # key order
        assert json_bytes(built) == json_bytes(expected)  # and the same types: 5, not 5.0
    # The columns in another order: the same annotations.
    reordered = ", ".join(reversed(names))
    cursor = opened.conn.execute(f"SELECT {reordered} FROM annotations")
    names_back = [d[0] for d in cursor.get_description()]
    build_back = annotation_builder(names_back)
    assert [build_back(row) for row in cursor] == [build(row) for row in rows]
    # A column missing (a partial SELECT): annotation_from_row's own error, not a wrong annotation.
    partial = [n for n in names if n != "url"]
    with pytest.raises(KeyError):
        annotation_builder(partial)(rows[0][: len(partial)])
