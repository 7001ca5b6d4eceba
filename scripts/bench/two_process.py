"""`two-process`: two server processes on one HOME (one store), the write mix from 8 clients split over both ports."""

from __future__ import annotations

from .api import set_up, split, write_mix
from .loadgen import HTTP_METRICS, ClientPlan, note_load, run_clients
from .runner import Context, Measurement, Target, Workload, http_server

CLIENTS = 8
ANNOTATIONS = 16


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    home = ctx.fresh_dir(f"{target.name}-two-process")
    async with (
        http_server(ctx, target, "two-process-a", home=home) as first,
        http_server(ctx, target, "two-process-b", home=home) as second,
    ):
        (session_id,), ids = await set_up(first.port, ANNOTATIONS)
        plans = []
        start = ANNOTATIONS
        for client, ops in enumerate(split(ctx.counts.two_process_ops, CLIENTS)):
            port = (first, second)[client % 2].port
            plans.append(ClientPlan(port, write_mix(port, session_id, ids, client, ops, start)))
            start += ops
        load = await run_clients(plans, [first.pid, second.pid], ctx.counts.level_seconds)
    case = f"{CLIENTS} clients / 2 procs"
    note_load(ctx, "two-process", target, case, load)
    return {case: load.measurement()}


WORKLOAD = Workload(
    name="two-process",
    title=(
        f"two servers on one HOME (one store), different ports; the write mix from {CLIENTS} clients, "
        "half on each port; CPU is both processes'"
    ),
    metrics=HTTP_METRICS,
    run=run,
    chart_metric="ops/s",
    chart_extra=("p99 ms", "CPU ms/op"),
)
