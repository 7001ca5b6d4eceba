"""`write-mix`: 1, 8 and 64 clients, each creating, PATCHing and replying to annotations in turn."""

from __future__ import annotations

from .api import set_up, split, write_mix
from .loadgen import HTTP_METRICS, ClientPlan, note_load, run_clients
from .runner import Context, Measurement, Target, Workload, http_server

LEVELS = (1, 8, 64)
ANNOTATIONS = 256  # pre-created over HTTP; the PATCHes and replies are spread over them (short threads)


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    async with http_server(ctx, target, "write-mix") as server:
        (session_id,), ids = await set_up(server.port, ANNOTATIONS)
        first = ANNOTATIONS  # request numbers go on across levels: every body and comment differs
        for clients, total in zip(LEVELS, ctx.counts.write_mix_ops, strict=True):
            plans = []
            for client, ops in enumerate(split(total, clients)):
                plans.append(ClientPlan(server.port, write_mix(server.port, session_id, ids, client, ops, first)))
                first += ops
            load = await run_clients(plans, [server.pid], ctx.counts.level_seconds)
            case = f"{clients} client" + ("s" if clients > 1 else "")
            note_load(ctx, "write-mix", target, case, load)
            out[case] = load.measurement()
    return out


WORKLOAD = Workload(
    name="write-mix",
    title=(
        "each client: POST an annotation, PATCH one (comment or status), POST a thread reply, again; "
        f"{ANNOTATIONS} annotations pre-created over HTTP"
    ),
    metrics=HTTP_METRICS,
    run=run,
    chart_metric="ops/s",
)
