"""The hub: ordering, repeats, lag and catch-up from the table; sinks get every event once, in order, gaps
filled from the table, nothing after `remove_sink`, and `run_tail` serves a hub whose only listener is a sink."""

from __future__ import annotations

from contextlib import aclosing
from functools import partial
from itertools import pairwise

import pytest
import trio
import trio.lowlevel
import trio.testing

from agentation_mcp.commands import (
    CreateSession,
)
from agentation_mcp.models import (
    Event,
)
from agentation_mcp.store import reads
from agentation_mcp.store.hub import TAIL_FASTEST, TAIL_SLOWEST, Hub

from .conftest import (
    Store,
    commit,
    running_writer,
)

pytestmark = pytest.mark.anyio


def commit_session(st: Store, n: int = 1) -> list[Event]:
    """Write sessions straight to the table, as another process would."""
    events: list[Event] = []
    for i in range(n):
        [(_, committed)] = commit(st.conn, CreateSession(url=f"http://localhost:{4000 + i}/"))
        events += committed
    return events


async def test_publish_fills_gaps_from_the_table_and_drops_repeats(opened: Store) -> None:
    hub = opened.hub()
    with hub.subscribe() as sub:
        events = commit_session(opened, 3)
        hub.publish([events[2]])  # 1 and 2 were committed "elsewhere"
        hub.publish(events)  # repeats
        received = [sub.receive.receive_nowait().sequence for _ in range(3)]
        with pytest.raises(trio.WouldBlock):
            sub.receive.receive_nowait()
    assert received == [1, 2, 3]
    assert hub.statistics().last_published == 3


async def test_a_stuck_listener_is_cut_off_without_slowing_the_writer(opened: Store) -> None:
    hub = Hub(partial(reads.events_after, opened.reader), 0, buffer=4)
    async with running_writer(opened, hub) as writer:
        with hub.subscribe() as stuck, hub.subscribe() as reader_sub, trio.fail_after(10):
            seen: list[int] = []
            for i in range(50):
                await writer.submit(CreateSession(url=f"http://localhost:{i}/"))
                seen.append(reader_sub.receive.receive_nowait().sequence)
            assert stuck.lagged
            assert not reader_sub.lagged
            assert seen == list(range(1, 51))
    assert hub.statistics().lagged == 1


async def test_follow_catches_a_lagging_listener_up_in_order_exactly_once(opened: Store) -> None:
    hub = Hub(partial(reads.events_after, opened.reader), 0, buffer=2)
    commit_session(opened, 3)
    hub.catch_up()
    got: list[int] = []
    async with running_writer(opened, hub) as writer:
        with trio.fail_after(10):
            async with aclosing(hub.follow(1)) as events:
                first = await events.__anext__()
                got.append(first.sequence)
                for i in range(20):  # far more than the buffer while the listener is not reading
                    await writer.submit(CreateSession(url=f"http://localhost:{i}/"))
                async for event in events:
                    got.append(event.sequence)
                    if event.sequence == 23:
                        break
    assert got == list(range(2, 24))
    assert hub.statistics().lagged == 1  # cut off once while not reading; nothing was written after it caught up


async def test_tail_publishes_commits_of_another_connection(opened: Store) -> None:
    hub = opened.hub()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, partial(reads.data_version, opened.reader))
            with hub.subscribe() as sub:
                await trio.testing.wait_all_tasks_blocked()
                commit_session(opened, 2)
                assert (await sub.receive.receive()).sequence == 1
                assert (await sub.receive.receive()).sequence == 2
            nursery.cancel_scope.cancel()


async def test_tail_keeps_publishing_after_its_only_listener_lagged_and_came_back(opened: Store) -> None:
    hub = Hub(partial(reads.events_after, opened.reader), 0, buffer=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, partial(reads.data_version, opened.reader))
            with hub.subscribe() as first:
                await trio.testing.wait_all_tasks_blocked()  # the tail has read data_version
                commit_session(opened, 3)  # more than the buffer: the listener is cut off
                assert (await first.receive.receive()).sequence == 1
                await trio.testing.wait_all_tasks_blocked()
                assert first.lagged
            with hub.subscribe() as second:
                commit_session(opened, 1)
                assert (await second.receive.receive()).sequence == 4
            nursery.cancel_scope.cancel()


def test_tail_backs_off_while_nothing_changes_and_polls_fast_again_after_a_commit() -> None:
    """On trio's mock clock: an idle listener costs a poll per `TAIL_SLOWEST`, and a commit brings the pace back."""
    polls: list[float] = []
    version = [1]

    def data_version() -> int:
        polls.append(trio.current_time())
        return version[0]

    def no_events(after: int, upto: int | None) -> list[Event]:
        return []

    async def main() -> None:
        hub = Hub(no_events, 0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.run_tail, data_version)
            with hub.subscribe():
                await trio.sleep(2)
                idle = len(polls)
                version[0] += 1  # another process commits
                await trio.sleep(2)
            nursery.cancel_scope.cancel()
        gaps = [round(b - a, 6) for a, b in pairwise(polls)]
        # The first poll sees a version it has not seen: fast once more, then doubling up to the slowest.
        assert gaps[:7] == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
        assert (TAIL_FASTEST, TAIL_SLOWEST) == (0.005, 0.1)
        assert max(gaps) == TAIL_SLOWEST
        assert idle < 30, "an idle listener is polled for at most once per TAIL_SLOWEST, after the back-off"
        seen_at = next(i for i in range(idle, len(polls)) if polls[i] >= 2)
        assert gaps[seen_at] == TAIL_FASTEST, "the poll after a change comes at the fastest pace"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --- 7. hub sinks ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_sink_gets_every_event_once_in_order_with_gaps_filled_until_removed(opened: Store) -> None:
    hub = opened.hub()
    got: list[Event] = []
    hub.add_sink(got.append)
    with hub.subscribe() as sub:
        events = commit_session(opened, 6)
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
    more = commit_session(opened, 2)
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
    hub.publish(commit_session(opened, 3))
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
            commit_session(opened, 3)  # the write connection is "another process" to the reader
            await arrived.wait()
            nursery.cancel_scope.cancel()
    assert got == [1, 2, 3]
    assert hub.statistics().subscribers == 0
