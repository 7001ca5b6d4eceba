"""`startup`: spawning `server` to the answer to the first `tools/list` (after `initialize`), over stdio."""

from __future__ import annotations

import time

import trio

from .mcp_client import mcp_session
from .runner import REQUEST_TIMEOUT, Context, Measurement, Metric, Target, Workload, cpu_seconds, median

METRICS = (
    Metric("ms", 0, higher_is_better=False),
    Metric("min ms", 0, higher_is_better=False),
    Metric("CPU ms", 0, higher_is_better=False),
)


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    times: list[float] = []
    cpus: list[float] = []
    for _ in range(ctx.counts.startups):
        home = ctx.fresh_dir(f"{target.name}-startup")
        start = time.perf_counter()
        async with mcp_session(ctx, target, home, "startup") as (session, pid, _):
            with trio.fail_after(REQUEST_TIMEOUT):
                await session.list_tools()
            times.append((time.perf_counter() - start) * 1000)
            cpus.append(cpu_seconds(pid) * 1000)
    return {"to first tools/list": {"ms": median(times), "min ms": min(times), "CPU ms": median(cpus)}}


WORKLOAD = Workload(
    name="startup",
    title=(
        "spawn -> initialize -> first tools/list answer over stdio (median of the start-ups of a round); "
        "CPU: the server's until then"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ms",
)
