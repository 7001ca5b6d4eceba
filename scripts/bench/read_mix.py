"""`read-mix`: 16 readers (GET /pending, GET /sessions/:id) beside 2 writers (PATCH)."""

from __future__ import annotations

from .api import patch_request, set_up, split
from .loadgen import ClientPlan, Request, note_load, request_bytes, run_clients
from .runner import Context, Measurement, Metric, Target, Workload, http_server

READERS = 16
WRITERS = 2
SESSIONS = 5
ANNOTATIONS = 50  # all pending: the writers only change comments

METRICS = (
    Metric("ops/s"),
    Metric("read ops/s"),
    Metric("read p50 ms", 2, higher_is_better=False),
    Metric("read p99 ms", 2, higher_is_better=False),
    Metric("CPU ms/op", 3, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    async with http_server(ctx, target, "read-mix") as server:
        port = server.port
        session_ids, ids = await set_up(port, ANNOTATIONS, sessions=SESSIONS)
        plans = []
        for reader, count in enumerate(split(ctx.counts.read_mix_reads, READERS)):
            requests = [
                Request(request_bytes(port, "GET", "/pending"), 200)
                if k % 2 == 0
                else Request(request_bytes(port, "GET", f"/sessions/{session_ids[(reader + k) % SESSIONS]}"), 200)
                for k in range(count)
            ]
            plans.append(ClientPlan(port, requests, group="read"))
        for writer in range(WRITERS):
            # Comments only: every annotation stays pending. Cycled until the readers are done.
            requests = [patch_request(port, ids[(writer * 25 + k) % ANNOTATIONS], 3 * k) for k in range(200)]
            plans.append(ClientPlan(port, requests, group="write", background=True))
        load = await run_clients(plans, [server.pid], ctx.counts.level_seconds)
    case = f"{READERS}r+{WRITERS}w"
    note_load(ctx, "read-mix", target, case, load)
    everything = load.measurement()
    reads = load.measurement(["read"])
    return {
        case: {
            "ops/s": everything["ops/s"],
            "read ops/s": reads["ops/s"],
            "read p50 ms": reads["p50 ms"],
            "read p99 ms": reads["p99 ms"],
            "CPU ms/op": everything["CPU ms/op"],
            "errors": everything["errors"],
            "write ops": load.ops(["write"]),
            "client CPU ms/op": everything["client CPU ms/op"],
        }
    }


WORKLOAD = Workload(
    name="read-mix",
    title=(
        f"{READERS} readers alternating GET /pending and GET /sessions/:id, {WRITERS} writers PATCHing comments; "
        f"{SESSIONS} sessions, {ANNOTATIONS} pending annotations. ops/s and CPU: all requests"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ops/s",
    chart_extra=("read p99 ms", "CPU ms/op"),
)
