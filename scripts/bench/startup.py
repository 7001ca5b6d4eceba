"""`startup`: spawning `server` to its `initialize` answer, and to its first `tools/list`, over stdio.

Beside ours, the floor: a bare `mcp` low-level server (`floor_server.py`)
answering `initialize` under `trio.run`, which is as fast as anything on
this SDK can start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import trio

from .mcp_client import mcp_session
from .runner import (
    REQUEST_TIMEOUT,
    Context,
    Measurement,
    Metric,
    Target,
    Workload,
    cpu_seconds,
    free_port,
    median,
    server_env,
)

METRICS = (
    Metric("ms", 0, higher_is_better=False),
    Metric("min ms", 0, higher_is_better=False),
    Metric("CPU ms", 0, higher_is_better=False),
)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
FLOOR = Path(__file__).with_name("floor_server.py")


async def _to_initialize(argv: list[str], home: Path) -> float:
    """ms from spawn to the first line of stdout, the answer to `initialize`."""
    start = time.perf_counter()
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=server_env(home)
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        await process.stdin.send_all(json.dumps(INITIALIZE).encode() + b"\n")
        received = b""
        with trio.fail_after(REQUEST_TIMEOUT):
            while b"\n" not in received:
                chunk = await process.stdout.receive_some(65536)
                if not chunk:
                    raise RuntimeError("the server closed stdout before answering initialize")
                received += chunk
        elapsed = (time.perf_counter() - start) * 1000
        if b'"result"' not in received.split(b"\n", 1)[0]:
            raise RuntimeError(f"initialize failed: {received[:200]!r}")
        return elapsed
    finally:
        process.kill()
        await process.wait()


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    initialize = [
        await _to_initialize(target.command(free_port()), ctx.fresh_dir(f"{target.name}-init"))
        for _ in range(ctx.counts.startups)
    ]
    out["spawn -> initialize answer"] = {"ms": median(initialize), "min ms": min(initialize)}
    if target.name == "ours":
        floor = [
            await _to_initialize([sys.executable, str(FLOOR)], ctx.fresh_dir("floor"))
            for _ in range(ctx.counts.startups)
        ]
        out["floor: bare SDK server -> initialize"] = {"ms": median(floor), "min ms": min(floor)}
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
    out["spawn -> first tools/list"] = {"ms": median(times), "min ms": min(times), "CPU ms": median(cpus)}
    return out


WORKLOAD = Workload(
    name="startup",
    title=(
        "spawn -> initialize answer, and -> first tools/list, over stdio (median of a round's start-ups; "
        "the floor is a bare SDK server); CPU: the server's until then"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ms",
)
