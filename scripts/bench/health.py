"""`health`: GET /health at 1 and 8 keep-alive connections: the HTTP front end's own cost."""

from __future__ import annotations

from .api import split
from .loadgen import HTTP_METRICS, ClientPlan, Request, note_load, request_bytes, run_clients
from .runner import Context, Measurement, Target, Workload, http_server

LEVELS = (1, 8)


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    async with http_server(ctx, target, "health") as server:
        request = Request(request_bytes(server.port, "GET", "/health"), 200)
        for connections, total in zip(LEVELS, ctx.counts.health_requests, strict=True):
            plans = [ClientPlan(server.port, [request] * n) for n in split(total, connections)]
            load = await run_clients(plans, [server.pid], ctx.counts.level_seconds)
            case = f"{connections} conn"
            note_load(ctx, "health", target, case, load)
            out[case] = load.measurement()
    return out


WORKLOAD = Workload(
    name="health",
    title="GET /health, keep-alive, at 1 and 8 connections",
    metrics=HTTP_METRICS,
    run=run,
    chart_metric="ops/s",
    chart_extra=("p99 ms", "CPU ms/op"),
)
