"""The reader's row-keyed `AnnotationCache`: never a stale annotation, even when a column changes without
`updated_at` changing, and bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentation_mcp.commands import (
    CreateAnnotation,
)
from agentation_mcp.store import reads
from agentation_mcp.store.reads import AnnotationCache

from .conftest import (
    ANNOTATION,
    Store,
    commit_one,
    fresh,
    new_annotation,
)

# --- 3. the reader's cache never goes stale -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "field", "expected"),
    [
        ("comment", "changed behind its back", "comment", "changed behind its back"),
        ("x", 99.25, "x", 99.25),
        ("y", 7.0, "y", 7),
        ("is_fixed", 1, "isFixed", True),
        ("thread", '[{"id":"t","role":"agent","content":"c","timestamp":2}]', "thread", None),
        ("extra", '{"custom":7}', "custom", 7),
        ("kind", "rearrange", "kind", "rearrange"),
        ("source_file", "src/App.tsx:3", "sourceFile", "src/App.tsx:3"),
        ("resolved_by", "someone", "resolvedBy", "someone"),
    ],
)
def test_cached_reads_see_a_change_to_any_column_with_updated_at_unchanged(
    opened: Store, column: str, value: Any, field: str, expected: Any
) -> None:
    sid, created = new_annotation(opened)
    aid = created["id"]
    first = reads.get_annotation(opened.reader, aid)
    assert reads.get_annotation(opened.reader, aid) is first  # the cache is in play: a repeat read is the same object
    # Every cached view, primed before the change.
    assert reads.get_session(opened.reader, sid)["annotations"] == [first]
    assert reads.pending_annotations(opened.reader, sid) == [first]
    assert reads.pending_annotations(opened.reader) == [first]
    assert reads.annotations_by_id(opened.reader, [aid]) == {aid: first}

    opened.conn.execute(f"UPDATE annotations SET {column} = ? WHERE id = ?", (value, aid))
    if expected is None:
        expected = json.loads(value)

    again = reads.get_annotation(opened.reader, aid)
    assert again[field] == expected
    assert first.get(field) != expected
    assert again["updatedAt"] == first["updatedAt"]
    assert again == fresh(opened, aid)
    assert reads.get_session(opened.reader, sid)["annotations"] == [again]
    assert reads.pending_annotations(opened.reader, sid) == [again]
    assert reads.pending_annotations(opened.reader) == [again]
    assert reads.annotations_by_id(opened.reader, [aid]) == {aid: again}


def test_cached_pending_lists_follow_status_changes_made_behind_their_back(opened: Store) -> None:
    sid, a = new_annotation(opened, comment="a")
    created_b, _ = commit_one(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": "b"}))
    ids = [a["id"], created_b["id"]]
    assert [x["id"] for x in reads.pending_annotations(opened.reader, sid)] == ids
    assert [x["id"] for x in reads.pending_annotations(opened.reader)] == ids

    opened.conn.execute("UPDATE annotations SET status = 'resolved' WHERE id = ?", (a["id"],))
    assert [x["id"] for x in reads.pending_annotations(opened.reader, sid)] == [created_b["id"]]
    assert [x["id"] for x in reads.pending_annotations(opened.reader)] == [created_b["id"]]
    statuses = [x["status"] for x in reads.get_session(opened.reader, sid)["annotations"]]
    assert statuses == ["resolved", "pending"]

    # Back to pending with another comment: the list shows the new row, not the first one it cached.
    opened.conn.execute("UPDATE annotations SET status = 'pending', comment = 'a2' WHERE id = ?", (a["id"],))
    assert [x["comment"] for x in reads.pending_annotations(opened.reader, sid)] == ["a2", "b"]
    assert [x["comment"] for x in reads.get_session(opened.reader, sid)["annotations"]] == ["a2", "b"]

    # Back to exactly the first row: its annotation is the first one again.
    opened.conn.execute("UPDATE annotations SET comment = 'a' WHERE id = ?", (a["id"],))
    assert reads.get_annotation(opened.reader, a["id"]) == a


def test_the_cache_keeps_at_most_size_annotations_and_drops_the_oldest(opened: Store) -> None:
    sid, _ = new_annotation(opened, comment="0")
    for i in range(1, 6):
        commit_one(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": str(i)}))
    cursor = opened.conn.execute("SELECT * FROM annotations ORDER BY rowid")
    names = [d[0] for d in cursor.get_description()]
    rows = list(cursor)
    assert len(set(rows)) == 6

    cache = AnnotationCache(size=3)
    built = [cache.build(names, row) for row in rows]
    assert [b["comment"] for b in built] == [str(i) for i in range(6)]
    assert len(cache._built) <= 3
    # Newest first: the three most recent come back as the same objects; the older ones were dropped and are
    # built anew (equal, not identical). An unbounded cache would give all True.
    kept = [cache.build(names, row) is b for row, b in zip(reversed(rows), reversed(built), strict=True)]
    assert kept == [True, True, True, False, False, False]
    assert [cache.build(names, row) for row in rows] == built
    assert len(cache._built) <= 3
