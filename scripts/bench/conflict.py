"""`conflict`: 96 clients PATCHing and replying to the same 16 annotations at once."""

from __future__ import annotations

from .api import patch_request, set_up, split, thread_request
from .loadgen import HTTP_METRICS, ClientPlan, Request, note_load, run_clients
from .runner import Context, Measurement, Target, Workload, http_server

CLIENTS = 96
ANNOTATIONS = 16


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    async with http_server(ctx, target, "conflict") as server:
        _, ids = await set_up(server.port, ANNOTATIONS)
        plans = []
        first = 0
        for client, ops in enumerate(split(ctx.counts.conflict_ops, CLIENTS)):
            requests: list[Request] = []
            for k in range(ops):
                annotation = ids[(client + k) % ANNOTATIONS]
                i = first + k
                requests.append(
                    patch_request(server.port, annotation, i)
                    if k % 2 == 0
                    else thread_request(server.port, annotation, i)
                )
            first += ops
            plans.append(ClientPlan(server.port, requests))
        load = await run_clients(plans, [server.pid], ctx.counts.level_seconds)
    case = f"{CLIENTS} clients"
    note_load(ctx, "conflict", target, case, load)
    return {case: load.measurement()}


WORKLOAD = Workload(
    name="conflict",
    title=f"{CLIENTS} clients writing (PATCH, thread reply) to the same {ANNOTATIONS} annotations",
    metrics=HTTP_METRICS,
    run=run,
    chart_metric="ops/s",
    chart_extra=("p99 ms", "CPU ms/op"),
)
