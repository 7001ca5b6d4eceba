"""The write path: updates, thread replies, the read cache, the WAL flush, hub sinks.

* Updates and thread replies build the returned annotation from the row they
  fetched, updated in Python, instead of reading it back: whatever sequence of
  updates and replies is applied, the result, the events' payloads, a fresh
  read and the reader's cached read all agree (Hypothesis).
* Thread replies are appended to the stored JSON text (`_append_to_array`)
  without decoding it; anything not bracketed like an array starts a new
  thread, and bracketed text is kept.
* The reader's row-keyed `AnnotationCache` never serves a stale annotation,
  even when a column changes without `updated_at` changing, and stays bounded.
* `WalSync`: `synchronous=NORMAL` on a file store, the WAL fsynced after
  commits, and checkpoints once the WAL reaches `CHECKPOINT_PAGES`.
* The writer's `durable` hook (the flush) runs after COMMIT, at most once
  per batch and never for a batch that committed nothing, before any caller
  is answered and before the batch's events reach listeners, the
  cross-process tail included; with `WalSync` it really checkpoints.
* The writer waits for another connection's write lock off the event loop.
* Hub sinks: every event once, in order, gaps filled from the table; nothing
  after `remove_sink`; `run_tail` serves a hub whose only listener is a sink.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    NewThreadMessage,
    UpdateAnnotation,
)
from agentation_mcp.errors import AnnotationNotFound, InternalError
from agentation_mcp.models import (
    ANNOTATION_STATUSES,
    CLOSED_STATUSES,
    INTENTS,
    SEVERITIES,
    THREAD_ROLES,
    Event,
    to_json,
)
from agentation_mcp.store import changes, connection, reads, schema, transactions
from agentation_mcp.store.connection import StoreLocation, WalSync
from agentation_mcp.store.reads import AnnotationCache, Reader
from agentation_mcp.store.writer import Writer

from .conftest import ANNOTATION, Store, running_writer
from .conftest import commit as commit_straight

# --- helpers --------------------------------------------------------------------------------------------------------


def commit(st_: Store, command: Command) -> tuple[Any, list[Event]]:
    """One command through the writer's own transaction function; raises the command's error."""
    [done] = commit_straight(st_.conn, command)
    return done


def new_annotation(st_: Store, **fields: Any) -> tuple[str, dict[str, Any]]:
    session, _ = commit(st_, CreateSession(url="http://localhost:3000/"))
    created, _ = commit(st_, CreateAnnotation.from_body(session["id"], {**ANNOTATION, **fields}))
    return str(session["id"]), created


def commit_sessions(st_: Store, n: int) -> list[Event]:
    """Sessions written straight to the table, as another process would."""
    events: list[Event] = []
    for i in range(n):
        _, more = commit(st_, CreateSession(url=f"http://localhost:{4000 + i}/"))
        events += more
    return events


def fresh(st_: Store, annotation_id: str) -> dict[str, Any]:
    """The annotation read from the write connection, with no cache involved."""
    return reads.get_annotation(Reader(st_.conn, None), annotation_id)


def assert_same_everywhere(st_: Store, returned: dict[str, Any]) -> None:
    """What a command returned is what is stored: uncached, cached, and as the same JSON text."""
    uncached = fresh(st_, returned["id"])
    cached = reads.get_annotation(st_.reader, returned["id"])
    assert returned == uncached
    assert cached == uncached
    # Key order and number types too (`5` vs `5.0`): clients see the JSON text.
    assert to_json(returned) == to_json(uncached) == to_json(cached)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)

# --- 1. updates and replies are built without reading the row back --------------------------------------------------

# JavaScript's safe integers (|n| < 2**53); larger ones are the subject of their own test below.
coordinates = st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not f.is_integer()
)
thread_messages = (
    st.fixed_dictionaries(
        {
            "id": st.text(max_size=6),
            "role": st.sampled_from(THREAD_ROLES),
            "content": st.text(max_size=20),
            "timestamp": st.integers(0, 2**45),
        }
    )
    | json_objects
)
UPDATABLE = ("comment", "status", "resolvedBy", "intent", "severity", "sourceFile", "x", "y", "thread")
UNKNOWN = ("custom", "elementBoundingBoxes")


def _maybe_none(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A `null` in a PATCH body means "leave it": mix some in."""
    return st.none() | strategy


update_bodies = st.fixed_dictionaries(
    {},
    optional={
        "comment": _maybe_none(st.text(max_size=30)),
        "status": _maybe_none(st.sampled_from(ANNOTATION_STATUSES)),
        "resolvedBy": _maybe_none(st.text(max_size=10)),
        "intent": _maybe_none(st.sampled_from(INTENTS)),
        "severity": _maybe_none(st.sampled_from(SEVERITIES)),
        "sourceFile": _maybe_none(st.text(max_size=20)),
        "x": _maybe_none(coordinates),
        "y": _maybe_none(coordinates),
        "thread": _maybe_none(st.lists(thread_messages, max_size=3)),
        "placement": _maybe_none(json_objects),
        "attributes": _maybe_none(json_objects),
        "custom": json_values,
        "elementBoundingBoxes": json_values,
        # Keys that must change nothing: server-owned, or modelled but not updatable.
        "id": st.text(max_size=5),
        "sessionId": st.text(max_size=5),
        "createdAt": st.text(max_size=5),
        "updatedAt": st.text(max_size=5),
        "resolvedAt": st.text(max_size=5),
        "kind": st.sampled_from(["feedback", "placement", "rearrange"]),
        "element": st.text(max_size=5),
        "timestamp": st.integers(0, 2**40),
        "isFixed": st.booleans(),
    },
)
new_messages = st.builds(
    lambda role, content: NewThreadMessage.from_body({"role": role, "content": content}),
    st.sampled_from(THREAD_ROLES),
    st.text(min_size=1, max_size=20),
)
Step = tuple[str, dict[str, Any], NewThreadMessage | None]
steps: st.SearchStrategy[Step] = st.one_of(
    st.tuples(st.just("update"), update_bodies, st.none()),
    st.tuples(st.just("update+message"), update_bodies, new_messages),
    st.tuples(st.just("message"), st.just({}), new_messages),
)


def expected_after_update(before: dict[str, Any], body: dict[str, Any], now: str) -> dict[str, Any]:
    """A placement annotation after `UpdateAnnotation.from_body(id, body)` at `now`, by the documented rules."""
    given_ = {k: v for k, v in body.items() if v is not None}
    shown = {*UPDATABLE, *UNKNOWN, "attributes", "placement"}
    expected = {**before, **{key: value for key, value in given_.items() if key in shown}}
    expected["updatedAt"] = now
    status = given_.get("status")
    if status in CLOSED_STATUSES:
        if status != before["status"] or before["resolvedAt"] is None:
            expected["resolvedAt"] = now
    elif status is not None:
        expected["resolvedAt"] = None
        if "resolvedBy" not in given_:
            expected["resolvedBy"] = None
    return expected


def assert_events_persisted(st_: Store, events: list[Event]) -> None:
    assert [e.sequence for e in events] == list(range(events[0].sequence, events[0].sequence + len(events)))
    assert reads.events_after(st_.reader, events[0].sequence - 1, upto=events[-1].sequence) == events
    for event in events:
        assert event.payload_json is not None
        assert json.loads(event.payload_json) == event.payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(steps, min_size=1, max_size=8))
def test_updates_and_replies_return_what_a_fresh_read_returns(opened: Store, plan: list[Step]) -> None:
    _, current = new_annotation(opened, kind="placement", placement={"w": 1})
    aid = current["id"]
    placement: Any = {"w": 1}
    for kind, body, message in plan:
        if kind == "message":
            assert message is not None
            returned, events = commit(opened, AddThreadMessage(aid, message))
            assert [e.type for e in events] == ["annotation.updated", "thread.message"]
            intermediate = current
        else:
            command = UpdateAnnotation.from_body(aid, body)
            if message is not None:
                command = dataclasses.replace(command, message=message)
            returned, events = commit(opened, command)
            intermediate = events[0].payload
            assert intermediate == expected_after_update(current, body, intermediate["updatedAt"])
            if body.get("placement") is not None:
                placement = body["placement"]
            if message is None:
                assert [e.type for e in events] == ["annotation.updated"]
                assert intermediate is returned
            else:
                assert [e.type for e in events] == ["annotation.updated", "annotation.updated", "thread.message"]
        if message is not None:
            entry = events[-1].payload
            assert list(entry) == ["id", "role", "content", "timestamp"]
            assert (entry["role"], entry["content"]) == (message.role, message.content)
            assert events[-2].payload is returned
            assert returned == {
                **intermediate,
                "thread": [*intermediate.get("thread", []), entry],
                "updatedAt": returned["updatedAt"],
            }
        assert returned["updatedAt"] >= (current["updatedAt"] or current["createdAt"])
        # The row as stored: a fresh read, the reader's cached read, and every annotation payload of the events.
        assert_same_everywhere(opened, returned)
        assert [e.payload for e in events if e.type == "annotation.updated"][-1] == returned
        assert_events_persisted(opened, events)
        # The kind never changes, and the placement stays in `extra` where only placement annotations show it.
        assert returned["kind"] == "placement"
        assert returned["placement"] == placement
        current = returned


@pytest.mark.parametrize("number", [2**53, 2**53 + 1, -(2**60) - 1])
def test_an_update_returns_a_coordinate_as_the_real_column_stores_it(opened: Store, number: int) -> None:
    """x and y are REAL columns: an integer beyond 2**53 is stored as a float (rounded); the reply must say so."""
    _, created = new_annotation(opened)
    returned, events = commit(opened, UpdateAnnotation.from_body(created["id"], {"x": number, "y": number}))
    assert_same_everywhere(opened, returned)
    assert to_json(events[0].payload) == to_json(fresh(opened, created["id"]))


def test_an_update_rolled_back_in_its_batch_leaves_nothing_in_what_the_next_command_returns(opened: Store) -> None:
    """Each command fetches its own row: a change rolled back with its savepoint cannot leak into the next result."""
    _, created = new_annotation(opened)
    aid = created["id"]
    # SQLite refuses this one comment after the UPDATE has started, so the command fails past its row fetch.
    opened.conn.execute(
        "CREATE TEMP TRIGGER refuse_boom BEFORE UPDATE OF comment ON annotations WHEN NEW.comment = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    good = UpdateAnnotation.from_body(aid, {"comment": "kept", "intent": "fix"})
    bad = UpdateAnnotation.from_body(aid, {"comment": "boom", "status": "resolved", "custom": 1})
    first, failed, last = transactions.commit_batch(opened.conn, [good, bad, AddThreadMessage(aid, _msg("hi"))])
    with pytest.raises(InternalError):
        failed.unwrap()
    assert first.unwrap()[0]["comment"] == "kept"
    returned, _ = last.unwrap()
    assert (returned["comment"], returned["intent"], returned["status"]) == ("kept", "fix", "pending")
    assert returned["resolvedAt"] is None
    assert "custom" not in returned
    assert [m["content"] for m in returned["thread"]] == ["hi"]
    assert_same_everywhere(opened, returned)


def _msg(content: str, role: str = "agent") -> NewThreadMessage:
    return NewThreadMessage.from_body({"role": role, "content": content})


# --- 2. thread replies are appended to the stored text --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(arr=st.lists(json_values, max_size=5), item=json_values)
def test_append_to_array_appends_to_any_compact_json_array(arr: list[Any], item: Any) -> None:
    stored = json.dumps(arr, separators=(",", ":"))
    assert json.loads(changes._append_to_array(stored, json.dumps(item))) == [*arr, item]


whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    arr=st.lists(json_values, max_size=5),
    item=json_values,
    before=whitespace,
    after=whitespace,
    indent=st.sampled_from([None, 2]),
)
def test_append_to_array_appends_to_an_array_with_whitespace_around_and_inside(
    arr: list[Any], item: Any, before: str, after: str, indent: int | None
) -> None:
    """Whatever JSON.parse reads as an array (the reader shows it as one) keeps its items."""
    stored = before + json.dumps(arr, indent=indent) + after
    assert json.loads(stored) == arr  # a valid JSON array, as the reader sees it
    assert json.loads(changes._append_to_array(stored, json.dumps(item))) == [*arr, item]


NOT_ARRAYS = [None, '"notarray"', "null", "{}", "[]", "[ ]", "5", "", '{"a":[1]}', "[\n]"]


@pytest.mark.parametrize("stored", NOT_ARRAYS)
@settings(max_examples=20, deadline=None)
@given(item=json_values)
def test_append_to_array_starts_a_new_array_after_anything_else(stored: str | None, item: Any) -> None:
    assert json.loads(changes._append_to_array(stored, json.dumps(item))) == [item]


def _store_thread(st_: Store, annotation_id: str, stored: str | None) -> None:
    st_.conn.execute("UPDATE annotations SET thread = ? WHERE id = ?", (stored, annotation_id))


@pytest.mark.parametrize(
    ("stored", "before"),
    [
        *[(value, []) for value in NOT_ARRAYS],
        ('[{"id":"m0","role":"human","content":"old","timestamp":1}]', None),
        ('[1,"two",{"three":[3]},null]', None),
        ('[\n  {\n    "a": 1.5\n  }\n]\n', None),
        ('[{"a":1}]  ', None),
        (' [{"a":1}]', None),
        ('\n[{"a":1},{"b":2}]', None),
    ],
)
def test_a_reply_to_a_stored_thread_of_any_shape_is_appended(opened: Store, stored: str | None, before: Any) -> None:
    _, created = new_annotation(opened)
    _store_thread(opened, created["id"], stored)
    if before is None:
        assert stored is not None
        before = json.loads(stored)
    returned, events = commit(opened, AddThreadMessage(created["id"], _msg("reply")))
    entry = events[-1].payload
    assert returned["thread"] == [*before, entry]
    assert json.loads(opened.conn.execute("SELECT thread FROM annotations WHERE id = ?", (created["id"],)).get) == [
        *before,
        entry,
    ]
    assert_same_everywhere(opened, returned)
    # And a second reply lands after the first.
    again, events = commit(opened, UpdateAnnotation(created["id"], message=_msg("again", "human")))
    assert again["thread"] == [*before, entry, events[-1].payload]
    assert_same_everywhere(opened, again)


def test_a_reply_to_bracketed_text_that_is_not_json_keeps_what_was_stored(opened: Store) -> None:
    """The stored text is not decoded (that is what makes a reply cheap), so bracketed non-JSON is kept, not dropped."""
    _, created = new_annotation(opened)
    _store_thread(opened, created["id"], "[oops]")
    returned, events = commit(opened, AddThreadMessage(created["id"], _msg("reply")))
    message = json.dumps(events[-1].payload, separators=(",", ":"))
    assert returned["thread"] == f"[oops,{message}]"
    assert reads.get_annotation(Reader(opened.conn, None), created["id"])["thread"] == returned["thread"]


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
    created_b, _ = commit(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": "b"}))
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
        commit(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": str(i)}))
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


# --- 4. WalSync -----------------------------------------------------------------------------------------------------


@pytest.fixture
def wal_sync(opened: Store) -> Iterator[WalSync]:
    """`WalSync` attached to the opened file store; its checkpoint connection closed afterwards."""
    sync = WalSync.attach(opened.conn, opened.location)
    assert sync is not None
    yield sync
    sync.close()


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
            commit(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "comment": "c" * 3000}))
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
        commit(opened, CreateAnnotation.from_body(sid, ANNOTATION))
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


# --- 5. the writer's durable hook -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_durable_runs_after_commit_and_before_publishing_and_replies(opened: Store) -> None:
    hub = opened.hub()
    log: list[tuple[str, Any]] = []
    sequence_of: dict[str, int] = {}

    def sink(event: Event) -> None:
        sequence_of[event.payload["id"]] = event.sequence
        log.append(("published", event.sequence))

    hub.add_sink(sink)
    probe = connection.open_read_connection(opened.location)  # another connection: sees only what is committed

    def durable() -> None:
        # On the database thread, while the writer's answering task awaits it: what is committed, not yet published.
        visible = probe.execute(
            "SELECT sequence FROM events WHERE sequence > ? ORDER BY sequence", (hub.last_published,)
        )
        log.append(("durable", [sequence for (sequence,) in visible]))

    n = 60
    try:
        async with running_writer(opened, hub, in_thread=True, durable=durable) as writer:
            go = trio.Event()

            async def submit(i: int) -> None:
                await go.wait()
                result = await writer.submit(CreateSession(url=f"http://localhost:{5000 + i}/"))
                log.append(("returned", result["id"]))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(submit, i)
                    await trio.testing.wait_all_tasks_blocked()
                    go.set()
            stats = writer.statistics()
    finally:
        probe.close()

    flushes = [i for i, (kind, _) in enumerate(log) if kind == "durable"]
    # At most once per batch (one flush may answer several), never once per command.
    assert stats.commands == n
    assert 0 < len(flushes) <= stats.batches < n
    assert [s for kind, s in log if kind == "published"] == list(range(1, n + 1))
    position = {(kind, item): i for i, (kind, item) in enumerate(log) if kind != "durable"}
    returned = [item for kind, item in log if kind == "returned"]
    assert len(returned) == n
    for annotation_id in returned:
        sequence = sequence_of[annotation_id]
        published_at = position[("published", sequence)]
        # Flushed after its COMMIT (the flush before its publication saw it committed, from another connection),
        # published after the flush, and its caller answered after that.
        before = [i for i in flushes if i < published_at]
        assert before, f"sequence {sequence} was published before any flush"
        assert sequence in log[before[-1]][1]
        assert published_at < position[("returned", annotation_id)]


@pytest.mark.anyio
async def test_durable_is_not_called_for_a_batch_that_committed_nothing(opened: Store) -> None:
    hub = opened.hub()
    calls: list[int] = []

    def durable() -> None:
        calls.append(hub.last_published)

    async with running_writer(opened, hub, in_thread=True, durable=durable) as writer:
        with trio.fail_after(10):
            session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            assert calls == [0]

            # One failing command alone.
            with pytest.raises(AnnotationNotFound):
                await writer.submit(UpdateAnnotation("missing", {"status": "resolved"}))
            assert writer.statistics().batches == 2
            assert calls == [0]

            # A batch of failing commands only, then a batch with one good command among bad ones.
            async def batch(commands: list[Command]) -> list[Any]:
                outcomes: list[Any] = [None] * len(commands)
                go = trio.Event()

                async def submit(i: int, command: Command) -> None:
                    await go.wait()
                    try:
                        outcomes[i] = await writer.submit(command)
                    except AnnotationNotFound as exc:
                        outcomes[i] = exc

                async with trio.open_nursery() as nursery:
                    for i, command in enumerate(commands):
                        nursery.start_soon(submit, i, command)
                    await trio.testing.wait_all_tasks_blocked()
                    go.set()
                return outcomes

            bad: list[Command] = [AddThreadMessage(f"missing-{i}", _msg("x")) for i in range(3)]
            outcomes = await batch(bad)
            assert all(isinstance(o, AnnotationNotFound) for o in outcomes)
            assert writer.statistics().batches == 3
            assert writer.statistics().largest_batch == 3
            assert calls == [0]

            good = CreateAnnotation.from_body(session["id"], ANNOTATION)
            outcomes = await batch([bad[0], good, bad[1]])
            assert isinstance(outcomes[0], AnnotationNotFound)
            assert isinstance(outcomes[2], AnnotationNotFound)
            assert outcomes[1]["comment"] == ANNOTATION["comment"]
            assert writer.statistics().batches == 4
            assert calls == [0, 1]


@pytest.mark.anyio
async def test_the_tail_does_not_publish_a_batch_of_this_writer_before_its_flush(opened: Store) -> None:
    """In the service `run_tail` runs beside the writer: listeners must not hear of a write that is not on disk."""
    hub = opened.hub()
    published: list[int] = []
    hub.add_sink(lambda event: published.append(event.sequence))
    token = trio.lowlevel.current_trio_token()
    flushing = trio.Event()
    release = threading.Event()

    def durable() -> None:
        trio.from_thread.run_sync(flushing.set, trio_token=token)
        release.wait(10)

    polls = 0
    tail_looked = trio.Event()

    def data_version() -> int:
        nonlocal polls
        if flushing.is_set():
            polls += 1
            if polls == 3:
                tail_looked.set()
        return reads.data_version(opened.reader)

    result: dict[str, Any] = {}

    async def submit(writer: Writer) -> None:
        result["session"] = await writer.submit(CreateSession(url="http://localhost:3000/"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, data_version)
            await trio.testing.wait_all_tasks_blocked()
            async with running_writer(opened, hub, in_thread=True, durable=durable) as writer:
                try:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(submit, writer)
                        await flushing.wait()  # committed; the flush has begun and not ended
                        await tail_looked.wait()  # and the tail has polled the store since
                        assert published == [], "the event reached listeners before the write was on disk"
                        release.set()
                finally:
                    release.set()  # before the writer is closed: closing waits for the flush
            nursery.cancel_scope.cancel()
    assert published == [1]
    assert result["session"]["url"] == "http://localhost:3000/"


@pytest.mark.anyio
async def test_batches_answered_by_one_flush_are_published_in_order_with_another_writers_events_between(
    opened: Store,
) -> None:
    """Two of our batches wait for one flush, another connection commits between them: listeners get all, in order."""
    hub = opened.hub()
    published: list[int] = []
    hub.add_sink(lambda event: published.append(event.sequence))
    token = trio.lowlevel.current_trio_token()
    flushing = trio.Event()
    release = threading.Event()
    flushes = 0

    def durable() -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 1:  # hold the first flush open while two more batches commit behind it
            trio.from_thread.run_sync(flushing.set, trio_token=token)
            release.wait(10)

    assert opened.location.path is not None
    other = apsw.Connection(str(opened.location.path))
    try:
        with trio.fail_after(10):
            async with (
                running_writer(opened, hub, in_thread=True, durable=durable) as writer,
                trio.open_nursery() as nursery,
            ):
                try:
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/0"))
                    await flushing.wait()
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/1"))
                    await trio.testing.wait_all_tasks_blocked()
                    transactions.commit_batch(other, [CreateSession(url="http://localhost:3000/other")])
                    nursery.start_soon(writer.submit, CreateSession(url="http://localhost:3000/2"))
                    await trio.testing.wait_all_tasks_blocked()
                finally:
                    release.set()
    finally:
        other.close()
    assert published == [1, 2, 3, 4]
    assert flushes == 2


# --- 6. waiting for another process's write lock --------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_writer_waits_for_another_connections_lock_off_the_event_loop(opened: Store) -> None:
    hub = opened.hub()
    published: list[Event] = []
    hub.add_sink(published.append)
    assert opened.location.path is not None
    blocker = apsw.Connection(str(opened.location.path))
    blocker.set_busy_timeout(5000)
    try:
        async with running_writer(opened, hub, in_thread=True) as writer:
            with trio.fail_after(10):
                session = await writer.submit(CreateSession(url="http://localhost:3000/"))
            # Another process takes the write lock and writes, but has not committed yet.
            blocker.execute("BEGIN IMMEDIATE")
            _, pending = changes.apply(blocker, CreateSession(url="http://other-process/"))
            [other] = changes.append_events(blocker, pending)

            result: dict[str, Any] = {}
            done = trio.Event()

            async def submit() -> None:
                result["annotation"] = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
                done.set()

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()  # the writer has the command and waits for the lock
                    assert not done.is_set()
                    # The event loop keeps serving: reads and scheduling go on while the submit is pending.
                    gaps: list[float] = []
                    last = time.monotonic()
                    for _ in range(20):
                        assert reads.get_session(opened.reader, session["id"])["annotations"] == []
                        await trio.lowlevel.checkpoint()
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now
                        assert not done.is_set()
                    assert max(gaps) < 2.0
                    assert writer.statistics().batches == 1  # only the first batch has finished
                    assert [e.sequence for e in published] == [1]
                    blocker.execute("COMMIT")
                    await done.wait()
    finally:
        blocker.close()

    annotation = result["annotation"]
    assert annotation["comment"] == ANNOTATION["comment"]
    assert annotation == fresh(opened, annotation["id"])
    # The other process's event (filled in from the table) and then ours, in sequence order.
    assert [e.sequence for e in published] == [1, 2, 3]
    assert published[1] == other
    assert published[2].type == "annotation.created"
    assert published[2].payload == annotation


# --- 7. hub sinks ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_sink_gets_every_event_once_in_order_with_gaps_filled_until_removed(opened: Store) -> None:
    hub = opened.hub()
    got: list[Event] = []
    hub.add_sink(got.append)
    with hub.subscribe() as sub:
        events = commit_sessions(opened, 6)
        hub.publish([events[0]])
        hub.publish([events[3]])  # 2 and 3 were committed "elsewhere": read from the table first
        hub.publish(events)  # 1-4 are repeats, 5 and 6 new
        hub.publish(events[2:5])  # repeats only
        subscribed = [sub.receive.receive_nowait() for _ in range(6)]
    assert [e.sequence for e in got] == [1, 2, 3, 4, 5, 6]
    assert got == events
    assert subscribed == got
    assert hub.last_published == 6

    hub.remove_sink(got.append)
    more = commit_sessions(opened, 2)
    hub.publish(more)
    hub.catch_up()
    assert len(got) == 6
    assert hub.last_published == 8


@pytest.mark.anyio
async def test_a_sink_removing_itself_does_not_make_another_sink_miss_the_event(opened: Store) -> None:
    hub = opened.hub()
    first: list[int] = []
    second: list[int] = []

    def leaves_after_one(event: Event) -> None:
        first.append(event.sequence)
        hub.remove_sink(leaves_after_one)  # as the SSE fan-out does when its last stream goes

    def stays(event: Event) -> None:
        second.append(event.sequence)

    hub.add_sink(leaves_after_one)
    hub.add_sink(stays)
    hub.publish(commit_sessions(opened, 3))
    assert first == [1]
    assert second == [1, 2, 3]


@pytest.mark.anyio
async def test_tail_publishes_other_connections_commits_to_a_hub_with_only_a_sink(opened: Store) -> None:
    hub = opened.hub()
    got: list[int] = []
    arrived = trio.Event()

    def sink(event: Event) -> None:
        got.append(event.sequence)
        if len(got) == 3:
            arrived.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, partial(reads.data_version, opened.reader))
            await trio.testing.wait_all_tasks_blocked()  # the tail is parked: nobody listens
            hub.add_sink(sink)  # must wake it
            await trio.testing.wait_all_tasks_blocked()
            commit_sessions(opened, 3)  # the write connection is "another process" to the reader
            await arrived.wait()
            nursery.cancel_scope.cancel()
    assert got == [1, 2, 3]
    assert hub.statistics().subscribers == 0
