"""A lean HTTP/1.1 load generator on trio: raw sockets, keep-alive, pre-built requests.

The client must not be what is measured on a two-core machine, so there is no
HTTP library on the request path: requests are bytes built before the clock
starts, each connection sends one at a time and `httptools` (C) parses the
responses (Content-Length or chunked: the npm server chunks every body).
Every request's latency is recorded; every wait is bounded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httptools
import trio

from .runner import REQUEST_TIMEOUT, Context, Metric, Target, per_op_ms, percentile, total_cpu_seconds

CONNECT_TIMEOUT = 10.0


def request_bytes(port: int, method: str, path: str, body: Any = None, headers: Sequence[str] = ()) -> bytes:
    """One HTTP/1.1 request, ready to send."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection, one request at a time; also the parser's callback object."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._parser = httptools.HttpResponseParser(self)
        self._body = bytearray()
        self._complete = False

    @classmethod
    async def open(cls, port: int) -> Connection:
        with trio.fail_after(CONNECT_TIMEOUT):
            return cls(await trio.open_tcp_stream("127.0.0.1", port))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self._complete = True

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send `raw` and read the whole response: (status, body). Not bounded: callers bound it."""
        self._complete = False
        self._body = bytearray()
        await self.stream.send_all(raw)
        while not self._complete:
            data = await self.stream.receive_some(65536)
            if not data:
                raise HttpError("the server closed the connection")
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise HttpError(f"bad response: {exc!r}") from None
        return self._parser.get_status_code(), bytes(self._body)

    async def json(self, raw: bytes, status: int) -> Any:
        """Send `raw`, expect `status`, return the body's JSON (for setting a store up, not for measuring)."""
        with trio.fail_after(REQUEST_TIMEOUT):
            got, body = await self.request(raw)
        if got != status:
            raise HttpError(f"{raw.split(b' ', 2)[:2]!r}: HTTP {got} {body[:200]!r}")
        return json.loads(body)

    async def aclose(self) -> None:
        with trio.move_on_after(1):
            await self.stream.aclose()


# --- closed-loop clients -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    raw: bytes
    status: int  # the status that counts as success


@dataclass(slots=True)
class ClientPlan:
    """One client: its own connection to `port`, sending `requests` in order, each after the previous answer.

    A background client (e.g. a writer beside readers) keeps cycling through its
    requests until every foreground client is done.
    """

    port: int
    requests: list[Request]
    group: str = "all"
    background: bool = False


@dataclass(slots=True)
class GroupStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass(slots=True)
class LoadResult:
    groups: dict[str, GroupStats]
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    first_error: str = ""
    capped: bool = False  # the time cap ended it before every request was sent

    def ops(self, groups: Sequence[str] | None = None) -> int:
        chosen = self.groups if groups is None else {g: self.groups[g] for g in groups if g in self.groups}
        return sum(len(s.latencies_ms) for s in chosen.values())

    def measurement(self, groups: Sequence[str] | None = None) -> dict[str, float]:
        """ops/s, p50 ms, p99 ms, errors (of the chosen groups), CPU per op of all groups."""
        chosen = self.groups if groups is None else {g: self.groups[g] for g in groups if g in self.groups}
        latencies = [ms for s in chosen.values() for ms in s.latencies_ms]
        all_ops = self.ops()
        return {
            "ops/s": len(latencies) / self.seconds if self.seconds > 0 else math.nan,
            "p50 ms": percentile(latencies, 50),
            "p99 ms": percentile(latencies, 99),
            "errors": float(sum(s.errors for s in chosen.values())),
            "CPU ms/op": per_op_ms(self.server_cpu_s, all_ops),
            "client CPU ms/op": per_op_ms(self.client_cpu_s, all_ops),
            "ops": float(len(latencies)),
            "seconds": self.seconds,
        }


async def run_clients(plans: Sequence[ClientPlan], pids: Sequence[int], time_cap: float) -> LoadResult:
    """Connect every client (and warm each connection with one `GET /health`), then run them all at once.

    Measured: from the start signal to the last client's end. Server CPU is the
    sum over `pids` of user + system time in that interval.
    """
    groups: dict[str, GroupStats] = {plan.group: GroupStats() for plan in plans}
    connections: list[Connection] = []
    first_error = ""
    capped = False
    try:
        slots: list[Connection | None] = [None] * len(plans)

        async def connect(index: int, plan: ClientPlan) -> None:
            conn = await Connection.open(plan.port)
            connections.append(conn)
            slots[index] = conn
            with trio.fail_after(REQUEST_TIMEOUT):
                await conn.request(request_bytes(plan.port, "GET", "/health"))

        async with trio.open_nursery() as nursery:
            for index, plan in enumerate(plans):
                nursery.start_soon(connect, index, plan)
        opened = [conn for conn in slots if conn is not None]

        foreground_left = sum(1 for plan in plans if not plan.background)
        foreground_done = trio.Event()
        if foreground_left == 0:
            foreground_done.set()
        deadline = 0.0

        async def client(plan: ClientPlan, conn: Connection) -> None:
            nonlocal first_error, capped, foreground_left
            stats = groups[plan.group]
            index = 0
            count = len(plan.requests)
            try:
                while True:
                    if plan.background:
                        if foreground_done.is_set():
                            return
                    elif index >= count:
                        return
                    if time.perf_counter() > deadline:
                        capped = True
                        return
                    request = plan.requests[index % count]
                    index += 1
                    start = time.perf_counter()
                    try:
                        with trio.fail_after(REQUEST_TIMEOUT):
                            status, body = await conn.request(request.raw)
                    except (trio.TooSlowError, HttpError, OSError, trio.BrokenResourceError) as exc:
                        stats.errors += 1
                        first_error = first_error or f"{request.raw[:60]!r}: {exc!r}"
                        await conn.aclose()
                        try:
                            conn = await Connection.open(plan.port)
                        except (trio.TooSlowError, OSError) as again:
                            first_error = first_error or f"reconnecting: {again!r}"
                            stats.errors += 0 if plan.background else count - index  # never sent
                            return
                        connections.append(conn)
                        continue
                    if status != request.status:
                        stats.errors += 1
                        first_error = first_error or f"{request.raw[:60]!r}: HTTP {status} {body[:200]!r}"
                        continue
                    stats.latencies_ms.append((time.perf_counter() - start) * 1000)
            finally:
                if not plan.background:
                    foreground_left -= 1
                    if foreground_left == 0:
                        foreground_done.set()

        server_before = total_cpu_seconds(pids)
        client_before = time.process_time()
        started = time.perf_counter()
        deadline = started + time_cap
        with trio.fail_after(time_cap + 2 * REQUEST_TIMEOUT + CONNECT_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for plan, conn in zip(plans, opened, strict=True):
                    nursery.start_soon(client, plan, conn)
        seconds = time.perf_counter() - started
        server_cpu = total_cpu_seconds(pids) - server_before
        client_cpu = time.process_time() - client_before
    finally:
        for conn in connections:
            await conn.aclose()
    return LoadResult(groups, seconds, server_cpu, client_cpu, first_error, capped)


# --- SSE ------------------------------------------------------------------------------------


class SseStream:
    """A raw `text/event-stream` reader: splits frames on a blank line, records (id, arrival time) of each."""

    def __init__(self, port: int, path: str, headers: Sequence[str] = ()) -> None:
        self.port = port
        self.path = path
        self.headers = headers
        self.received: list[tuple[int, float]] = []  # (id, perf_counter when its bytes arrived)
        self.frames = 0  # every frame, with or without an id
        self.connected = trio.Event()  # the `: connected` comment arrived
        self.status = 0
        self.on_id: Callable[[int], None] | None = None  # called for each id received
        self._buffer = b""
        self._now = 0.0
        self._parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        buffer = self._buffer + body
        end = buffer.find(b"\n\n")
        start = 0
        while end >= 0:
            frame = buffer[start:end]
            start = end + 2
            end = buffer.find(b"\n\n", start)
            self.frames += 1
            if frame.startswith(b":"):
                if frame.startswith(b": connected"):
                    self.connected.set()
                continue
            at = frame.find(b"id:")
            if at < 0 or (at > 0 and frame[at - 1] != 0x0A):
                continue
            stop = frame.find(b"\n", at)
            event_id = int(frame[at + 3 : stop if stop >= 0 else len(frame)])
            self.received.append((event_id, self._now))
            if self.on_id is not None:
                self.on_id(event_id)
        self._buffer = buffer[start:]

    async def run(self) -> None:
        """Connect and read until cancelled (callers bound it)."""
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        async with stream:
            headers = ["Accept: text/event-stream", *self.headers]
            await stream.send_all(request_bytes(self.port, "GET", self.path, headers=headers))
            while True:
                data = await stream.receive_some(65536)
                self._now = time.perf_counter()
                if not data:
                    return
                try:
                    self._parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    raise HttpError(f"GET {self.path}: bad response: {exc!r}") from None
                if self.status and self.status != 200:
                    raise HttpError(f"GET {self.path}: HTTP {self.status}")


# --- what the HTTP workloads report -------------------------------------------------------------

HTTP_METRICS = (
    Metric("ops/s"),
    Metric("p50 ms", 2, higher_is_better=False),
    Metric("p99 ms", 2, higher_is_better=False),
    Metric("CPU ms/op", 3, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


def note_load(ctx: Context, workload: str, target: Target, case: str, load: LoadResult) -> None:
    """Keep what went wrong in a load run for the report's notes."""
    where = f"{workload} {case}: {target.name} round {ctx.round_no + 1}"
    errors = sum(g.errors for g in load.groups.values())
    if errors:
        ctx.note(f"{where}: {errors} error(s), first: {load.first_error}")
    if load.capped:
        ctx.note(f"{where}: stopped by the {ctx.counts.level_seconds:.0f} s cap after {load.ops()} requests")
