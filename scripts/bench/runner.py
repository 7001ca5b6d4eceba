"""What every workload shares: counts, the servers under test, /proc figures, and the one A/B loop.

A workload is a `Workload`: a name, the metrics it reports, and an async
function that runs it once against one target (a fresh server, or the
in-process writer) and returns one `Measurement` per case. `run_workload`
calls it round after round, alternating the targets (ours, npm, ours, npm...),
and collects the measurements; the report takes medians over the rounds.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import trio

# Bounds on waits that every workload shares (seconds).
SPAWN_TIMEOUT = 30.0  # a server process until /health answers (or MCP initialize)
STOP_TIMEOUT = 5.0  # a server process to exit after SIGTERM, before SIGKILL
REQUEST_TIMEOUT = 10.0  # one HTTP request, or one MCP call


def reference_cli() -> Path:
    """Where `scripts/install-reference` puts the npm reference's cli.js; `AGENTATION_REF_CLI` overrides it."""
    named = os.environ.get("AGENTATION_REF_CLI")
    if named:
        return Path(named)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = os.environ.get("AGENTATION_REF_DIR") or str(Path(cache) / "agentation-mcp" / "reference")
    return Path(folder) / "node_modules" / "agentation-mcp" / "dist" / "cli.js"


# --- counts -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """How much each workload does per run; `FULL` or `QUICK`."""

    level_seconds: float  # time cap of one measured HTTP level (its count may not be reached)
    mcp_sequential: int  # tool calls per tool, one at a time
    mcp_callers: int  # concurrent MCP callers
    mcp_concurrent: int  # tool calls per tool shared by the concurrent callers
    mcp_warmup: int  # unmeasured calls per tool
    mcp_annotations: int  # annotations in the store the tools work on
    writer_ops: int  # commands per writer level
    writer_annotations: int  # annotations the writer's commands are spread over
    startups: int  # start-ups per target and round
    watch_calls: int  # measured watch calls per run (after one unmeasured)
    health_requests: tuple[int, int]  # GET /health at 1 and 8 connections
    write_mix_ops: tuple[int, int, int]  # write-mix at 1, 8 and 64 clients
    conflict_ops: int  # all 96 clients together
    read_mix_reads: int  # reads by the 16 readers together
    sse_seconds: float  # how long the SSE writer sends
    two_process_ops: int  # all 8 clients together
    replay_events: int  # events in the replayed store


FULL = Counts(
    level_seconds=20.0,
    mcp_sequential=200,
    mcp_callers=64,
    mcp_concurrent=640,
    mcp_warmup=20,
    mcp_annotations=20,
    writer_ops=2048,
    writer_annotations=64,
    startups=3,
    watch_calls=3,
    health_requests=(10000, 20000),
    write_mix_ops=(3000, 6000, 9000),
    conflict_ops=2880,
    read_mix_reads=6000,
    sse_seconds=10.0,
    two_process_ops=4000,
    replay_events=100_000,
)
QUICK = Counts(
    level_seconds=8.0,
    mcp_sequential=30,
    mcp_callers=16,
    mcp_concurrent=96,
    mcp_warmup=5,
    mcp_annotations=10,
    writer_ops=384,
    writer_annotations=16,
    startups=2,
    watch_calls=1,
    health_requests=(2000, 4000),
    write_mix_ops=(600, 1200, 1920),
    conflict_ops=1152,
    read_mix_reads=1200,
    sse_seconds=3.0,
    two_process_ops=1200,
    replay_events=10_000,
)


# --- statistics ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """Median of the known values (NaNs left out); NaN when there are none."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def ratio(ours: float, npm: float) -> float:
    """ours / npm; NaN when either is unknown or npm is not positive."""
    if math.isnan(ours) or math.isnan(npm) or npm <= 0 or ours < 0:
        return math.nan
    return ours / npm


def per_op_ms(seconds: float, ops: int) -> float:
    return seconds * 1000 / ops if ops > 0 and not math.isnan(seconds) else math.nan


def say(text: str) -> None:
    print(text, flush=True)


# --- /proc ----------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` (all its threads) so far; NaN when unknown."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[-1].split()  # fields[0] is the state, field 3 of stat(5)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def total_cpu_seconds(pids: Sequence[int | None]) -> float:
    return math.fsum(cpu_seconds(pid) for pid in pids)


def memory_kb(pid: int | None) -> tuple[int, int]:
    """(VmHWM, VmRSS) of `pid` in kB; (-1, -1) when it cannot be read."""
    hwm = rss = -1
    if pid is None:
        return hwm, rss
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return hwm, rss
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "VmHWM":
            hwm = int(value.split()[0])
        elif key == "VmRSS":
            rss = int(value.split()[0])
    return hwm, rss


def child_pids(marker: str) -> set[int]:
    """Pids of this process's children whose command line contains `marker`."""
    me = os.getpid()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8", errors="replace")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(me) and marker in cmdline:
            found.add(int(entry))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the servers under test -------------------------------------------------------------

TargetName = Literal["ours", "npm"]


@dataclass(frozen=True, slots=True)
class Target:
    """How to start one kind of server: `argv + ["--port", P]`, with HOME set to a fresh folder."""

    name: TargetName
    argv: tuple[str, ...]  # up to and including "server"
    marker: str  # a string in the server process's command line, to find its pid under the MCP SDK

    def command(self, port: int) -> list[str]:
        return [*self.argv, "--port", str(port)]


def our_target() -> Target:
    script = Path(sys.executable).parent / "agentation-mcp"
    if script.exists():
        return Target("ours", (str(script), "server"), str(script))
    return Target("ours", (sys.executable, "-m", "agentation_mcp", "server"), "agentation_mcp")


def npm_target() -> tuple[Target | None, str]:
    """The npm reference, or None and why it is left out."""
    node = shutil.which("node")
    cli = reference_cli()
    if node is None:
        return None, "node is not on PATH"
    if not cli.is_file():
        return None, f"{cli} does not exist (run scripts/install-reference, or set AGENTATION_REF_CLI)"
    return Target("npm", (node, str(cli), "server"), str(cli)), str(cli)


def server_env(home: Path) -> dict[str, str]:
    """This process's environment less every AGENTATION_ setting, with HOME set to `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTATION_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


@dataclass(slots=True)
class Server:
    """A server process started by `http_server`."""

    target: Target
    port: int
    home: Path
    log_path: Path
    process: trio.Process

    @property
    def pid(self) -> int:
        return self.process.pid


async def wait_healthy(port: int, process: trio.Process | None = None, timeout: float = SPAWN_TIMEOUT) -> None:
    """Until `GET /health` on `port` answers 200; fails after `timeout`, or when `process` exits."""
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with trio.fail_after(timeout):
        while True:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} before answering /health")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            async with stream:
                await stream.send_all(request)
                head = b""
                while b"\r\n" not in head:
                    data = await stream.receive_some(4096)
                    if not data:
                        break
                    head += data
                if head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    return
            await trio.sleep(0.05)


async def stop_process(process: trio.Process) -> None:
    """Close stdin, SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL."""
    if process.stdin is not None:
        with trio.move_on_after(1):
            await process.stdin.aclose()
    if process.returncode is None:
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    with trio.move_on_after(STOP_TIMEOUT) as waited:
        await process.wait()
    if waited.cancelled_caught:
        process.kill()
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()


@asynccontextmanager
async def http_server(
    ctx: Context, target: Target, label: str, *, home: Path | None = None, port: int | None = None
) -> AsyncIterator[Server]:
    """A server process on a free port with stdin a held-open pipe, once `/health` answers.

    `home` defaults to a fresh folder; pass one to share a store between servers.
    """
    if home is None:
        home = ctx.fresh_dir(f"{target.name}-{label}")
    port = free_port() if port is None else port
    log_path = ctx.log_path(f"{target.name}-{label}-{port}")
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            target.command(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=server_env(home),
            cwd=str(home),
        )
        try:
            try:
                await wait_healthy(port, process)
            except (trio.TooSlowError, RuntimeError, OSError) as exc:
                tail = log_tail(log_path).replace("\n", " | ")
                raise RuntimeError(
                    f"{target.name} on port {port} did not answer /health ({exc!r}); log: {tail}"
                ) from exc
            yield Server(target, port, home, log_path, process)
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(process)


def log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- workloads and their results --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    key: str  # the key in a Measurement, and the column title
    digits: int = 0
    higher_is_better: bool = True
    summed: bool = False  # summed over rounds (errors) instead of the median


Measurement = dict[str, float]  # metric key -> value, for one case, one target, one round


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    title: str  # one line for the report
    metrics: tuple[Metric, ...]
    run: Callable[[Context, Target], Awaitable[dict[str, Measurement]]]  # one run: case -> measurement
    chart_metric: str = ""  # the metric charted as ours/npm (npm/ours for times); "" for none
    chart_extra: tuple[str, ...] = ()  # more metrics charted the same way (latency, CPU)
    ours_only: bool = False  # runs in this process (the writer): no npm run
    budget: float = 240.0  # seconds one run may take


@dataclass(slots=True)
class WorkloadResult:
    workload: Workload
    cases: dict[str, dict[str, list[Measurement]]] = field(default_factory=dict)  # case -> target -> rounds
    seconds: float = 0.0

    def add(self, target: str, measurements: dict[str, Measurement]) -> None:
        for case, measurement in measurements.items():
            self.cases.setdefault(case, {}).setdefault(target, []).append(measurement)


@dataclass(slots=True)
class Context:
    counts: Counts
    rounds: int
    workdir: Path
    targets: list[Target]
    notes: list[str] = field(default_factory=list)
    round_no: int = 0
    _dirs: int = 0
    shared: dict[str, object] = field(default_factory=dict)  # what a workload builds once for all its runs

    def fresh_dir(self, label: str) -> Path:
        self._dirs += 1
        path = self.workdir / "homes" / f"{self._dirs:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def log_path(self, label: str) -> Path:
        folder = self.workdir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{label}.log"

    def note(self, text: str) -> None:
        self.notes.append(text)


def _summary(workload: Workload, measurements: dict[str, Measurement]) -> str:
    """A short progress line: the first metric of each case."""
    first = workload.metrics[0]
    parts = []
    for case, values in measurements.items():
        value = values.get(first.key, math.nan)
        if not math.isnan(value):
            parts.append(f"{case} {value:.{first.digits}f}")
    errors = sum(int(v.get("errors", 0)) for v in measurements.values())
    return f"{first.key}: " + "; ".join(parts) + (f" (errors {errors})" if errors else "")


async def run_workload(ctx: Context, workload: Workload) -> WorkloadResult:
    """The A/B loop: every round runs the workload once per target, ours first, then npm."""
    result = WorkloadResult(workload)
    targets = ctx.targets[:1] if workload.ours_only else ctx.targets
    say(f"\n[{workload.name}] {workload.title}")
    started = time.perf_counter()
    for round_no in range(ctx.rounds):
        ctx.round_no = round_no
        for target in targets:
            t0 = time.perf_counter()
            try:
                with trio.fail_after(workload.budget):
                    measurements = await workload.run(ctx, target)
            except Exception as exc:
                ctx.note(f"{workload.name}: {target.name} round {round_no + 1} failed: {exc!r}")
                say(f"    {target.name:<4} round {round_no + 1}: FAILED ({exc!r})")
                continue
            result.add(target.name, measurements)
            say(
                f"    {target.name:<4} round {round_no + 1}: {time.perf_counter() - t0:5.1f} s; "
                + _summary(workload, measurements)
            )
    result.seconds = time.perf_counter() - started
    return result
