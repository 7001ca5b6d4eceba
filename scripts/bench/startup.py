"""`startup`: a server spawned with a client on its stdio, to the answers a session starts with.

Each spawn is one client speaking raw JSON lines, one message at a time: `initialize`, then
`notifications/initialized` and `tools/list`, then a first `tools/call` (`agentation_list_sessions`),
timed from just before the spawn to each answer's line. The server's CPU (all its threads) is read
when `tools/list` is answered, and its peak RSS (VmHWM) after the tool call, and again once its HTTP
port answers `/health` (everything it loads at start-up loaded). Each figure is the median of the
round's spawns, ours and the npm server's alike, so the report's ours/npm column is each ratio.

Beside ours, the floor of the MCP SDK: a bare low-level server (`floor_server.py`) answering
`initialize` under `trio.run`, which is as fast as a server that imports the SDK first can start.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from .runner import (
    REQUEST_TIMEOUT,
    SPAWN_TIMEOUT,
    Context,
    Measurement,
    Metric,
    Target,
    Workload,
    cpu_seconds,
    free_port,
    median,
    memory_kb,
    server_env,
    wait_healthy,
)

METRICS = (
    Metric("ms", 0, higher_is_better=False),
    Metric("CPU ms", 0, higher_is_better=False),
    Metric("peak RSS MB", 1, higher_is_better=False),
)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
TOOLS_CALL = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {"name": "agentation_list_sessions", "arguments": {}},
}
FLOOR = Path(__file__).with_name("floor_server.py")
SPAWNS_AT_LEAST = 5  # spawns per target and round: a median of fewer is mostly noise on a shared machine

INIT = "spawn -> initialize answered"
LIST = "spawn -> first tools/list answered"
CALL = "spawn -> initialize, tools/list, first tools/call answered"
RSS_CALL = "peak RSS at the first tools/call"
RSS_SERVING = "peak RSS once HTTP serves"
FLOOR_CASE = "floor: bare SDK server -> initialize"


class _Lines:
    """A spawned server's stdout, a JSON line at a time."""

    def __init__(self, process: trio.Process) -> None:
        self._process = process
        self._buffer = b""

    async def send(self, *messages: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        await self._process.stdin.send_all(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def answer(self, request_id: int) -> None:
        """Until the answer to `request_id` has arrived (notifications before it are skipped)."""
        assert self._process.stdout is not None
        with trio.fail_after(REQUEST_TIMEOUT):
            while True:
                while b"\n" not in self._buffer:
                    chunk = await self._process.stdout.receive_some(65536)
                    if not chunk:
                        raise RuntimeError("the server closed stdout before answering")
                    self._buffer += chunk
                line, self._buffer = self._buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == request_id:
                    if "result" not in message:
                        raise RuntimeError(f"request {request_id} failed: {line[:200]!r}")
                    return


async def _spawn_to_first_call(argv: list[str], home: Path, port: int) -> dict[str, float]:
    """One spawn: ms to each answer, CPU ms at tools/list, peak RSS MB at the call and once HTTP serves."""
    start = time.perf_counter()
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=server_env(home)
    )

    def elapsed() -> float:
        return (time.perf_counter() - start) * 1000

    try:
        lines = _Lines(process)
        await lines.send(INITIALIZE)
        await lines.answer(1)
        out = {INIT: elapsed()}
        await lines.send(INITIALIZED, TOOLS_LIST)
        await lines.answer(2)
        out[LIST] = elapsed()
        out["list CPU"] = cpu_seconds(process.pid) * 1000
        await lines.send(TOOLS_CALL)
        await lines.answer(3)
        out[CALL] = elapsed()
        out[RSS_CALL] = memory_kb(process.pid)[0] / 1024
        await wait_healthy(port, process, SPAWN_TIMEOUT)
        out[RSS_SERVING] = memory_kb(process.pid)[0] / 1024
        return out
    finally:
        process.kill()
        await process.wait()


async def _to_initialize(argv: list[str], home: Path) -> float:
    """ms from spawn to the answer to `initialize`."""
    start = time.perf_counter()
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=server_env(home)
    )
    try:
        lines = _Lines(process)
        await lines.send(INITIALIZE)
        await lines.answer(1)
        return (time.perf_counter() - start) * 1000
    finally:
        process.kill()
        await process.wait()


def _median_of(spawns: list[dict[str, float]], key: str) -> float:
    return median([s.get(key, math.nan) for s in spawns])


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    spawns = []
    for _ in range(max(ctx.counts.startups, SPAWNS_AT_LEAST)):
        port = free_port()
        spawns.append(await _spawn_to_first_call(target.command(port), ctx.fresh_dir(f"{target.name}-start"), port))
    out: dict[str, Measurement] = {
        INIT: {"ms": _median_of(spawns, INIT)},
        LIST: {"ms": _median_of(spawns, LIST), "CPU ms": _median_of(spawns, "list CPU")},
        CALL: {"ms": _median_of(spawns, CALL)},
        RSS_CALL: {"peak RSS MB": _median_of(spawns, RSS_CALL)},
        RSS_SERVING: {"peak RSS MB": _median_of(spawns, RSS_SERVING)},
    }
    if target.name == "ours":
        floor = [
            await _to_initialize([sys.executable, str(FLOOR)], ctx.fresh_dir("floor"))
            for _ in range(max(ctx.counts.startups, SPAWNS_AT_LEAST))
        ]
        out[FLOOR_CASE] = {"ms": median(floor)}
    return out


WORKLOAD = Workload(
    name="startup",
    title=(
        "a client on stdio: spawn -> initialize -> tools/list -> first tools/call, one message at a time "
        "(median of the round's spawns); CPU: the server's when tools/list is answered; peak RSS: VmHWM after "
        "the call, and once /health answers; the floor is a bare SDK server"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ms",
)
