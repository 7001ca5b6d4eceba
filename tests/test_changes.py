"""Commands carried out on a real store (`changes`) and read back (`reads`).

Shapes, validation, events and sequences, retention.
"""

from __future__ import annotations

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
from agentation_mcp.errors import AnnotationNotFound, InvalidInput, SessionNotFound
from agentation_mcp.models import Event
from agentation_mcp.store import reads, transactions

from .conftest import ANNOTATION, Store, commit


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
