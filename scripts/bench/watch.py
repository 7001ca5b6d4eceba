"""`watch`: an annotation POSTed over HTTP, to the result of `agentation_watch_annotations` over stdio.

The watch call (a fresh session, batchWindowSeconds 1, timeoutSeconds 30) runs
on the process that serves HTTP; about 0.3 s later an annotation is POSTed.
The time from the POST's response to the watch result includes the 1 s batch
window: nothing is subtracted.
"""

from __future__ import annotations

import json
import math
import time

import trio
from mcp.client.session import ClientSession

from .api import annotation_body, create_session
from .loadgen import Connection, request_bytes
from .mcp_client import mcp_session
from .runner import Context, Measurement, Metric, Target, Workload, cpu_seconds, median, wait_healthy

BATCH_WINDOW = 1  # batchWindowSeconds (the minimum)
SETTLE = 0.3  # between calling the watch and POSTing the annotation
WATCH_TIMEOUT = 40.0  # one watch call (its own timeoutSeconds is 30)

METRICS = (
    Metric("ms", 1, higher_is_better=False),
    Metric("POST ms", 2, higher_is_better=False),
    Metric("CPU ms/op", 2, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


async def watch_once(session: ClientSession, conn: Connection, port: int, i: int) -> tuple[float, float, str]:
    """(POST response -> watch result ms, POST ms, "" or what went wrong), on a fresh session."""
    session_id = await create_session(conn, port)
    arguments = {"sessionId": session_id, "batchWindowSeconds": BATCH_WINDOW, "timeoutSeconds": 30}
    returned = math.nan
    problem = ""

    async def watch() -> None:
        nonlocal returned, problem
        result = await session.call_tool("agentation_watch_annotations", arguments)
        returned = time.perf_counter()
        text = " ".join(getattr(block, "text", "") for block in result.content)
        if result.is_error:
            problem = f"watch error result: {text[:200]}"
            return
        try:
            data = json.loads(text)
        except ValueError:
            problem = f"watch result is not JSON: {text[:200]}"
            return
        if data.get("timeout") is not False or data.get("count") != 1:
            problem = f"unexpected watch result: {text[:200]}"

    with trio.fail_after(WATCH_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            raw = request_bytes(port, "POST", f"/sessions/{session_id}/annotations", annotation_body(i))
            await trio.sleep(SETTLE)
            start = time.perf_counter()
            await conn.json(raw, 201)
            done = time.perf_counter()
    return (returned - done) * 1000, (done - start) * 1000, problem


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    latencies: list[float] = []
    posts: list[float] = []
    errors = 0
    home = ctx.fresh_dir(f"{target.name}-watch")
    async with mcp_session(ctx, target, home, "watch") as (session, pid, port):
        await wait_healthy(port)
        conn = await Connection.open(port)
        try:
            cpu = 0.0
            for i in range(ctx.counts.watch_calls + 1):  # the first is a warm-up, not measured
                cpu_before = cpu_seconds(pid)
                latency, post, problem = await watch_once(session, conn, port, i)
                if problem:
                    errors += 1
                    ctx.note(f"watch: {target.name} round {ctx.round_no + 1}: {problem}")
                elif i > 0:
                    latencies.append(latency)
                    posts.append(post)
                    cpu += cpu_seconds(pid) - cpu_before
        finally:
            await conn.aclose()
    return {
        f"window {BATCH_WINDOW} s": {
            "ms": median(latencies),
            "POST ms": median(posts),
            "CPU ms/op": cpu * 1000 / len(latencies) if latencies else math.nan,
            "errors": float(errors),
        }
    }


WORKLOAD = Workload(
    name="watch",
    title=(
        "annotation POST response -> agentation_watch_annotations result over stdio, ms, batch window included "
        "(median of the calls of a round); CPU: the server's per watch (session POST, watch, annotation POST)"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ms",
)
