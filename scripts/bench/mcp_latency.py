"""`mcp-latency`: MCP tool calls over stdio, one at a time and from concurrent callers; then the server's peak RSS.

The store holds one session and its annotations (written through our writer
before our server starts; over HTTP for the npm server). Three tools:
`agentation_get_all_pending` (first, so it sees every annotation pending),
`agentation_reply` and `agentation_acknowledge`. Peak RSS is VmHWM from
/proc/<pid>/status after all the calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import trio
from mcp.client.session import ClientSession

from .mcp_client import mcp_session, populate_ours, populate_over_http
from .runner import (
    REQUEST_TIMEOUT,
    Context,
    Measurement,
    Metric,
    Target,
    Workload,
    cpu_seconds,
    memory_kb,
    per_op_ms,
    percentile,
)

PHASE_TIMEOUT = 90.0

METRICS = (
    Metric("calls/s"),
    Metric("p50 ms", 2, higher_is_better=False),
    Metric("p99 ms", 2, higher_is_better=False),
    Metric("CPU ms/call", 3, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
    Metric("VmHWM MiB", 1, higher_is_better=False),
    Metric("VmRSS MiB", 1, higher_is_better=False),
)

ArgsFor = Callable[[int], dict[str, Any]]


class Phase:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.first_error = ""

    async def call(self, session: ClientSession, tool: str, args: dict[str, Any]) -> None:
        start = time.perf_counter()
        with trio.fail_after(REQUEST_TIMEOUT * 3):
            result = await session.call_tool(tool, args)
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        if result.is_error:
            self.errors += 1
            if not self.first_error:
                self.first_error = " ".join(getattr(block, "text", "?") for block in result.content)[:200]


async def run_phase(session: ClientSession, tool: str, args_for: ArgsFor, callers: int, calls: int) -> Phase:
    phase = Phase()
    next_index = iter(range(calls))

    async def caller() -> None:
        for i in next_index:
            await phase.call(session, tool, args_for(i))

    with trio.fail_after(PHASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
    return phase


def tool_plan(ids: list[str]) -> list[tuple[str, str, ArgsFor]]:
    """(label, tool, arguments of call i): reads first, so every read sees all annotations pending."""

    def no_args(i: int) -> dict[str, Any]:
        return {}

    def reply(i: int) -> dict[str, Any]:
        return {"annotationId": ids[i % len(ids)], "message": f"Working on it ({i})"}

    def acknowledge(i: int) -> dict[str, Any]:
        return {"annotationId": ids[i % len(ids)]}

    return [
        ("get_all_pending", "agentation_get_all_pending", no_args),
        ("reply", "agentation_reply", reply),
        ("acknowledge", "agentation_acknowledge", acknowledge),
    ]


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    counts = ctx.counts
    home = ctx.fresh_dir(f"{target.name}-mcp")
    ids: list[str] = []
    if target.name == "ours":
        ids = await populate_ours(home, counts.mcp_annotations)
    out: dict[str, Measurement] = {}
    async with mcp_session(ctx, target, home, "mcp") as (session, pid, port):
        if target.name != "ours":
            ids = await populate_over_http(port, counts.mcp_annotations)
        plan = tool_plan(ids)
        for _, tool, args_for in plan:  # warm-up, not measured
            await run_phase(session, tool, args_for, 1, counts.mcp_warmup)
        for label, tool, args_for in plan:
            for callers, calls in ((1, counts.mcp_sequential), (counts.mcp_callers, counts.mcp_concurrent)):
                cpu_before = cpu_seconds(pid)
                started = time.perf_counter()
                phase = await run_phase(session, tool, args_for, callers, calls)
                seconds = time.perf_counter() - started
                cpu = cpu_seconds(pid) - cpu_before
                if phase.errors:
                    ctx.note(f"mcp-latency {label}: {target.name}: {phase.errors} error(s), first: {phase.first_error}")
                out[f"{label} {'seq' if callers == 1 else f'x{callers}'}"] = {
                    "calls/s": len(phase.latencies_ms) / seconds,
                    "p50 ms": percentile(phase.latencies_ms, 50),
                    "p99 ms": percentile(phase.latencies_ms, 99),
                    "CPU ms/call": per_op_ms(cpu, len(phase.latencies_ms)),
                    "errors": float(phase.errors),
                }
        hwm, rss = memory_kb(pid)
    out["server memory after the calls"] = {
        "VmHWM MiB": hwm / 1024 if hwm >= 0 else math.nan,
        "VmRSS MiB": rss / 1024 if rss >= 0 else math.nan,
    }
    return out


WORKLOAD = Workload(
    name="mcp-latency",
    title=(
        "MCP tool calls over stdio (mcp SDK client): one at a time (seq) and from concurrent callers (xN); "
        "then the server's memory (VmHWM = peak RSS)"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="calls/s",
)
