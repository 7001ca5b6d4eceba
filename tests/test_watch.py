"""`agentation_watch_annotations` on trio's virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from agentation_mcp.clients.watch import clamp, watch_annotations
from agentation_mcp.commands import CreateAnnotation, CreateSession, DeleteAnnotation, UpdateAnnotation
from agentation_mcp.errors import SessionNotFound

from .conftest import ANNOTATION, Store, running_writer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_times_out_after_exactly_the_timeout(opened: Store) -> None:
    hub = opened.hub()
    start = trio.current_time()
    result = await watch_annotations(hub, opened.reader, timeout=30, batch_window=10)
    assert result == {"timeout": True, "message": "No new annotations within 30 seconds"}
    assert trio.current_time() - start == 30


async def test_pending_annotations_are_returned_at_once(opened: Store) -> None:
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        created = await writer.submit(
            CreateAnnotation.from_body(session["id"], {**ANNOTATION, "sourceFile": "a.tsx:1"})
        )
        start = trio.current_time()
        result = await watch_annotations(hub, opened.reader)
        assert trio.current_time() == start
    assert result["timeout"] is False
    assert result["count"] == 1
    assert result["sessions"] == [session["id"]]
    assert result["annotations"][0]["id"] == created["id"]
    assert result["annotations"][0]["sourceFile"] == "a.tsx:1"


async def test_new_annotations_are_batched_until_the_window_ends(opened: Store) -> None:
    hub = opened.hub()
    result: dict[str, Any] = {}
    async with running_writer(opened, hub) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        other = await writer.submit(CreateSession(url="http://localhost:4000/"))
        start = trio.current_time()

        async def watch() -> None:
            result.update(
                await watch_annotations(hub, opened.reader, session_id=session["id"], timeout=100, batch_window=5)
            )
            result["returned at"] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(20)
            await writer.submit(CreateAnnotation.from_body(other["id"], ANNOTATION))  # another session
            await trio.sleep(1)
            first = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
            await trio.sleep(2)
            gone = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
            second = await writer.submit(CreateAnnotation.from_body(session["id"], {**ANNOTATION, "comment": "2"}))
            await writer.submit(DeleteAnnotation(gone["id"]))
            await trio.sleep(10)
            late = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
    assert [a["id"] for a in result["annotations"]] == [first["id"], second["id"]]
    assert result["count"] == 2
    assert late["id"] not in {a["id"] for a in result["annotations"]}
    # The first annotation of this session came at 21 s; the batch window of 5 s closed at 26 s.
    assert result["returned at"] == 26


async def test_a_batch_emptied_during_its_window_keeps_waiting_until_the_deadline(opened: Store) -> None:
    hub = opened.hub()
    result: dict[str, Any] = {}
    async with running_writer(opened, hub) as writer:
        session = await writer.submit(CreateSession(url="http://localhost:3000/"))
        start = trio.current_time()

        async def watch() -> None:
            result.update(await watch_annotations(hub, opened.reader, timeout=30, batch_window=5))
            result["elapsed"] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(1)
            created = await writer.submit(CreateAnnotation.from_body(session["id"], ANNOTATION))
            await writer.submit(UpdateAnnotation(created["id"], {"status": "acknowledged"}))
    assert result["timeout"] is True
    assert result["elapsed"] == 30


async def test_unknown_session_is_an_error(opened: Store) -> None:
    with pytest.raises(SessionNotFound, match=r"^Session not found: nope$"):
        await watch_annotations(opened.hub(), opened.reader, session_id="nope")


def test_clamping() -> None:
    assert clamp(None, 10, 1, 60) == 10
    assert clamp(0.2, 120, 1, 300) == 1
    assert clamp(1000, 120, 1, 300) == 300
    assert clamp(2.5, 10, 1, 60) == 2.5
