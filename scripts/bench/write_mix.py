"""`write-mix`: 1, 8 and 64 clients, each creating, PATCHing and replying to annotations in turn.

Ours flushes (fsyncs) the WAL before it answers a write, and the npm server
never does. So the one-client case also reports what one flush costs on the
store's file system in the same run (`fsync ms`: the median of appending
4 KiB to a file in the store's folder and fsyncing it, measured right after
that level) and ours' p50 less that (`p50 - fsync ms`; npm's is its p50).
After each run, the server's own count and average of its flushes (from its
log at exit) go to the notes.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import trio

from .api import set_up, split, write_mix
from .loadgen import HTTP_METRICS, ClientPlan, note_load, run_clients
from .runner import Context, Measurement, Metric, Target, Workload, http_server

LEVELS = (1, 8, 64)
ANNOTATIONS = 256  # pre-created over HTTP; the PATCHes and replies are spread over them (short threads)
FSYNCS = 200
METRICS = (
    *HTTP_METRICS,
    Metric("fsync ms", 3, higher_is_better=False),
    Metric("p50 - fsync ms", 2, higher_is_better=False),
)
_FLUSHES = re.compile(rb"Flushed the WAL (\d+) times, ([0-9.]+) ms each on average")


def fsync_ms(folder: Path, count: int = FSYNCS) -> float:
    """The median time, in ms, of appending 4 KiB to a file in `folder` and fsyncing it."""
    path = folder / "bench-fsync.tmp"
    block = os.urandom(4096)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, block)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times)


def _server_flushes(log_path: Path) -> str:
    try:
        found = _FLUSHES.search(log_path.read_bytes())
    except OSError:
        return ""
    return f"{int(found[1])} flushes, {float(found[2]):.3f} ms each on average" if found else ""


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
            if clients == 1:
                p50 = out[case]["p50 ms"]
                if target.name == "ours":
                    flush = await trio.to_thread.run_sync(fsync_ms, server.home / ".agentation")
                    out[case].update({"fsync ms": flush, "p50 - fsync ms": p50 - flush})
                else:
                    out[case]["p50 - fsync ms"] = p50  # it never flushes
    if target.name == "ours" and (flushes := _server_flushes(server.log_path)):
        ctx.note(f"write-mix: ours round {ctx.round_no + 1}: the server's own WAL flushes over all levels: {flushes}")
    return out


WORKLOAD = Workload(
    name="write-mix",
    title=(
        "each client: POST an annotation, PATCH one (comment or status), POST a thread reply, again; "
        f"{ANNOTATIONS} annotations pre-created over HTTP"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="ops/s",
    chart_extra=("p50 ms", "p99 ms", "CPU ms/op", "p50 - fsync ms"),
)
