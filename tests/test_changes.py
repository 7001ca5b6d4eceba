"""Commands carried out on a real store (`changes`) and read back (`reads`).

Shapes, validation, events and sequences, retention. Updates and thread replies build the returned
annotation from the row they fetched instead of reading it back: whatever updates and replies are applied,
the result, the events' payloads, a fresh read and the cached read agree (Hypothesis). Thread replies are
appended to the stored JSON text without decoding it; anything not bracketed like an array starts a new
thread, and bracketed text is kept.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    DeleteAnnotation,
    NewThreadMessage,
    RequestAction,
    UpdateAnnotation,
)
from agentation_mcp.errors import AnnotationNotFound, InternalError, InvalidInput, SessionNotFound
from agentation_mcp.models import (
    ANNOTATION_STATUSES,
    CLOSED_STATUSES,
    INTENTS,
    SEVERITIES,
    THREAD_ROLES,
    Event,
    to_json,
)
from agentation_mcp.store import changes, reads, transactions
from agentation_mcp.store.reads import Reader

from .conftest import (
    ANNOTATION,
    Store,
    assert_same_everywhere,
    commit,
    commit_one,
    fresh,
    new_annotation,
    thread_message,
)


def run(st_: Store, command: Command) -> tuple[Any, list[Event]]:
    [done] = commit(st_.conn, command)
    return done


def new_session(st_: Store) -> str:
    session, _ = run(st_, CreateSession(url="http://localhost:3000/"))
    return str(session["id"])


def test_session_create_returns_the_short_form_and_lists_newest_first(opened: Store) -> None:
    first, events = run(opened, CreateSession.from_body({"url": "http://localhost:3000/", "projectId": "p"}))
    assert list(first) == ["id", "url", "status", "createdAt", "projectId"]
    assert first["status"] == "active"
    assert [e.type for e in events] == ["session.created"]
    assert events[0].payload == first
    second, _ = run(opened, CreateSession(url="http://localhost:5173/"))
    listed = reads.list_sessions(opened.reader)
    assert [s["id"] for s in listed] == [second["id"], first["id"]]
    assert listed[1] == {**first, "updatedAt": None, "userId": None}


def test_annotation_create_returns_the_stored_form_with_unknown_fields_kept(opened: Store) -> None:
    sid = new_session(opened)
    body = {
        **ANNOTATION,
        "id": "client-id",
        "sessionId": "other",
        "status": "resolved",
        "createdAt": "then",
        "boundingBox": {"x": 1, "y": 2, "width": 3.5, "height": 4},
        "attributes": {"data-testid": "buy"},
        "elementBoundingBoxes": [{"x": 1}],
        "isFixed": True,
        "sourceFile": "src/App.tsx:10",
    }
    created, events = run(opened, CreateAnnotation.from_body(sid, body))
    assert created["id"] != "client-id"
    assert created["sessionId"] == sid
    assert created["status"] == "pending"
    assert created["createdAt"] != "then"
    assert created["elementBoundingBoxes"] == [{"x": 1}]
    assert created["attributes"] == {"data-testid": "buy"}
    assert created["kind"] == "feedback"
    assert created["isMultiSelect"] is False
    assert created["selectedText"] is None
    assert "thread" not in created
    assert created == reads.get_annotation(opened.reader, created["id"])
    assert events[0].type == "annotation.created"
    assert events[0].payload == created
    keys = list(created)
    assert keys[:8] == ["id", "sessionId", "x", "y", "comment", "element", "elementPath", "timestamp"]
    assert keys.index("sourceFile") < keys.index("attributes") < keys.index("kind") < keys.index("url")


def test_numbers_come_back_as_javascript_prints_them(opened: Store) -> None:
    sid = new_session(opened)
    created, _ = run(opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "x": 5.0, "y": 2.25}))
    from agentation_mcp.models import to_json

    text = to_json(created)
    assert '"x":5,' in text
    assert '"y":2.25' in text


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "comment", "comment, element, elementPath, x, y, timestamp are required"),
        ({**ANNOTATION, "x": "left"}, "x", "x must be a number (got 'left')."),
        ({**ANNOTATION, "x": True}, "x", "x must be a number (got true)."),
        ({**ANNOTATION, "element": ""}, "element", "element must not be empty."),
        ({**ANNOTATION, "comment": 5}, "comment", "comment must be a string (got 5)."),
        (
            {**ANNOTATION, "kind": "weird"},
            "kind",
            "kind must be one of: feedback, placement, rearrange (got 'weird').",
        ),
        (
            {**ANNOTATION, "intent": "bogus"},
            "intent",
            "intent must be one of: fix, change, question, approve",
        ),
        (
            {**ANNOTATION, "severity": 3},
            "severity",
            "severity must be one of: blocking, important, suggestion",
        ),
        ({**ANNOTATION, "url": 123}, "url", "url must be a string (got 123)."),
        ({**ANNOTATION, "timestamp": "now"}, "timestamp", "timestamp must be a number"),
        (
            {**ANNOTATION, "selectedText": {"a": 1}},
            "selectedText",
            "selectedText must be a string (got an object).",
        ),
        ({**ANNOTATION, "isFixed": "yes"}, "isFixed", "isFixed must be true or false"),
        ({**ANNOTATION, "placement": "x"}, "placement", "placement must be an object"),
        ([1, 2], "body", "The request body must be a JSON object."),
        (None, "body", "The request body must be a JSON object."),
    ],
)
def test_invalid_annotations_are_refused_naming_the_field(body: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        CreateAnnotation.from_body("s", body)
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


def test_annotation_in_unknown_session_is_not_found_and_nothing_is_written(opened: Store) -> None:
    with pytest.raises(SessionNotFound, match=r"^Session not found: nope$"):
        run(opened, CreateAnnotation.from_body("nope", ANNOTATION))
    assert opened.conn.execute("SELECT COUNT(*) FROM annotations").get == 0
    assert opened.conn.execute("SELECT COUNT(*) FROM events").get == 0


def test_update_sets_and_clears_resolved_at_and_ignores_what_it_may_not_change(opened: Store) -> None:
    sid = new_session(opened)
    created, _ = run(
        opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "kind": "placement", "placement": {"w": 1}})
    )
    aid = created["id"]
    body = {
        **created,
        "status": "resolved",
        "resolvedBy": "agent",
        "id": "x",
        "kind": "feedback",
        "comment": "new",
    }
    resolved, events = run(opened, UpdateAnnotation.from_body(aid, body))
    assert resolved["id"] == aid
    assert resolved["kind"] == "placement"
    assert resolved["comment"] == "new"
    assert resolved["resolvedBy"] == "agent"
    assert resolved["resolvedAt"] is not None
    assert resolved["updatedAt"] is not None
    assert [e.type for e in events] == ["annotation.updated"]
    reopened, _ = run(opened, UpdateAnnotation.from_body(aid, {"status": "pending"}))
    assert reopened["resolvedAt"] is None
    assert reopened["resolvedBy"] is None
    dismissed, _ = run(opened, UpdateAnnotation.from_body(aid, {"status": "dismissed", "comment": None}))
    assert dismissed["resolvedAt"] is not None
    assert dismissed["comment"] == "new"


def test_update_keeps_hidden_extra_values(opened: Store) -> None:
    sid = new_session(opened)
    created, _ = run(
        opened, CreateAnnotation.from_body(sid, {**ANNOTATION, "rearrange": {"selector": "s"}, "custom": 1})
    )
    assert "rearrange" not in created  # shown only on rearrange annotations
    run(opened, UpdateAnnotation.from_body(created["id"], {"attributes": {"a": "b"}, "custom": 2}))
    extra = json.loads(opened.conn.execute("SELECT extra FROM annotations").get)
    assert extra == {"rearrange": {"selector": "s"}, "custom": 2, "attributes": {"a": "b"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "bogus-status"}, "status must be one of: pending, acknowledged, resolved, dismissed"),
        ({"status": 5}, "status must be one of"),
        ({"x": "1"}, "x must be a number"),
        ({"thread": "no"}, "thread must be an array"),
    ],
)
def test_invalid_updates_are_refused_and_change_nothing(opened: Store, body: Any, message: str) -> None:
    sid = new_session(opened)
    created, _ = run(opened, CreateAnnotation.from_body(sid, ANNOTATION))
    with pytest.raises(InvalidInput, match=f"^{message}"):
        UpdateAnnotation.from_body(created["id"], body)
    assert reads.get_annotation(opened.reader, created["id"]) == created


def test_thread_message_emits_updated_then_message(opened: Store) -> None:
    sid = new_session(opened)
    created, _ = run(opened, CreateAnnotation.from_body(sid, ANNOTATION))
    updated, events = run(
        opened,
        AddThreadMessage(created["id"], NewThreadMessage.from_body({"role": "human", "content": "hi"})),
    )
    assert [e.type for e in events] == ["annotation.updated", "thread.message"]
    message = events[1].payload
    assert list(message) == ["id", "role", "content", "timestamp"]
    assert isinstance(message["timestamp"], int)
    assert updated["thread"] == [message]
    with pytest.raises(InvalidInput, match=r"^role must be one of: human, agent \(got 'robot'\)"):
        NewThreadMessage.from_body({"role": "robot", "content": "x"})
    with pytest.raises(InvalidInput, match=r"^role and content are required$"):
        NewThreadMessage.from_body({"role": "human"})


def test_delete_emits_the_annotation_as_it_was(opened: Store) -> None:
    sid = new_session(opened)
    created, _ = run(opened, CreateAnnotation.from_body(sid, ANNOTATION))
    result, events = run(opened, DeleteAnnotation(created["id"]))
    assert result == {"deleted": True, "annotationId": created["id"]}
    assert events[0].type == "annotation.deleted"
    assert events[0].payload == created
    with pytest.raises(AnnotationNotFound, match=r"^Annotation not found: "):
        run(opened, DeleteAnnotation(created["id"]))


def test_action_request_is_persisted_with_its_own_sequence(opened: Store) -> None:
    sid = new_session(opened)
    run(opened, CreateAnnotation.from_body(sid, ANNOTATION))
    result, events = run(opened, RequestAction.from_body(sid, {"output": "do it"}))
    assert result["annotationCount"] == 1
    assert events[0].type == "action.requested"
    assert reads.events_after(opened.reader, 0)[-1] == events[0]
    with pytest.raises(InvalidInput, match=r"^output is required$"):
        RequestAction.from_body(sid, {"output": ""})


def test_sequences_are_consecutive_and_survive_pruning_every_event(opened: Store) -> None:
    sid = new_session(opened)
    for _ in range(3):
        run(opened, CreateAnnotation.from_body(sid, ANNOTATION))
    assert [e.sequence for e in reads.events_after(opened.reader, 0)] == [1, 2, 3, 4]
    opened.conn.execute("UPDATE events SET timestamp = '2020-01-01T00:00:00.000Z'")
    assert transactions.prune_events(opened.conn, 7) == 4
    assert reads.events_after(opened.reader, 0) == []
    assert reads.last_sequence(opened.reader) == 4
    _, events = run(opened, CreateSession(url="http://localhost:1/"))
    assert events[0].sequence == 5


def test_retention_keeps_recent_events(opened: Store) -> None:
    new_session(opened)
    assert transactions.prune_events(opened.conn, 7) == 0
    assert len(reads.events_after(opened.reader, 0)) == 1


def test_pending_lists_sessions_newest_first_and_annotations_by_timestamp(opened: Store) -> None:
    old = new_session(opened)
    new = new_session(opened)
    a2, _ = run(opened, CreateAnnotation.from_body(old, {**ANNOTATION, "timestamp": 2}))
    a1, _ = run(opened, CreateAnnotation.from_body(old, {**ANNOTATION, "timestamp": 1}))
    b, _ = run(opened, CreateAnnotation.from_body(new, ANNOTATION))
    done, _ = run(opened, CreateAnnotation.from_body(new, ANNOTATION))
    run(opened, UpdateAnnotation.from_body(done["id"], {"status": "acknowledged"}))
    assert [a["id"] for a in reads.pending_annotations(opened.reader)] == [b["id"], a1["id"], a2["id"]]
    assert [a["id"] for a in reads.pending_annotations(opened.reader, old)] == [a1["id"], a2["id"]]
    assert reads.pending_annotations(opened.reader, "unknown") == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    comment=st.text(),
    unknown=json_values,
    attributes=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_any_text_and_json_sent_comes_back_equal(opened: Store, comment: str, unknown: Any, attributes: Any) -> None:
    sid = new_session(opened)
    body = {**ANNOTATION, "comment": comment, "someUnmodelledField": unknown, "attributes": attributes}
    created, _ = run(opened, CreateAnnotation.from_body(sid, body))
    stored = reads.get_annotation(opened.reader, created["id"])
    assert stored["comment"] == comment
    assert stored["attributes"] == attributes
    if unknown is not None:
        assert stored["someUnmodelledField"] == unknown


# --- 1. updates and replies are built without reading the row back --------------------------------------------------

json_scalars_with_floats = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values_with_floats = st.recursive(
    json_scalars_with_floats,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
json_objects_with_floats = st.dictionaries(st.text(max_size=6), json_values_with_floats, max_size=3)


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
    | json_objects_with_floats
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
        "placement": _maybe_none(json_objects_with_floats),
        "attributes": _maybe_none(json_objects_with_floats),
        "custom": json_values_with_floats,
        "elementBoundingBoxes": json_values_with_floats,
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
            returned, events = commit_one(opened, AddThreadMessage(aid, message))
            assert [e.type for e in events] == ["annotation.updated", "thread.message"]
            intermediate = current
        else:
            command = UpdateAnnotation.from_body(aid, body)
            if message is not None:
                command = dataclasses.replace(command, message=message)
            returned, events = commit_one(opened, command)
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
    returned, events = commit_one(opened, UpdateAnnotation.from_body(created["id"], {"x": number, "y": number}))
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
    first, failed, last = transactions.commit_batch(
        opened.conn, [good, bad, AddThreadMessage(aid, thread_message("hi"))]
    )
    with pytest.raises(InternalError):
        failed.unwrap()
    assert first.unwrap()[0]["comment"] == "kept"
    returned, _ = last.unwrap()
    assert (returned["comment"], returned["intent"], returned["status"]) == ("kept", "fix", "pending")
    assert returned["resolvedAt"] is None
    assert "custom" not in returned
    assert [m["content"] for m in returned["thread"]] == ["hi"]
    assert_same_everywhere(opened, returned)


# --- 2. thread replies are appended to the stored text --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(arr=st.lists(json_values_with_floats, max_size=5), item=json_values_with_floats)
def test_append_to_array_appends_to_any_compact_json_array(arr: list[Any], item: Any) -> None:
    stored = json.dumps(arr, separators=(",", ":"))
    assert json.loads(changes._append_to_array(stored, json.dumps(item))) == [*arr, item]


whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    arr=st.lists(json_values_with_floats, max_size=5),
    item=json_values_with_floats,
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
@given(item=json_values_with_floats)
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
    returned, events = commit_one(opened, AddThreadMessage(created["id"], thread_message("reply")))
    entry = events[-1].payload
    assert returned["thread"] == [*before, entry]
    assert json.loads(opened.conn.execute("SELECT thread FROM annotations WHERE id = ?", (created["id"],)).get) == [
        *before,
        entry,
    ]
    assert_same_everywhere(opened, returned)
    # And a second reply lands after the first.
    again, events = commit_one(opened, UpdateAnnotation(created["id"], message=thread_message("again", "human")))
    assert again["thread"] == [*before, entry, events[-1].payload]
    assert_same_everywhere(opened, again)


def test_a_reply_to_bracketed_text_that_is_not_json_keeps_what_was_stored(opened: Store) -> None:
    """The stored text is not decoded (that is what makes a reply cheap), so bracketed non-JSON is kept, not dropped."""
    _, created = new_annotation(opened)
    _store_thread(opened, created["id"], "[oops]")
    returned, events = commit_one(opened, AddThreadMessage(created["id"], thread_message("reply")))
    message = json.dumps(events[-1].payload, separators=(",", ":"))
    assert returned["thread"] == f"[oops,{message}]"
    assert reads.get_annotation(Reader(opened.conn, None), created["id"])["thread"] == returned["thread"]
