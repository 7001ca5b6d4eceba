"""Progress while a tool call waits: `notifications/progress` every few seconds, when the request
carries a `progressToken`.

A client shows the message, and one that ends calls idle for too long (Claude Code resets its
timeout on progress) keeps a long watch alive. Progress is the seconds waited so far, of the
longest the call can wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
from mcp.server.context import ServerRequestContext

from ..clients.watch import DEFAULT_BATCH_WINDOW, DEFAULT_TIMEOUT, clamp

INTERVAL = 5.0  # seconds between two progress notifications
WATCH = "agentation_watch_annotations"


def wait_bounds(name: str, arguments: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(longest wait for a first annotation, longest wait in all) of a call that waits, or None."""
    if name != WATCH:
        return None
    args = arguments if isinstance(arguments, Mapping) else {}
    timeout = clamp(_number(args.get("timeoutSeconds")), DEFAULT_TIMEOUT, 1, 300)
    window = clamp(_number(args.get("batchWindowSeconds")), DEFAULT_BATCH_WINDOW, 1, 60)
    return timeout, timeout + window


def _number(value: Any) -> float | None:
    """A number argument, or None for anything else (the tool itself refuses it)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(min(max(value, -1e9), 1e9))


def progress_message(waited: float, timeout: float) -> str:
    return f"waiting for annotations, {int(waited)} s of {int(timeout)} s"


async def _report(ctx: ServerRequestContext[Any], timeout: float, total: float) -> None:
    started = trio.current_time()
    ticks = 0
    while True:
        ticks += 1
        await trio.sleep_until(started + ticks * INTERVAL)  # on the beat, however long each send took
        waited = ticks * INTERVAL
        message = progress_message(waited, timeout) if waited <= timeout else "collecting the batch"
        await ctx.session.report_progress(min(waited, total), total, message)


@asynccontextmanager
async def reporting_progress(
    ctx: ServerRequestContext[Any], name: str, arguments: Mapping[str, Any] | None
) -> AsyncIterator[None]:
    """Report progress while the block runs, if this call waits and its request asked for progress."""
    bounds = wait_bounds(name, arguments)
    meta = (ctx.params or {}).get("_meta")
    if bounds is None or not isinstance(meta, Mapping) or meta.get("progressToken") is None:
        yield
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report, ctx, *bounds)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
