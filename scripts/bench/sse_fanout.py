"""`sse-fanout`: 100 listeners on GET /events while a writer PATCHes 60 times a second.

Each listener has its own connection and parses the raw stream (frames split on
a blank line, `id:` lines read). One PATCH makes one event, so after a priming
PATCH whose id every listener has seen (`base`), PATCH k is event `base + 1 + k`.
Delivery latency: from the PATCH request's start to the arrival of the bytes of
its frame at a listener, for every (event, listener) pair.
"""

from __future__ import annotations

import math
import time
from functools import partial

import trio

from .api import patch_request, set_up
from .loadgen import Connection, HttpError, SseStream
from .runner import (
    REQUEST_TIMEOUT,
    Context,
    Measurement,
    Metric,
    Target,
    Workload,
    cpu_seconds,
    http_server,
    percentile,
)

LISTENERS = 100
WRITES_PER_SECOND = 60
CONNECT_TIMEOUT = 30.0  # for every listener to get `: connected`
DRAIN_TIMEOUT = 15.0  # after the last PATCH, for every listener to get every event

METRICS = (
    Metric("events/s"),
    Metric("p50 ms", 2, higher_is_better=False),
    Metric("p99 ms", 2, higher_is_better=False),
    Metric("missed", summed=True, higher_is_better=False),
    Metric("writes/s", 1),
    Metric("CPU ms/write", 3, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


class Progress:
    """Which listeners have received an id at least as high as the awaited one."""

    def __init__(self, streams: list[SseStream]) -> None:
        self.streams = streams
        self.awaited = 0
        self.reached: set[int] = set()
        self.all_reached = trio.Event()
        for index, stream in enumerate(streams):
            stream.on_id = partial(self.on_id, index)

    def on_id(self, index: int, event_id: int) -> None:
        if event_id >= self.awaited and index not in self.reached:
            self.reached.add(index)
            if len(self.reached) == len(self.streams):
                self.all_reached.set()

    async def wait_all(self, event_id: int, timeout: float) -> bool:
        """Until every listener has received `event_id` or a higher one; False when `timeout` passes first."""
        self.awaited = event_id
        self.reached = {i for i, s in enumerate(self.streams) if s.received and s.received[-1][0] >= event_id}
        self.all_reached = trio.Event()
        if len(self.reached) == len(self.streams):
            return True
        with trio.move_on_after(timeout):
            await self.all_reached.wait()
            return True
        return False


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    writes = max(1, round(WRITES_PER_SECOND * ctx.counts.sse_seconds))
    failed_listeners = 0
    errors = 0
    starts: list[float] = []
    async with http_server(ctx, target, "sse-fanout") as server:
        _, (annotation_id,) = await set_up(server.port, 1)
        streams = [SseStream(server.port, "/events") for _ in range(LISTENERS)]
        progress = Progress(streams)
        requests = [patch_request(server.port, annotation_id, 3 * (k + 1)) for k in range(writes)]  # comments only
        writer: Connection | None = None
        try:
            async with trio.open_nursery() as nursery:

                async def listen(stream: SseStream) -> None:
                    nonlocal failed_listeners
                    try:
                        await stream.run()
                    except (HttpError, OSError, trio.TooSlowError, trio.BrokenResourceError):
                        failed_listeners += 1

                for stream in streams:
                    nursery.start_soon(listen, stream)
                with trio.fail_after(CONNECT_TIMEOUT):
                    for stream in streams:
                        await stream.connected.wait()
                writer = await Connection.open(server.port)  # only now: npm closes connections idle for 5 s
                await writer.json(patch_request(server.port, annotation_id, 0).raw, 200)  # priming
                if not await progress.wait_all(1, CONNECT_TIMEOUT):
                    raise RuntimeError("not every listener got the priming event")
                base = max(s.received[-1][0] for s in streams)
                for s in streams:
                    s.received.clear()

                cpu_before = cpu_seconds(server.pid)
                began = time.perf_counter()
                schedule = trio.current_time()  # trio's clock, for sleep_until; perf_counter for the latencies
                for k, request in enumerate(requests):
                    await trio.sleep_until(schedule + k / WRITES_PER_SECOND)
                    starts.append(time.perf_counter())
                    try:
                        with trio.fail_after(REQUEST_TIMEOUT):
                            status, _ = await writer.request(request.raw)
                    except (trio.TooSlowError, HttpError, OSError) as exc:
                        errors += 1
                        ctx.note(f"sse-fanout: {target.name} PATCH {k} failed: {exc!r}")
                        await writer.aclose()
                        writer = await Connection.open(server.port)
                        continue
                    if status != 200:
                        errors += 1
                writer_seconds = time.perf_counter() - began
                kept_up = await progress.wait_all(base + writes, DRAIN_TIMEOUT)
                cpu = cpu_seconds(server.pid) - cpu_before
                nursery.cancel_scope.cancel()
        finally:
            if writer is not None:
                await writer.aclose()

    latencies: list[float] = []
    received = 0
    last_arrival = began
    unexpected = 0
    for stream in streams:
        seen: set[int] = set()
        for event_id, at in stream.received:
            k = event_id - base - 1
            if not 0 <= k < len(starts) or event_id in seen:
                unexpected += 1
                continue
            seen.add(event_id)
            latencies.append((at - starts[k]) * 1000)
            last_arrival = max(last_arrival, at)
        received += len(seen)
    missed = writes * LISTENERS - received
    if not kept_up or missed:
        ctx.note(
            f"sse-fanout: {target.name} round {ctx.round_no + 1}: {missed} of {writes * LISTENERS} deliveries missed"
            f" ({failed_listeners} listener(s) failed)"
        )
    if unexpected:
        ctx.note(f"sse-fanout: {target.name} round {ctx.round_no + 1}: {unexpected} unexpected or repeated ids")
    seconds = last_arrival - began
    return {
        f"{LISTENERS} listeners": {
            "events/s": received / seconds if seconds > 0 else math.nan,
            "p50 ms": percentile(latencies, 50),
            "p99 ms": percentile(latencies, 99),
            "missed": float(missed),
            "writes/s": writes / writer_seconds if writer_seconds > 0 else math.nan,
            "CPU ms/write": cpu * 1000 / writes,
            "errors": float(errors + failed_listeners),
        }
    }


WORKLOAD = Workload(
    name="sse-fanout",
    title=(
        f"{LISTENERS} listeners on GET /events (a connection each) while one writer PATCHes "
        f"{WRITES_PER_SECOND}/s; events/s: frames received by all listeners per second; latency: PATCH start to "
        "frame arrival; missed: (event, listener) pairs never delivered (0: every listener kept up)"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="p99 ms",
    chart_extra=("events/s", "CPU ms/write"),
)
