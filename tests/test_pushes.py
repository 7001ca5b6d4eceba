"""The pushes task follows the hub only while a client is connected to this process.

With nobody to notify, following would wake the task for every write and keep
the cross-process tail polling; once a client connects (or is expected, on
stdio before the SDK), the task follows from that moment, and it stops again
after the last client leaves.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from agentation_mcp.agent.peers import Peers
from agentation_mcp.agent.pushes import run_pushes
from agentation_mcp.models import Event
from agentation_mcp.store.hub import Hub


def _session_created(sequence: int) -> Event:
    session_id = f"s{sequence}"
    return Event("session.created", session_id, {"id": session_id}, sequence, "2026-01-01T00:00:00.000Z")


@pytest.mark.anyio
async def test_pushes_follow_the_hub_only_while_a_client_is_connected() -> None:
    hub = Hub(lambda after, upto: [], 0)
    peers = Peers()
    joined: list[int] = []

    async def join() -> None:
        joined.append(len(joined) + 1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_pushes, hub, peers, with_channel=False))
            hub.publish([_session_created(1)])
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().subscribers == 0
            assert joined == []

            forget = peers.expect(join)
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().subscribers == 1
            hub.publish([_session_created(2)])
            await trio.testing.wait_all_tasks_blocked()
            assert joined == [1]  # `list_changed` goes to every client: the expected one was brought in for it

            forget()
            hub.publish([_session_created(3)])
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().subscribers == 0
            assert joined == [1]

            peers.expect(join)
            await trio.testing.wait_all_tasks_blocked()
            hub.publish([_session_created(4)])
            await trio.testing.wait_all_tasks_blocked()
            assert joined == [1, 2]
            nursery.cancel_scope.cancel()
