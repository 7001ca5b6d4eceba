"""`writer`: the writer's throughput in this process, with 1, 8 and 64 concurrent submitters.

UpdateAnnotation and AddThreadMessage commands, alternating, over a SQLite
file opened as the server opens it (WAL, synchronous=FULL). No npm figure: the
npm server has no such part to call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from agentation_mcp.commands import (
    AddThreadMessage,
    Command,
    CreateAnnotation,
    CreateSession,
    NewThreadMessage,
    UpdateAnnotation,
)
from agentation_mcp.store import connection, reads, schema
from agentation_mcp.store.connection import StoreLocation
from agentation_mcp.store.hub import Hub
from agentation_mcp.store.reads import Reader
from agentation_mcp.store.writer import Writer, run_writer

from .api import PAGE_URL, annotation_body
from .runner import Context, Measurement, Metric, Target, Workload, per_op_ms, percentile

LEVELS = (1, 8, 64)
WRITER_TIMEOUT = 120.0

METRICS = (
    Metric("ops/s"),
    Metric("avg batch", 1),
    Metric("max batch"),
    Metric("p50 ms", 2, higher_is_better=False),
    Metric("p99 ms", 2, higher_is_better=False),
    Metric("CPU ms/op", 3, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


@asynccontextmanager
async def in_process_writer(path: Path) -> AsyncIterator[tuple[Writer, int]]:
    """The package's own writer over the store file at `path`; also yields PRAGMA synchronous."""
    location = StoreLocation(path)
    conn = connection.open_write_connection(location)
    read_conn = None
    try:
        schema.migrate(conn)
        synchronous = conn.execute("PRAGMA synchronous").get
        read_conn = connection.open_read_connection(location)
        reader = Reader(read_conn)
        hub = Hub(partial(reads.events_after, reader), reads.last_sequence(reader))
        async with trio.open_nursery() as nursery:
            writer: Writer = await nursery.start(run_writer, conn, hub)
            try:
                yield writer, int(synchronous) if isinstance(synchronous, int) else -1
            finally:
                writer.close()
    finally:
        if read_conn is not None:
            read_conn.close()
        conn.close()


async def create_annotations(writer: Writer, count: int) -> list[str]:
    session = await writer.submit(CreateSession(url=PAGE_URL))
    ids: list[str] = []
    for i in range(count):
        annotation = await writer.submit(CreateAnnotation.from_body(session["id"], annotation_body(i)))
        ids.append(annotation["id"])
    return ids


def writer_command(annotation_id: str, submitter: int, i: int) -> Command:
    if i % 2 == 0:
        return UpdateAnnotation(annotation_id, {"comment": f"Edited by {submitter} ({i})"})
    return AddThreadMessage(annotation_id, NewThreadMessage("agent", f"Reply from {submitter} ({i})"))


async def level(ctx: Context, submitters: int) -> Measurement:
    per_submitter = max(1, ctx.counts.writer_ops // submitters)
    latencies: list[float] = []
    errors = 0
    path = ctx.fresh_dir(f"writer-{submitters}") / "store.db"
    with trio.fail_after(WRITER_TIMEOUT):
        async with in_process_writer(path) as (writer, _):
            ids = await create_annotations(writer, ctx.counts.writer_annotations)
            before = writer.statistics()

            async def submitter(j: int) -> None:
                nonlocal errors
                for i in range(per_submitter):
                    command = writer_command(ids[(j * per_submitter + i) % len(ids)], j, i)
                    start = time.perf_counter()
                    try:
                        await writer.submit(command)
                    except Exception:
                        errors += 1
                    latencies.append((time.perf_counter() - start) * 1000)

            cpu_before = time.process_time()
            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for j in range(submitters):
                    nursery.start_soon(submitter, j)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_before
            after = writer.statistics()
    ops = after.commands - before.commands
    batches = after.batches - before.batches
    return {
        "ops/s": ops / seconds,
        "avg batch": ops / batches if batches else 0.0,
        "max batch": float(after.largest_batch),
        "p50 ms": percentile(latencies, 50),
        "p99 ms": percentile(latencies, 99),
        "CPU ms/op": per_op_ms(cpu, ops),
        "errors": float(errors),
    }


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    return {f"{n} submitter" + ("s" if n > 1 else ""): await level(ctx, n) for n in LEVELS}


WORKLOAD = Workload(
    name="writer",
    title=(
        "the writer in this process (SQLite file, WAL, synchronous=FULL): UpdateAnnotation / AddThreadMessage "
        "alternating; p50/p99: one submit; CPU: this process's"
    ),
    metrics=METRICS,
    run=run,
    ours_only=True,
)
