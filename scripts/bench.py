#!/usr/bin/env python3
"""Benchmark agentation-mcp: tool-call latency, writer throughput, start-up time and memory.

What it measures (figures only; nothing is asserted):

1. MCP tool-call latency over stdio against a real `agentation-mcp server`
   process spawned with the `mcp` SDK's stdio client: `agentation_get_all_pending`,
   `agentation_reply` and `agentation_acknowledge`, each called sequentially and
   by 64 concurrent callers, on a store pre-populated (through the package's
   Python API, before the server starts) with one session and 20 annotations.
   Prints p50/p99 in milliseconds, and calls/s for the concurrent runs.
2. Writer throughput in-process: 1, 8 and 64 concurrent submitters sending
   `UpdateAnnotation` and `AddThreadMessage` commands to the writer over a
   SQLite file (WAL, synchronous=FULL, as the package opens it). Prints ops/s
   and the average batch size (commands per transaction).
3. Start-up time: from spawning `agentation-mcp server` to the answer to the
   first `tools/list` (after `initialize`); median of several runs.
4. Peak RSS (VmHWM from /proc/<pid>/status) of the server after the latency runs.
5. When `node` is on PATH and the npm reference is installed (default
   /work/ref/node_modules/agentation-mcp/dist/cli.js, or env AGENTATION_REF_CLI),
   the same measurements 1, 3 and 4 against the reference, started as
   `node <cli.js> server --port <free port>` with its data created over its HTTP
   API. Runs alternate ours/reference (A/B/A/B) and ours/ref ratios of the
   medians are printed. The reference does not exit when its stdin closes (its
   HTTP server keeps it alive), so it is sent SIGTERM by pid after each run
   instead of waiting out the SDK's grace period.

Every server gets a fresh temporary HOME (so a fresh ~/.agentation/store.db);
servers' stderr goes to log files in a temporary folder, removed at the end.

Run it from the repository root with the project's virtualenv:

    python scripts/bench.py [--quick]

`--quick` makes every count smaller (a smoke run of well under a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentation_mcp import schema, store
from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    NewThreadMessage,
    UpdateAnnotation,
)
from agentation_mcp.hub import Hub
from agentation_mcp.store import StoreLocation, StoreReader
from agentation_mcp.writer import Writer, run_writer

DEFAULT_REF_CLI = Path("/work/ref/node_modules/agentation-mcp/dist/cli.js")
SESSION_URL = "http://localhost:3000/"

# Bounds on every wait (seconds).
SPAWN_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
PHASE_TIMEOUT = 90.0
HTTP_TIMEOUT = 5.0
WRITER_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Counts:
    sequential: int  # calls per tool, one at a time
    callers: int  # concurrent callers
    concurrent: int  # calls per tool in all, shared by the callers
    warmup: int  # unmeasured calls per tool before measuring
    annotations: int  # pre-populated annotations
    writer_ops: int  # commands per writer-throughput level
    writer_annotations: int  # annotations the writer's commands are spread over
    startup_runs: int  # start-ups per server
    rounds: int  # A/B rounds of latency runs


FULL = Counts(
    sequential=300,
    callers=64,
    concurrent=640,
    warmup=20,
    annotations=20,
    writer_ops=2048,
    writer_annotations=64,
    startup_runs=7,
    rounds=2,
)
QUICK = Counts(
    sequential=40,
    callers=16,
    concurrent=96,
    warmup=5,
    annotations=10,
    writer_ops=384,
    writer_annotations=16,
    startup_runs=3,
    rounds=1,
)
WRITER_LEVELS = (1, 8, 64)


# --- small helpers --------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(ours: float, ref: float) -> float:
    if math.isnan(ours) or math.isnan(ref) or ref == 0:
        return math.nan
    return ours / ref


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def annotation_body(i: int) -> dict[str, Any]:
    return {
        "comment": f"Annotation {i}: make this heading larger and bolder",
        "element": "h2",
        "elementPath": f"body > main > section:nth-child({i + 1}) > h2",
        "x": 10.5 + i,
        "y": 20 + 3 * i,
        "timestamp": 1_700_000_000_000 + i,
    }


def open_log(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- /proc ---------------------------------------------------------------------


def child_pids(marker: str) -> set[int]:
    """Pids of this process's children whose command line contains `marker`."""
    me = os.getpid()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8", errors="replace")
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) == me and marker in cmdline:
            found.add(int(entry))
    return found


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


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of `pid` in kB; (-1, -1) when it cannot be read."""
    hwm = rss = -1
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


# --- the servers under test ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    command: str
    args_before_port: tuple[str, ...]
    marker: str  # a string in the server process's command line
    takes_port: bool
    sigterm_after: bool  # stop it by pid instead of waiting for it to notice stdin's EOF

    def params(self, home: Path, port: int) -> StdioServerParameters:
        args = list(self.args_before_port)
        if self.takes_port:
            args += ["--port", str(port)]
        env = {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
        return StdioServerParameters(command=self.command, args=args, env=env, cwd=str(home))


def our_target() -> Target:
    script = Path(sys.executable).parent / "agentation-mcp"
    if script.exists():
        return Target("ours", str(script), ("server",), "agentation-mcp", False, False)
    return Target("ours", sys.executable, ("-m", "agentation_mcp", "server"), "agentation_mcp", False, False)


def ref_target() -> tuple[Target | None, str]:
    """The npm reference, or None and the reason it is skipped."""
    node = shutil.which("node")
    cli = Path(os.environ.get("AGENTATION_REF_CLI") or DEFAULT_REF_CLI)
    if node is None:
        return None, "node is not on PATH"
    if not cli.is_file():
        return None, f"the reference CLI {cli} does not exist; set AGENTATION_REF_CLI to its cli.js"
    return Target("ref", node, (str(cli), "server"), str(cli), True, True), str(cli)


@asynccontextmanager
async def mcp_session(
    target: Target, home: Path, port: int, log_path: Path
) -> AsyncIterator[tuple[ClientSession, int | None]]:
    """A live server process with an initialized MCP session, and its pid when found."""
    before = child_pids(target.marker)
    errlog = open_log(log_path)
    pid: int | None = None
    try:
        async with (
            stdio_client(target.params(home, port), errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session,
        ):
            with trio.fail_after(SPAWN_TIMEOUT):
                await session.initialize()
            new = child_pids(target.marker) - before
            pid = max(new) if new else None
            try:
                yield session, pid
            finally:
                if target.sigterm_after and pid is not None:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
    finally:
        errlog.close()


# --- populating the stores -----------------------------------------------------


@asynccontextmanager
async def in_process_writer(path: Path) -> AsyncIterator[tuple[Writer, int]]:
    """The package's own writer over the store file at `path`; also yields PRAGMA synchronous."""
    location = StoreLocation(path)
    conn = store.open_write_connection(location)
    read_conn = None
    try:
        schema.migrate(conn)
        synchronous = conn.execute("PRAGMA synchronous").get
        read_conn = store.open_read_connection(location)
        reader = StoreReader(read_conn)
        hub = Hub(reader.events_after, reader.last_sequence())
        async with trio.open_nursery() as nursery:
            writer: Writer = await nursery.start(run_writer, conn, hub)
            try:
                yield writer, int(synchronous) if isinstance(synchronous, int) else -1
            finally:
                writer.close()
    finally:
        if read_conn is not None:
            read_conn.close()
        conn.close()


async def create_annotations(writer: Writer, count: int) -> list[str]:
    session = await writer.submit(CreateSession(url=SESSION_URL))
    ids: list[str] = []
    for i in range(count):
        annotation = await writer.submit(CreateAnnotation.from_body(session["id"], annotation_body(i)))
        ids.append(annotation["id"])
    return ids


async def populate_ours(home: Path, count: int) -> list[str]:
    with trio.fail_after(WRITER_TIMEOUT):
        async with in_process_writer(home / ".agentation" / "store.db") as (writer, _):
            return await create_annotations(writer, count)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with _NO_PROXY.open(request, timeout=HTTP_TIMEOUT) as response:
        return json.loads(response.read())


def http_ready(base: str) -> bool:
    try:
        http_json("GET", f"{base}/health")
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return False
    return True


def populate_ref_sync(base: str, count: int) -> list[str]:
    session = http_json("POST", f"{base}/sessions", {"url": SESSION_URL})
    return [
        http_json("POST", f"{base}/sessions/{session['id']}/annotations", annotation_body(i))["id"]
        for i in range(count)
    ]


async def populate_ref(port: int, count: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    with trio.fail_after(SPAWN_TIMEOUT):
        for _ in range(int(SPAWN_TIMEOUT / 0.02)):
            if await trio.to_thread.run_sync(http_ready, base):
                break
            await trio.sleep(0.02)
        return await trio.to_thread.run_sync(populate_ref_sync, base, count)


# --- 1. tool-call latency ------------------------------------------------------


@dataclass(slots=True)
class Phase:
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = math.nan  # user + system CPU of the server process during the phase
    client_cpu_s: float = math.nan  # CPU of this (client) process during the phase
    errors: int = 0
    first_error: str = ""


@dataclass(slots=True)
class LatencyRun:
    target: str
    phases: dict[str, Phase]
    hwm_kb: int
    rss_kb: int
    log_path: Path


ArgsFor = Callable[[int], dict[str, Any]]


async def timed_call(session: ClientSession, tool: str, args: dict[str, Any], phase: Phase) -> None:
    start = time.perf_counter()
    with trio.fail_after(CALL_TIMEOUT):
        result = await session.call_tool(tool, args)
    phase.latencies_ms.append((time.perf_counter() - start) * 1000)
    if result.is_error:
        phase.errors += 1
        if not phase.first_error:
            phase.first_error = " ".join(getattr(block, "text", "?") for block in result.content)[:200]


async def run_sequential(session: ClientSession, tool: str, args_for: ArgsFor, calls: int) -> Phase:
    phase = Phase()
    start = time.perf_counter()
    with trio.fail_after(PHASE_TIMEOUT):
        for i in range(calls):
            await timed_call(session, tool, args_for(i), phase)
    phase.wall_s = time.perf_counter() - start
    return phase


async def run_concurrent(session: ClientSession, tool: str, args_for: ArgsFor, callers: int, calls: int) -> Phase:
    phase = Phase()
    next_index = iter(range(calls))

    async def caller() -> None:
        for i in next_index:
            await timed_call(session, tool, args_for(i), phase)

    start = time.perf_counter()
    with trio.fail_after(PHASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
    phase.wall_s = time.perf_counter() - start
    return phase


def tool_plan(ids: list[str]) -> list[tuple[str, str, ArgsFor]]:
    """(label, tool, arguments for call i): reads first, so every read sees all annotations pending."""

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


async def latency_run(target: Target, counts: Counts, workdir: Path, run_no: int) -> LatencyRun:
    home = workdir / f"{target.name}-latency-{run_no}"
    home.mkdir(parents=True)
    port = free_port()
    log_path = workdir / "logs" / f"{target.name}-latency-{run_no}.log"
    ids: list[str] = []
    if target.name == "ours":
        ids = await populate_ours(home, counts.annotations)
    phases: dict[str, Phase] = {}
    hwm = rss = -1
    async with mcp_session(target, home, port, log_path) as (session, pid):
        if target.takes_port:
            ids = await populate_ref(port, counts.annotations)
        plan = tool_plan(ids)
        for _, tool, args_for in plan:  # warm-up, not measured
            await run_sequential(session, tool, args_for, counts.warmup)
        for label, tool, args_for in plan:
            for mode in ("seq", f"x{counts.callers}"):
                server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
                if mode == "seq":
                    phase = await run_sequential(session, tool, args_for, counts.sequential)
                else:
                    phase = await run_concurrent(session, tool, args_for, counts.callers, counts.concurrent)
                phase.server_cpu_s = cpu_seconds(pid) - server_cpu
                phase.client_cpu_s = time.process_time() - client_cpu
                phases[f"{label} {mode}"] = phase
        if pid is not None:
            hwm, rss = memory_kb(pid)
    return LatencyRun(target.name, phases, hwm, rss, log_path)


# --- 2. writer throughput ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterRun:
    submitters: int
    ops: int
    seconds: float
    batches: int
    largest_batch: int
    submit_p50_ms: float
    submit_p99_ms: float
    errors: int
    synchronous: int

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else math.nan

    @property
    def average_batch(self) -> float:
        return self.ops / self.batches if self.batches else math.nan


def writer_command(annotation_id: str, submitter: int, i: int) -> Command:
    if i % 2 == 0:
        return UpdateAnnotation(annotation_id, {"comment": f"Edited by {submitter} ({i})"})
    return AddThreadMessage(annotation_id, NewThreadMessage("agent", f"Reply from {submitter} ({i})"))


async def writer_run(submitters: int, counts: Counts, workdir: Path) -> WriterRun:
    per_submitter = max(1, counts.writer_ops // submitters)
    latencies: list[float] = []
    errors = 0
    path = workdir / f"writer-{submitters}" / "store.db"
    with trio.fail_after(WRITER_TIMEOUT):
        async with in_process_writer(path) as (writer, synchronous):
            ids = await create_annotations(writer, counts.writer_annotations)
            before = writer.statistics()

            async def submitter(j: int) -> None:
                nonlocal errors
                for i in range(per_submitter):
                    command = writer_command(ids[(j * per_submitter + i) % len(ids)], j, i)
                    start = time.perf_counter()
                    try:
                        await writer.submit(command)
                    except Exception:
                        errors += 1
                    latencies.append((time.perf_counter() - start) * 1000)

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for j in range(submitters):
                    nursery.start_soon(submitter, j)
            seconds = time.perf_counter() - start
            after = writer.statistics()
    return WriterRun(
        submitters=submitters,
        ops=after.commands - before.commands,
        seconds=seconds,
        batches=after.batches - before.batches,
        largest_batch=after.largest_batch,
        submit_p50_ms=percentile(latencies, 50),
        submit_p99_ms=percentile(latencies, 99),
        errors=errors,
        synchronous=synchronous,
    )


# --- 3. start-up ----------------------------------------------------------------


async def startup_once(target: Target, workdir: Path, run_no: int) -> float:
    home = workdir / f"{target.name}-startup-{run_no}"
    home.mkdir(parents=True)
    log_path = workdir / "logs" / f"{target.name}-startup-{run_no}.log"
    start = time.perf_counter()
    async with mcp_session(target, home, free_port(), log_path) as (session, _):
        with trio.fail_after(CALL_TIMEOUT):
            await session.list_tools()
        return time.perf_counter() - start


# --- the whole run and its report ------------------------------------------------


@dataclass(slots=True)
class Results:
    writer: list[WriterRun] = field(default_factory=list)
    startup: dict[str, list[float]] = field(default_factory=dict)
    latency: list[LatencyRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


async def bench(counts: Counts, workdir: Path, ref: Target | None) -> Results:
    results = Results()
    ours = our_target()
    targets = [ours] if ref is None else [ours, ref]

    say("\n[2] writer throughput (in-process)")
    for level in WRITER_LEVELS:
        w = await writer_run(level, counts, workdir)
        results.writer.append(w)
        say(f"    {level:>2} submitter(s): {w.ops} ops in {w.seconds:.2f} s, {w.ops_per_s:.0f} ops/s")

    say("\n[3] start-up (alternating " + "/".join(t.name for t in targets) + ")")
    for run_no in range(counts.startup_runs):
        for target in targets:
            try:
                seconds = await startup_once(target, workdir, run_no)
            except Exception as exc:
                results.notes.append(f"start-up run {run_no} of {target.name} failed: {exc!r}")
                say(f"    {target.name} run {run_no}: FAILED ({exc!r})")
                continue
            results.startup.setdefault(target.name, []).append(seconds)
            say(f"    {target.name} run {run_no}: {seconds * 1000:.0f} ms")

    say("\n[1,4] tool-call latency over stdio (alternating A/B)")
    for run_no in range(counts.rounds):
        for target in targets:
            started = time.perf_counter()
            try:
                run = await latency_run(target, counts, workdir, run_no)
            except Exception as exc:
                results.notes.append(f"latency run {run_no} of {target.name} failed: {exc!r}")
                say(f"    {target.name} round {run_no}: FAILED ({exc!r})")
                continue
            results.latency.append(run)
            errors = sum(p.errors for p in run.phases.values())
            say(
                f"    {target.name} round {run_no}: {time.perf_counter() - started:.1f} s, "
                f"VmHWM {run.hwm_kb / 1024:.1f} MiB, tool errors {errors}"
            )
            for label, phase in run.phases.items():
                if phase.errors:
                    results.notes.append(
                        f"{target.name} round {run_no} {label}: {phase.errors} error results, "
                        f"first: {phase.first_error}"
                    )
            if errors:
                results.notes.append(f"{target.name} server log tail:\n{log_tail(run.log_path)}")
    return results


def pooled(results: Results, target: str, label: str) -> Phase:
    out = Phase()
    for run in results.latency:
        if run.target == target and label in run.phases:
            phase = run.phases[label]
            out.latencies_ms += phase.latencies_ms
            out.wall_s += phase.wall_s
            out.errors += phase.errors
            out.server_cpu_s = _nan_sum(out.server_cpu_s, phase.server_cpu_s)
            out.client_cpu_s = _nan_sum(out.client_cpu_s, phase.client_cpu_s)
    return out


def _nan_sum(total: float, value: float) -> float:
    """`total + value`, where a NaN total means "nothing yet"."""
    return value if math.isnan(total) else total + value


def per_call_ms(seconds: float, phase: Phase) -> float:
    return seconds * 1000 / len(phase.latencies_ms) if phase.latencies_ms else math.nan


def report(results: Results, counts: Counts, has_ref: bool) -> None:
    say("\n" + "=" * 100)
    say("RESULTS")
    say("=" * 100)

    sync_names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    synchronous = results.writer[0].synchronous if results.writer else -1
    say(
        f"\n[2] Writer throughput, in-process (SQLite file, WAL, synchronous="
        f"{sync_names.get(synchronous, synchronous)}; UpdateAnnotation / AddThreadMessage alternating)"
    )
    say(
        f"{'submitters':>10} {'ops':>6} {'seconds':>8} {'ops/s':>8} {'avg batch':>10} {'max batch':>10} "
        f"{'submit p50 ms':>14} {'submit p99 ms':>14} {'errors':>7}"
    )
    for w in results.writer:
        say(
            f"{w.submitters:>10} {w.ops:>6} {w.seconds:>8.2f} {w.ops_per_s:>8.0f} {fmt(w.average_batch):>10} "
            f"{w.largest_batch:>10} {fmt(w.submit_p50_ms):>14} {fmt(w.submit_p99_ms):>14} {w.errors:>7}"
        )

    labels: list[str] = []
    for run in results.latency:
        for label in run.phases:
            if label not in labels:
                labels.append(label)
    rounds = {t: sum(1 for r in results.latency if r.target == t) for t in ("ours", "ref")}
    say(
        f"\n[1] MCP tool-call latency over stdio, ms (samples pooled over {rounds['ours']} run(s) of ours"
        + (f" and {rounds['ref']} of ref" if has_ref else "")
        + f"; seq = {counts.sequential} calls one at a time, x{counts.callers} = {counts.concurrent} calls "
        f"from {counts.callers} concurrent callers)"
    )
    header = f"{'tool / mode':<24} {'ours p50':>9} {'ours p99':>9} {'ours c/s':>9}"
    if has_ref:
        header += f" {'ref p50':>9} {'ref p99':>9} {'ref c/s':>9} {'p50 o/r':>8} {'p99 o/r':>8}"
    say(header + f" {'errors':>7}")
    for label in labels:
        ours = pooled(results, "ours", label)
        o50, o99 = percentile(ours.latencies_ms, 50), percentile(ours.latencies_ms, 99)
        o_rate = len(ours.latencies_ms) / ours.wall_s if ours.wall_s else math.nan
        line = f"{label:<24} {fmt(o50):>9} {fmt(o99):>9} {fmt(o_rate, 0):>9}"
        errors = ours.errors
        if has_ref:
            ref = pooled(results, "ref", label)
            r50, r99 = percentile(ref.latencies_ms, 50), percentile(ref.latencies_ms, 99)
            r_rate = len(ref.latencies_ms) / ref.wall_s if ref.wall_s else math.nan
            line += f" {fmt(r50):>9} {fmt(r99):>9} {fmt(r_rate, 0):>9}"
            line += f" {fmt(ratio(o50, r50)):>8} {fmt(ratio(o99, r99)):>8}"
            errors += ref.errors
        say(line + f" {errors:>7}")

    say(
        "\n[1b] CPU time per tool call, ms (server: the server process, all threads, from /proc/<pid>/stat; "
        "client: this process, which runs the MCP client and shares the CPUs)"
    )
    header = f"{'tool / mode':<24} {'ours srv':>9} {'ours cli':>9}"
    if has_ref:
        header += f" {'ref srv':>9} {'ref cli':>9} {'srv o/r':>8}"
    say(header)
    for label in labels:
        ours = pooled(results, "ours", label)
        o_srv, o_cli = per_call_ms(ours.server_cpu_s, ours), per_call_ms(ours.client_cpu_s, ours)
        line = f"{label:<24} {fmt(o_srv, 3):>9} {fmt(o_cli, 3):>9}"
        if has_ref:
            ref = pooled(results, "ref", label)
            r_srv, r_cli = per_call_ms(ref.server_cpu_s, ref), per_call_ms(ref.client_cpu_s, ref)
            line += f" {fmt(r_srv, 3):>9} {fmt(r_cli, 3):>9} {fmt(ratio(o_srv, r_srv)):>8}"
        say(line)

    startup_runs = counts.startup_runs
    say(f"\n[3] Start-up: spawn -> initialize -> first tools/list answer, ms ({startup_runs} runs each)")
    o_start = [s * 1000 for s in results.startup.get("ours", [])]
    r_start = [s * 1000 for s in results.startup.get("ref", [])]
    say(f"{'server':<8} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}")
    for name, values in (("ours", o_start), ("ref", r_start)):
        if name == "ref" and not has_ref:
            continue
        say(
            f"{name:<8} {fmt(median(values), 0):>8} {fmt(min(values, default=math.nan), 0):>8} "
            f"{fmt(max(values, default=math.nan), 0):>8} {len(values):>5}"
        )
    if has_ref:
        say(f"ours/ref ratio of medians: {fmt(ratio(median(o_start), median(r_start)))}")

    say("\n[4] Server memory after the latency runs, MiB (median over runs)")
    say(f"{'server':<8} {'VmHWM':>8} {'VmRSS':>8} {'runs':>5}")
    hwm: dict[str, float] = {}
    for name in ("ours", "ref") if has_ref else ("ours",):
        runs = [r for r in results.latency if r.target == name and r.hwm_kb >= 0]
        hwm[name] = median([r.hwm_kb / 1024 for r in runs])
        rss = median([r.rss_kb / 1024 for r in runs])
        say(f"{name:<8} {fmt(hwm[name], 1):>8} {fmt(rss, 1):>8} {len(runs):>5}")
    if has_ref:
        say(f"ours/ref ratio of peak RSS medians: {fmt(ratio(hwm['ours'], hwm['ref']))}")

    if results.notes:
        say("\nNotes:")
        for note in results.notes:
            say(f"  - {note}")


def describe_environment(ref: Target | None, ref_note: str) -> None:
    say("agentation-mcp benchmark")
    say(f"  python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPU(s)")
    versions = []
    for dist in ("agentation-mcp", "mcp", "trio", "apsw"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} ?")
    say("  " + ", ".join(versions))
    say(f"  ours: {our_target().command} server")
    if ref is None:
        say(f"  reference: skipped ({ref_note})")
        return
    node_version = subprocess.run(
        [ref.command, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    package = Path(ref_note).parent.parent / "package.json"
    try:
        ref_version = json.loads(package.read_text(encoding="utf-8")).get("version", "?")
    except (OSError, ValueError):
        ref_version = "?"
    say(f"  reference: agentation-mcp {ref_version} ({ref_note}) on node {node_version}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts everywhere (a smoke run)")
    options = parser.parse_args(argv)
    counts = QUICK if options.quick else FULL
    ref, ref_note = ref_target()
    describe_environment(ref, ref_note)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentation-bench-") as tmp:
        results = trio.run(bench, counts, Path(tmp), ref)
    report(results, counts, ref is not None)
    say(f"\nTotal benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
