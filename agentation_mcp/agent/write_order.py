"""One MCP client's writes reach the writer in the order the client sent them.

A client may send several tool calls without waiting for their answers;
Claude Code does for parallel tool calls, such as a reply and then a resolve
on one annotation. Each call runs in a task of its own, and trio starts a
batch of new tasks in no fixed order, so the resolve could commit first and
the thread read "Resolved: ..." above the reply. The npm server keeps the
order they were sent in.

A `Turnstile` hands each call that may write a `Turn`, in arrival order.
The call queues its command only once every earlier turn has passed, and
its own turn passes as soon as the command is queued, not when it is
committed, so the writer still commits a burst as one batch. A turn also
passes when its call ends without writing (an error, a cancellation). The
turn is handed to the tool's handler with its arguments (`tools.Handler`).
"""

from __future__ import annotations

import trio


class Turnstile:
    """Turns in the order they were issued."""

    def __init__(self) -> None:
        self._issued = 0
        self._next = 0  # the lowest turn not yet passed
        self._passed: set[int] = set()
        self._waiting: dict[int, trio.Event] = {}

    def issue(self) -> Turn:
        turn = Turn(self, self._issued)
        self._issued += 1
        return turn

    async def _wait_for(self, number: int) -> None:
        if number <= self._next:
            return
        event = self._waiting.setdefault(number, trio.Event())
        try:
            await event.wait()
        finally:
            self._waiting.pop(number, None)

    def _pass(self, number: int) -> None:
        self._passed.add(number)
        while self._next in self._passed:
            self._passed.discard(self._next)
            self._next += 1
        if (event := self._waiting.pop(self._next, None)) is not None:
            event.set()


class Turn:
    """One call's place in line."""

    def __init__(self, turnstile: Turnstile, number: int) -> None:
        self._turnstile = turnstile
        self.number = number
        self.passed = False

    async def wait(self) -> None:
        """Return once every earlier turn has passed."""
        await self._turnstile._wait_for(self.number)

    def pass_on(self) -> None:
        """Let the next turn go; calling it again does nothing."""
        if not self.passed:
            self.passed = True
            self._turnstile._pass(self.number)
