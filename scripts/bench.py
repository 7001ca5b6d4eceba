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
5. The toolbar's HTTP API (127.0.0.1, HTTP/1.1 keep-alive, `httpx2.AsyncClient`
   under trio with a connection pool as large as the number of clients):
   requests/s and p50/p99 latency of `GET /pending` (20 annotations pending),
   `POST /sessions/:id/annotations` and `PATCH /annotations/:id` at 1, 8 and
   64 concurrent clients, a fixed number of requests per level. Also the
   server's CPU time per request.
6. SSE delivery latency: 1, 10 and 100 listeners stream
   `GET /sessions/:id/events`; PATCHes of one annotation of that session are
   sent one at a time, each only once every listener has received the frame of
   the previous one. For each (event, listener) pair: the time from the PATCH
   response (and from the PATCH request's start) to the moment the listener's
   task parsed the frame, matched by its `id:` line. The listeners run in this
   process, so their receipt times include trio's scheduling of up to 100
   reading tasks; a negative time means the frame was parsed before the PATCH
   response was.
7. `agentation_watch_annotations` (sessionId of a fresh session,
   batchWindowSeconds 1, timeoutSeconds 30) called over stdio on the same
   process that serves HTTP; ~0.3 s later an annotation is POSTed over HTTP.
   Reports the time from the POST's response to the watch result, with nothing
   subtracted: it includes the 1 s batch window, which is printed next to it.

When `node` is on PATH and the npm reference is installed (default
/work/ref/node_modules/agentation-mcp/dist/cli.js, or env AGENTATION_REF_CLI),
measurements 1 and 3-7 are also taken against the reference, started as
`node <cli.js> server --port <free port>` (our server gets `--port` too for
5-7) with its data created over its HTTP API. Runs alternate ours/reference
(A/B/A/B) and ours/ref ratios of the medians are printed. The reference does
not exit when its stdin closes (its HTTP server keeps it alive), so it is sent
SIGTERM by pid after each run instead of waiting out the SDK's grace period.

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
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import httpx2
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
SSE_CONNECT_TIMEOUT = 30.0  # for all listeners of a level to get `: connected`
SSE_EVENT_TIMEOUT = 10.0  # for every listener to get one event's frame
WATCH_TIMEOUT = 40.0  # for one watch call (its own timeoutSeconds is 30)


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
    rounds: int  # A/B rounds of latency, HTTP, SSE and watch runs
    http_requests: tuple[int, ...]  # requests per HTTP level (HTTP_LEVELS), per route
    http_warmup: int  # unmeasured sequential requests per route before its levels
    sse_events: int  # measured events per SSE level
    sse_warmup: int  # unmeasured events per SSE level
    watch_runs: int  # measured watch calls per run (after one unmeasured)


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
    http_requests=(400, 800, 1280),
    http_warmup=20,
    sse_events=50,
    sse_warmup=3,
    watch_runs=5,
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
    http_requests=(100, 200, 320),
    http_warmup=5,
    sse_events=15,
    sse_warmup=2,
    watch_runs=2,
)
WRITER_LEVELS = (1, 8, 64)
HTTP_LEVELS = (1, 8, 64)
SSE_LEVELS = (1, 10, 100)
SSE_GAP = 0.005  # seconds between one event's last receipt and the next PATCH
WATCH_BATCH_WINDOW = 1  # batchWindowSeconds of the watch calls (the minimum)
WATCH_SETTLE = 0.3  # seconds between calling the watch and POSTing the annotation


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
    """ours / ref; NaN when either is unknown or the ratio would mean nothing (ref <= 0 or ours < 0)."""
    if math.isnan(ours) or math.isnan(ref) or ref <= 0 or ours < 0:
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


# --- 5-7. the HTTP API: shared pieces -----------------------------------------------


def http_client(base: str, connections: int, *, read_timeout: float | None = HTTP_TIMEOUT) -> httpx2.AsyncClient:
    """A client for `base` with a pool of `connections` kept-alive connections; no proxies from the environment."""
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx2.Timeout(HTTP_TIMEOUT, read=read_timeout)
    return httpx2.AsyncClient(base_url=base, limits=limits, timeout=timeout, trust_env=False)


async def wait_http_ready(client: httpx2.AsyncClient) -> None:
    with trio.fail_after(SPAWN_TIMEOUT):
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            await trio.sleep(0.02)


def expect_json(response: httpx2.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}")
    return response.json()


async def create_over_http(client: httpx2.AsyncClient, count: int) -> tuple[str, list[str]]:
    """A new session and `count` annotations in it, over the HTTP API; their ids."""
    with trio.fail_after(PHASE_TIMEOUT):
        session = expect_json(await client.post("/sessions", json={"url": SESSION_URL}), 201)
        ids: list[str] = []
        for i in range(count):
            response = await client.post(f"/sessions/{session['id']}/annotations", json=annotation_body(i))
            ids.append(expect_json(response, 201)["id"])
    return session["id"], ids


@asynccontextmanager
async def http_server(
    target: Target, workdir: Path, workload: str, run_no: int
) -> AsyncIterator[tuple[ClientSession, int | None, str, Path]]:
    """A server on a free port serving MCP on stdio and the HTTP API, once /health answers.

    Yields the MCP session, the server's pid (when found), the HTTP base URL and the log path.
    """
    home = workdir / f"{target.name}-{workload}-{run_no}"
    home.mkdir(parents=True)
    port = free_port()
    log_path = workdir / "logs" / f"{target.name}-{workload}-{run_no}.log"
    base = f"http://127.0.0.1:{port}"
    async with mcp_session(replace(target, takes_port=True), home, port, log_path) as (session, pid):
        async with http_client(base, 1) as client:
            await wait_http_ready(client)
        yield session, pid, base, log_path


def note_error(phase: Phase, detail: str) -> None:
    phase.errors += 1
    if not phase.first_error:
        phase.first_error = detail[:200]


# --- 5. HTTP requests/s and latency -------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    status: int  # the status that counts as success


RequestFor = Callable[[int], HttpRequest]


@dataclass(slots=True)
class HttpRun:
    target: str
    phases: dict[tuple[str, int], Phase]  # (route, clients) -> phase
    log_path: Path


def http_plan(session_id: str, ids: list[str]) -> list[tuple[str, RequestFor]]:
    """(route, request i): `GET /pending` first, so it always sees the same pending annotations."""

    def pending(i: int) -> HttpRequest:
        return HttpRequest("GET", "/pending", None, 200)

    def create(i: int) -> HttpRequest:
        return HttpRequest("POST", f"/sessions/{session_id}/annotations", annotation_body(i), 201)

    def patch(i: int) -> HttpRequest:
        return HttpRequest("PATCH", f"/annotations/{ids[i % len(ids)]}", {"comment": f"Edited ({i})"}, 200)

    return [("GET /pending", pending), ("POST annotation", create), ("PATCH annotation", patch)]


async def timed_request(client: httpx2.AsyncClient, request: HttpRequest, phase: Phase) -> None:
    start = time.perf_counter()
    try:
        with trio.fail_after(HTTP_TIMEOUT * 2):
            response = await client.request(request.method, request.path, json=request.body)
    except (httpx2.HTTPError, trio.TooSlowError) as exc:
        note_error(phase, f"{request.method} {request.path}: {exc!r}")
        return
    if response.status_code != request.status:
        note_error(phase, f"{request.method} {request.path}: HTTP {response.status_code} {response.text}")
        return
    phase.latencies_ms.append((time.perf_counter() - start) * 1000)


async def open_connections(client: httpx2.AsyncClient, count: int) -> None:
    """Fill the pool: `count` concurrent `GET /health` requests open `count` connections."""
    with trio.fail_after(PHASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(client.get, "/health")


async def run_http_level(
    client: httpx2.AsyncClient, request_for: RequestFor, clients: int, first: int, total: int
) -> Phase:
    phase = Phase()
    next_index = iter(range(first, first + total))

    async def worker() -> None:
        for i in next_index:
            await timed_request(client, request_for(i), phase)

    start = time.perf_counter()
    with trio.fail_after(PHASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(worker)
    phase.wall_s = time.perf_counter() - start
    return phase


async def http_run(target: Target, counts: Counts, workdir: Path, run_no: int) -> HttpRun:
    phases: dict[tuple[str, int], Phase] = {}
    async with http_server(target, workdir, "http", run_no) as (_, pid, base, log_path):
        async with http_client(base, 1) as client:
            session_id, ids = await create_over_http(client, counts.annotations)
        index = counts.annotations  # request numbers go on across levels: distinct bodies and comments
        for route, request_for in http_plan(session_id, ids):
            async with http_client(base, 1) as client:  # warm-up, not measured
                await run_http_level(client, request_for, 1, index, counts.http_warmup)
            index += counts.http_warmup
            for clients, total in zip(HTTP_LEVELS, counts.http_requests, strict=True):
                async with http_client(base, clients) as client:
                    await open_connections(client, clients)
                    server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
                    phase = await run_http_level(client, request_for, clients, index, total)
                    phase.server_cpu_s = cpu_seconds(pid) - server_cpu
                    phase.client_cpu_s = time.process_time() - client_cpu
                index += total
                phases[route, clients] = phase
    return HttpRun(target.name, phases, log_path)


# --- 6. SSE delivery latency ----------------------------------------------------------


@dataclass(slots=True)
class SseRun:
    target: str
    listeners: int
    events: int = 0  # measured events delivered to every listener
    from_response_ms: list[float] = field(default_factory=list)  # per (event, listener)
    from_start_ms: list[float] = field(default_factory=list)  # per (event, listener)
    patch_ms: list[float] = field(default_factory=list)  # per event
    errors: int = 0
    first_error: str = ""


class SseProgress:
    """How many listeners are connected, and how many have received the awaited number of frames."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.connected = 0
        self.all_connected = trio.Event()
        self.needed = 0
        self.reached = 0
        self.all_reached = trio.Event()

    def on_connected(self) -> None:
        self.connected += 1
        if self.connected == self.listeners:
            self.all_connected.set()

    def expect(self, frames: int, received: Sequence[list[tuple[int, float]]]) -> None:
        """Wait (via `all_reached`) for every listener to have `frames` frames with an id."""
        self.needed = frames
        self.reached = sum(1 for got in received if len(got) >= frames)
        self.all_reached = trio.Event()
        if self.reached == self.listeners:
            self.all_reached.set()

    def on_frame(self, frames: int) -> None:
        if frames == self.needed:
            self.reached += 1
            if self.reached == self.listeners:
                self.all_reached.set()


async def sse_listen(
    client: httpx2.AsyncClient, path: str, received: list[tuple[int, float]], progress: SseProgress
) -> None:
    """Stream `path`; append (id, perf_counter when parsed) for every frame with an `id:` line."""
    async with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code}")
        buffer = b""
        connected = False
        async for chunk in response.aiter_raw():
            now = time.perf_counter()
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if not connected and frame.startswith(b": connected"):
                    connected = True
                    progress.on_connected()
                    continue
                for line in frame.split(b"\n"):
                    if line.startswith(b"id:"):
                        received.append((int(line[3:].strip()), now))
                        progress.on_frame(len(received))
                        break


async def sse_level(base: str, session_id: str, annotation_id: str, listeners: int, counts: Counts) -> SseRun:
    run = SseRun("", listeners)
    progress = SseProgress(listeners)
    received: list[list[tuple[int, float]]] = [[] for _ in range(listeners)]
    patches: list[tuple[float, float]] = []  # (PATCH start, PATCH response) per event
    total = counts.sse_warmup + counts.sse_events
    path = f"/sessions/{session_id}/events"
    async with (
        http_client(base, listeners, read_timeout=None) as streams,
        http_client(base, 1) as patcher,
        trio.open_nursery() as nursery,
    ):
        for got in received:
            nursery.start_soon(sse_listen, streams, path, got, progress)
        with trio.fail_after(SSE_CONNECT_TIMEOUT):
            await progress.all_connected.wait()
        for k in range(total):
            progress.expect(k + 1, received)
            start = time.perf_counter()
            with trio.fail_after(HTTP_TIMEOUT * 2):
                response = await patcher.patch(f"/annotations/{annotation_id}", json={"comment": f"SSE edit {k}"})
            done = time.perf_counter()
            if response.status_code != 200:
                raise RuntimeError(f"PATCH /annotations/{annotation_id}: HTTP {response.status_code}")
            patches.append((start, done))
            try:
                with trio.fail_after(SSE_EVENT_TIMEOUT):
                    await progress.all_reached.wait()
            except trio.TooSlowError:
                run.errors += 1
                run.first_error = (
                    f"event {k}: only {progress.reached} of {listeners} listeners got it within {SSE_EVENT_TIMEOUT} s"
                )
                break
            await trio.sleep(SSE_GAP)
        nursery.cancel_scope.cancel()
    by_listener = [dict(got) for got in received]
    for k in range(counts.sse_warmup, len(patches)):
        if len(received[0]) <= k:
            break
        event_id = received[0][k][0]
        start, done = patches[k]
        run.patch_ms.append((done - start) * 1000)
        run.events += 1
        for times in by_listener:
            at = times.get(event_id)
            if at is None:
                run.errors += 1
                run.first_error = run.first_error or f"a listener never got frame id {event_id}"
                continue
            run.from_response_ms.append((at - done) * 1000)
            run.from_start_ms.append((at - start) * 1000)
    return run


async def sse_runs(target: Target, counts: Counts, workdir: Path, run_no: int) -> tuple[list[SseRun], list[str]]:
    """One server; the SSE levels in turn on one session and annotation. Also notes on failed levels."""
    runs: list[SseRun] = []
    notes: list[str] = []
    async with http_server(target, workdir, "sse", run_no) as (_, _, base, log_path):
        async with http_client(base, 1) as client:
            session_id, ids = await create_over_http(client, 1)
        for listeners in SSE_LEVELS:
            try:
                run = await sse_level(base, session_id, ids[0], listeners, counts)
            except Exception as exc:
                notes.append(f"SSE {listeners} listener(s), {target.name} round {run_no}, failed: {exc!r}")
                notes.append(f"{target.name} server log tail:\n{log_tail(log_path)}")
                continue
            run.target = target.name
            runs.append(run)
    return runs, notes


# --- 7. annotation created -> watch returns -------------------------------------------


@dataclass(slots=True)
class WatchRun:
    target: str
    latencies_ms: list[float] = field(default_factory=list)  # POST response -> watch result
    post_ms: list[float] = field(default_factory=list)  # the POST itself
    errors: int = 0
    first_error: str = ""


async def watch_once(session: ClientSession, client: httpx2.AsyncClient, i: int) -> tuple[float, float, str]:
    """(POST response -> watch result in ms, POST in ms, "" or what went wrong) for one fresh session."""
    with trio.fail_after(HTTP_TIMEOUT * 2):
        session_id = expect_json(await client.post("/sessions", json={"url": SESSION_URL}), 201)["id"]
    arguments = {"sessionId": session_id, "batchWindowSeconds": WATCH_BATCH_WINDOW, "timeoutSeconds": 30}
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
            await trio.sleep(WATCH_SETTLE)
            start = time.perf_counter()
            response = await client.post(f"/sessions/{session_id}/annotations", json=annotation_body(i))
            done = time.perf_counter()
            expect_json(response, 201)
    return (returned - done) * 1000, (done - start) * 1000, problem


async def watch_run(target: Target, counts: Counts, workdir: Path, run_no: int) -> WatchRun:
    run = WatchRun(target.name)
    async with http_server(target, workdir, "watch", run_no) as (session, _, base, _), http_client(base, 1) as client:
        for i in range(counts.watch_runs + 1):  # the first is a warm-up, not measured
            latency, post, problem = await watch_once(session, client, i)
            if problem:
                run.errors += 1
                run.first_error = run.first_error or problem
            elif i > 0:
                run.latencies_ms.append(latency)
                run.post_ms.append(post)
    return run


# --- the whole run and its report ------------------------------------------------


@dataclass(slots=True)
class Results:
    writer: list[WriterRun] = field(default_factory=list)
    startup: dict[str, list[float]] = field(default_factory=dict)
    latency: list[LatencyRun] = field(default_factory=list)
    http: list[HttpRun] = field(default_factory=list)
    sse: list[SseRun] = field(default_factory=list)
    watch: list[WatchRun] = field(default_factory=list)
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

    await bench_http(results, counts, workdir, targets)
    return results


async def bench_http(results: Results, counts: Counts, workdir: Path, targets: list[Target]) -> None:
    """Workloads 5-7, each alternating the targets round by round, a fresh server per run."""
    say("\n[5] HTTP API requests/s and latency (alternating A/B)")
    for run_no in range(counts.rounds):
        for target in targets:
            started = time.perf_counter()
            try:
                run = await http_run(target, counts, workdir, run_no)
            except Exception as exc:
                results.notes.append(f"HTTP run {run_no} of {target.name} failed: {exc!r}")
                say(f"    {target.name} round {run_no}: FAILED ({exc!r})")
                continue
            results.http.append(run)
            rates: dict[str, list[str]] = {}
            for (route, _), phase in run.phases.items():
                rates.setdefault(route, []).append(fmt(len(phase.latencies_ms) / phase.wall_s, 0))
                if phase.errors:
                    results.notes.append(
                        f"HTTP {target.name} round {run_no} {route}: {phase.errors} errors, first: {phase.first_error}"
                    )
            levels = "/".join(str(level) for level in HTTP_LEVELS)
            say(
                f"    {target.name} round {run_no}: {time.perf_counter() - started:.1f} s; req/s at {levels} clients: "
                + "; ".join(f"{route} {'/'.join(values)}" for route, values in rates.items())
            )

    say("\n[6] SSE delivery latency (alternating A/B)")
    for run_no in range(counts.rounds):
        for target in targets:
            started = time.perf_counter()
            try:
                runs, notes = await sse_runs(target, counts, workdir, run_no)
            except Exception as exc:
                results.notes.append(f"SSE run {run_no} of {target.name} failed: {exc!r}")
                say(f"    {target.name} round {run_no}: FAILED ({exc!r})")
                continue
            results.sse += runs
            results.notes += notes
            for level in runs:
                if level.errors:
                    results.notes.append(
                        f"SSE {target.name} round {run_no}, {level.listeners} listener(s): {level.errors} errors, "
                        f"first: {level.first_error}"
                    )
            say(
                f"    {target.name} round {run_no}: {time.perf_counter() - started:.1f} s; p50 ms from PATCH response: "
                + ", ".join(f"{r.listeners} listener(s) {fmt(percentile(r.from_response_ms, 50))}" for r in runs)
            )

    say(
        "\n[7] annotation POST -> agentation_watch_annotations result "
        f"(alternating A/B, batch window {WATCH_BATCH_WINDOW} s)"
    )
    for run_no in range(counts.rounds):
        for target in targets:
            started = time.perf_counter()
            try:
                watch = await watch_run(target, counts, workdir, run_no)
            except Exception as exc:
                results.notes.append(f"watch run {run_no} of {target.name} failed: {exc!r}")
                say(f"    {target.name} round {run_no}: FAILED ({exc!r})")
                continue
            results.watch.append(watch)
            if watch.errors:
                results.notes.append(
                    f"watch {target.name} round {run_no}: {watch.errors} errors, first: {watch.first_error}"
                )
            say(
                f"    {target.name} round {run_no}: {time.perf_counter() - started:.1f} s; median "
                f"{fmt(median(watch.latencies_ms), 0)} ms over {len(watch.latencies_ms)} call(s), errors {watch.errors}"
            )


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

    report_http(results, counts, has_ref)

    if results.notes:
        say("\nNotes:")
        for note in results.notes:
            say(f"  - {note}")


def pooled_http(results: Results, target: str, key: tuple[str, int]) -> tuple[Phase, float]:
    """The key's phases of every run of `target`, pooled, and the median over runs of their requests/s."""
    out = Phase()
    rates: list[float] = []
    for run in results.http:
        if run.target == target and key in run.phases:
            phase = run.phases[key]
            out.latencies_ms += phase.latencies_ms
            out.wall_s += phase.wall_s
            out.errors += phase.errors
            out.server_cpu_s = _nan_sum(out.server_cpu_s, phase.server_cpu_s)
            if phase.wall_s > 0:
                rates.append(len(phase.latencies_ms) / phase.wall_s)
    return out, median(rates)


def pooled_sse(results: Results, target: str, listeners: int) -> SseRun:
    out = SseRun(target, listeners)
    for run in results.sse:
        if run.target == target and run.listeners == listeners:
            out.events += run.events
            out.from_response_ms += run.from_response_ms
            out.from_start_ms += run.from_start_ms
            out.patch_ms += run.patch_ms
            out.errors += run.errors
    return out


def sse_table(
    title: str, levels: list[dict[str, SseRun]], names: Sequence[str], samples: Callable[[SseRun], list[float]]
) -> None:
    say(f"  {title}")
    header = f"  {'listeners':>9}" + "".join(f" {n + ' n':>8} {n + ' p50':>9} {n + ' p99':>9}" for n in names)
    if len(names) > 1:
        header += f" {'p50 o/r':>8} {'p99 o/r':>8}"
    say(header + f" {'errors':>7}")
    for pooled in levels:
        line = f"  {pooled[names[0]].listeners:>9}"
        stats: dict[str, tuple[float, float]] = {}
        for name in names:
            values = samples(pooled[name])
            stats[name] = percentile(values, 50), percentile(values, 99)
            line += f" {len(values):>8} {fmt(stats[name][0]):>9} {fmt(stats[name][1]):>9}"
        if len(names) > 1:
            line += "".join(f" {fmt(ratio(stats['ours'][i], stats['ref'][i])):>8}" for i in range(2))
        say(line + f" {sum(r.errors for r in pooled.values()):>7}")


def report_http(results: Results, counts: Counts, has_ref: bool) -> None:
    names = ("ours", "ref") if has_ref else ("ours",)
    runs = {name: sum(1 for r in results.http if r.target == name) for name in names}
    per_level = ", ".join(f"{n} at {c}" for c, n in zip(HTTP_LEVELS, counts.http_requests, strict=True))
    say(
        f"\n[5] HTTP API, 127.0.0.1, keep-alive, one httpx2 client with a pool of <clients> connections "
        f"({per_level} client(s) per route and run; "
        + " and ".join(f"{runs[n]} run(s) of {n}" for n in names)
        + "). req/s: median over runs; p50/p99 ms: over the pooled requests; srv ms/req: server CPU per request"
    )
    header = f"{'route':<17} {'clients':>7} {'ours r/s':>9} {'ours p50':>9} {'ours p99':>9} {'ours srv':>9}"
    if has_ref:
        header += f" {'ref r/s':>9} {'ref p50':>9} {'ref p99':>9} {'ref srv':>9} {'r/s o/r':>8} {'p50 o/r':>8}"
        header += f" {'p99 o/r':>8}"
    say(header + f" {'errors':>7}")
    keys: list[tuple[str, int]] = []
    for run in results.http:
        keys += [key for key in run.phases if key not in keys]
    for key in keys:
        figures: dict[str, tuple[float, float, float, float]] = {}
        errors = 0
        for name in names:
            phase, rate = pooled_http(results, name, key)
            figures[name] = (
                rate,
                percentile(phase.latencies_ms, 50),
                percentile(phase.latencies_ms, 99),
                per_call_ms(phase.server_cpu_s, phase),
            )
            errors += phase.errors
        line = f"{key[0]:<17} {key[1]:>7}"
        for name in names:
            rate, p50, p99, cpu = figures[name]
            line += f" {fmt(rate, 0):>9} {fmt(p50):>9} {fmt(p99):>9} {fmt(cpu, 3):>9}"
        if has_ref:
            line += "".join(f" {fmt(ratio(figures['ours'][i], figures['ref'][i])):>8}" for i in range(3))
        say(line + f" {errors:>7}")

    say(
        f"\n[6] SSE delivery latency, ms, per (event, listener) pair pooled over runs ({counts.sse_events} measured "
        f"events per level and run, after {counts.sse_warmup} unmeasured). The listeners share this process, so "
        "receipt times include its scheduling of up to 100 reading tasks; a negative time means the frame was "
        "parsed before the PATCH response (no ratio is printed for those)"
    )
    pooled_levels = [
        {name: pooled_sse(results, name, listeners) for name in names}
        for listeners in SSE_LEVELS
        if any(r.listeners == listeners for r in results.sse)
    ]
    sse_table("from the PATCH response", pooled_levels, names, lambda r: r.from_response_ms)
    sse_table("from the PATCH request's start", pooled_levels, names, lambda r: r.from_start_ms)
    sse_table("the PATCH request itself (per event, not per listener)", pooled_levels, names, lambda r: r.patch_ms)

    window_ms = WATCH_BATCH_WINDOW * 1000
    say(
        "\n[7] Annotation POST response -> agentation_watch_annotations result over stdio, ms (nothing subtracted: "
        f"includes the batch window; {counts.watch_runs} measured call(s) per run, pooled over runs)"
    )
    say(f"{'server':<8} {'window':>7} {'median':>8} {'min':>8} {'max':>8} {'calls':>6} {'POST p50':>9} {'errors':>7}")
    medians: dict[str, float] = {}
    for name in names:
        latencies = [ms for w in results.watch if w.target == name for ms in w.latencies_ms]
        posts = [ms for w in results.watch if w.target == name for ms in w.post_ms]
        errors = sum(w.errors for w in results.watch if w.target == name)
        medians[name] = median(latencies)
        say(
            f"{name:<8} {window_ms:>7} {fmt(medians[name], 1):>8} {fmt(min(latencies, default=math.nan), 1):>8} "
            f"{fmt(max(latencies, default=math.nan), 1):>8} {len(latencies):>6} {fmt(percentile(posts, 50)):>9} "
            f"{errors:>7}"
        )
    if has_ref:
        say(f"ours/ref ratio of medians: {fmt(ratio(medians['ours'], medians['ref']), 3)}")


def describe_environment(ref: Target | None, ref_note: str) -> None:
    say("agentation-mcp benchmark")
    say(f"  python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPU(s)")
    versions = []
    for dist in ("agentation-mcp", "mcp", "trio", "apsw", "httpx2", "hypercorn"):
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
