"""`cli`: wall time of `help` and of `pending --json` on a store holding pending annotations.

The annotation commands run without loading the MCP SDK or the HTTP stack;
`help` is the floor beside them (the npm server has `help`, and no
`pending`). Each figure is the median of a round's runs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import trio

from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import connection, schema, transactions

from .api import annotation_body
from .runner import Context, Measurement, Metric, Target, Workload, median

METRICS = (Metric("ms", 0, higher_is_better=False), Metric("min ms", 0, higher_is_better=False))
RUNS = 7
PENDING = 20


def _seed(home: Path) -> None:
    conn = connection.open_write_connection(connection.StoreLocation(home / ".agentation" / "store.db"))
    try:
        schema.migrate(conn)
        [created] = transactions.commit_batch(conn, [CreateSession(url="http://localhost:3000/")])
        session_id = created.unwrap()[0]["id"]
        annotations = [CreateAnnotation.from_body(session_id, annotation_body(i)) for i in range(PENDING)]
        for done in transactions.commit_batch(conn, annotations):
            done.unwrap()
    finally:
        conn.close()


def _times(argv: list[str], home: Path) -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(
            argv, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, check=True, timeout=60
        )
        times.append((time.perf_counter() - start) * 1000)
    return times


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    home = ctx.fresh_dir(f"{target.name}-cli")
    program = list(target.argv[:-1])  # without "server"
    out: dict[str, Measurement] = {}
    helps = await trio.to_thread.run_sync(_times, [*program, "help"], home)
    out["help"] = {"ms": median(helps), "min ms": min(helps)}
    if target.name == "ours":
        await trio.to_thread.run_sync(_seed, home)
        pendings = await trio.to_thread.run_sync(_times, [*program, "pending", "--json"], home)
        out[f"pending --json ({PENDING} pending)"] = {"ms": median(pendings), "min ms": min(pendings)}
    return out


WORKLOAD = Workload(
    name="cli",
    title=f"command-line wall time, median of {RUNS}: help, and pending --json on a store with {PENDING} pending",
    metrics=METRICS,
    run=run,
    chart_metric="ms",
)
