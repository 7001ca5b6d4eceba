"""`write_order.Turnstile`: calls that may write go in the order they arrived, whatever order trio runs them in."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from agentation_mcp.agent.write_order import Turn, Turnstile

pytestmark = pytest.mark.anyio


async def test_turns_started_in_reverse_still_go_in_the_order_they_were_issued() -> None:
    turnstile = Turnstile()
    turns = [turnstile.issue() for _ in range(5)]
    went: list[int] = []

    async def call(turn: Turn) -> None:
        await turn.wait()
        went.append(turn.number)
        turn.pass_on()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for turn in reversed(turns):
                nursery.start_soon(call, turn)
                await trio.testing.wait_all_tasks_blocked()  # each waits before the next even starts
    assert went == [0, 1, 2, 3, 4]


async def test_a_turn_that_ends_without_writing_or_is_cancelled_lets_the_next_one_go() -> None:
    turnstile = Turnstile()
    first, second, third = turnstile.issue(), turnstile.issue(), turnstile.issue()
    went: list[int] = []
    scopes: list[trio.CancelScope] = []

    async def call(turn: Turn) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            try:
                await turn.wait()
                went.append(turn.number)
            finally:
                turn.pass_on()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, third)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, second)
            await trio.testing.wait_all_tasks_blocked()
            scopes[1].cancel()  # the client cancels the second call while it waits
            await trio.testing.wait_all_tasks_blocked()
            assert went == [], "the third still waits for the first"
            first.pass_on()  # the first ended without writing (a refused call, say)
            first.pass_on()  # passing twice changes nothing
    assert went == [2]


async def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    turnstile = Turnstile()
    first, second = turnstile.issue(), turnstile.issue()
    with trio.fail_after(5):
        with trio.move_on_after(0.01):
            await second.wait()
        second.pass_on()
        first.pass_on()
        third = turnstile.issue()
        await third.wait()  # both before it passed: it goes at once
    assert turnstile._waiting == {}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_start_order_and_any_calls_that_do_not_write_keep_the_writes_in_order(data: st.DataObject) -> None:
    count = data.draw(st.integers(min_value=1, max_value=12), label="calls")
    start_order = data.draw(st.permutations(range(count)), label="start order")
    readers = data.draw(st.sets(st.integers(min_value=0, max_value=count - 1)), label="calls that do not write")
    written: list[int] = []

    async def main() -> None:
        turnstile = Turnstile()
        turns = [turnstile.issue() for _ in range(count)]

        async def call(turn: Turn) -> None:
            try:
                if turn.number in readers:
                    return
                await turn.wait()
                written.append(turn.number)
                await trio.lowlevel.checkpoint()  # a write's commit happens after its turn passes
            finally:
                turn.pass_on()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for index in start_order:
                    nursery.start_soon(call, turns[index])

    trio.run(main)
    assert written == sorted(set(range(count)) - readers)
