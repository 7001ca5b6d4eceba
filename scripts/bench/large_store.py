"""`large-store`: the pending lists on a store of 1,000 sessions and 50,000 annotations (25,000 pending).

The store is built once through the store's own commands and transaction
function (as the writer commits them), then each target gets a fresh copy
of the same file. Measured: `GET /pending` and `agentation_get_all_pending`
(ours asked for every annotation with `limit`, so both return the same
data; and ours at its default), each with the size of what came back. The
tool is called through `stdio_rpc`'s lean client: the SDK's stdio client
takes seconds of its own to read one line of 15 MB (see that module).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx2
import orjson
import trio

from agentation_mcp.commands import CreateAnnotation, CreateSession, UpdateAnnotation
from agentation_mcp.store import connection, schema, transactions

from .api import annotation_body
from .runner import REQUEST_TIMEOUT, Context, Measurement, Metric, Target, Workload, median, wait_healthy
from .stdio_rpc import stdio_session

SESSIONS = 1000
PER_SESSION = 50
RUNS = 3
METRICS = (Metric("s", 2, higher_is_better=False), Metric("MB", 1, higher_is_better=False))
_built: dict[Path, Path] = {}


def _build(folder: Path) -> Path:
    """The large store, built once per benchmark run."""
    path = folder / "large-store.db"
    if path.exists():
        return path
    conn = connection.open_write_connection(connection.StoreLocation(path))
    try:
        schema.migrate(conn)
        conn.pragma("synchronous", "OFF")  # building a fixture, not serving
        urls = [CreateSession(url=f"http://localhost:3000/page-{i}") for i in range(SESSIONS)]
        sessions = [done.unwrap()[0]["id"] for done in transactions.commit_batch(conn, urls)]
        for n, session_id in enumerate(sessions):
            bodies = [annotation_body(n * PER_SESSION + j) for j in range(PER_SESSION)]
            created = transactions.commit_batch(conn, [CreateAnnotation.from_body(session_id, b) for b in bodies])
            ids = [done.unwrap()[0]["id"] for done in created]
            resolved = transactions.commit_batch(conn, [UpdateAnnotation(i, {"status": "resolved"}) for i in ids[::2]])
            for done in resolved:
                done.unwrap()
        conn.pragma("wal_checkpoint", "TRUNCATE")
    finally:
        conn.close()
    return path


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    source = _built.get(ctx.workdir)
    if source is None:
        source = _built[ctx.workdir] = await trio.to_thread.run_sync(_build, ctx.workdir)
    home = ctx.fresh_dir(f"{target.name}-large")
    (home / ".agentation").mkdir(parents=True)
    shutil.copy(source, home / ".agentation" / "store.db")
    out: dict[str, Measurement] = {}
    async with stdio_session(ctx, target, home, "large") as (session, _, port):
        await wait_healthy(port)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT * 4) as http:
            times, size = [], 0
            for _ in range(RUNS):
                start = time.perf_counter()
                response = await http.get("/pending")
                times.append(time.perf_counter() - start)
                size = len(response.content)
            out["GET /pending (25,000 pending)"] = {"s": median(times), "MB": size / 1e6}
        cases = [("agentation_get_all_pending, everything", {"limit": 100_000} if target.name == "ours" else {})]
        if target.name == "ours":
            cases.append(("agentation_get_all_pending, default limit", {}))
        for label, args in cases:
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                with trio.fail_after(REQUEST_TIMEOUT * 6):
                    result = await session.call_tool("agentation_get_all_pending", args)
                times.append(time.perf_counter() - start)
            text = sum(len(block.get("text", "")) for block in result["content"])
            structured = len(orjson.dumps(result["structuredContent"])) if result.get("structuredContent") else 0
            out[label] = {"s": median(times), "MB": (text + structured) / 1e6}
    return out


WORKLOAD = Workload(
    name="large-store",
    title=(
        f"{SESSIONS} sessions, {SESSIONS * PER_SESSION} annotations (half pending), built by the store's own "
        f"commands; median of {RUNS}: seconds and MB returned"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="s",
    budget=600.0,
)
