"""`replay`: one client reads a whole store's event history with `Last-Event-ID: 0`.

The store is built once per benchmark run through our own writer (in this
process, as the `writer` workload does): one session, 100 annotations, then
UpdateAnnotation commands until the store holds `replay_events` events, all of
that one session and all fresh (the servers prune events older than 7 days
when they start). Every run gets a copy of the same file as
`$HOME/.agentation/store.db`, ours and npm alike.

Two routes: `GET /sessions/:id/events` (both servers replay it) and
`GET /events` (ours only: npm ignores Last-Event-ID there).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import apsw
import trio

from agentation_mcp.commands import CreateAnnotation, CreateSession, UpdateAnnotation

from .api import PAGE_URL, annotation_body, split
from .loadgen import SseStream
from .runner import Context, Measurement, Metric, Target, Workload, cpu_seconds, http_server, say
from .writer import in_process_writer

ANNOTATIONS = 100
SUBMITTERS = 128
BUILD_TIMEOUT = 300.0
REPLAY_TIMEOUT = 120.0

METRICS = (
    Metric("events/s"),
    Metric("seconds", 2, higher_is_better=False),
    Metric("events"),
    Metric("CPU ms/kevent", 2, higher_is_better=False),
    Metric("errors", summed=True, higher_is_better=False),
)


@dataclass(frozen=True, slots=True)
class BuiltStore:
    path: Path
    session_id: str
    events: int
    last_sequence: int


async def build_store(ctx: Context) -> BuiltStore:
    """The store every replay run copies; built on the first call."""
    built = ctx.shared.get("replay-store")
    if isinstance(built, BuiltStore):
        return built
    events = ctx.counts.replay_events
    path = ctx.workdir / "replay-store" / "store.db"
    started = time.perf_counter()
    with trio.fail_after(BUILD_TIMEOUT):
        async with in_process_writer(path) as (writer, _):
            session_id = (await writer.submit(CreateSession(url=PAGE_URL)))["id"]
            ids = [
                (await writer.submit(CreateAnnotation.from_body(session_id, annotation_body(i))))["id"]
                for i in range(ANNOTATIONS)
            ]

            async def submitter(j: int, count: int) -> None:
                for k in range(count):
                    comment = f"Replayed edit {j}.{k}: larger heading, 28px, bold"
                    await writer.submit(UpdateAnnotation(ids[(j + k) % ANNOTATIONS], {"comment": comment}))

            async with trio.open_nursery() as nursery:
                for j, count in enumerate(split(events - 1 - ANNOTATIONS, SUBMITTERS)):
                    nursery.start_soon(submitter, j, count)
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT COUNT(*), MAX(sequence) FROM events").fetchone()
    finally:
        conn.close()
    assert row is not None
    count, last = int(row[0]), int(row[1])
    size = sum(p.stat().st_size for p in path.parent.iterdir()) / 2**20
    say(f"    built the store: {count} events, {size:.0f} MiB, in {time.perf_counter() - started:.1f} s")
    built = BuiltStore(path, session_id, count, last)
    ctx.shared["replay-store"] = built
    return built


def copy_store(built: BuiltStore, home: Path) -> None:
    folder = home / ".agentation"
    folder.mkdir(parents=True)
    for source in built.path.parent.iterdir():  # store.db, and -wal / -shm if the writer left them
        shutil.copyfile(source, folder / source.name)


async def replay(ctx: Context, target: Target, port: int, pid: int, path: str, built: BuiltStore) -> Measurement:
    stream = SseStream(port, path, headers=["Last-Event-ID: 0"])
    done = trio.Event()

    def on_id(event_id: int) -> None:
        if event_id >= built.last_sequence:
            done.set()

    stream.on_id = on_id
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    errors = 0
    with trio.move_on_after(REPLAY_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            await done.wait()
            nursery.cancel_scope.cancel()
    seconds = (stream.received[-1][1] if done.is_set() else time.perf_counter()) - started
    cpu = cpu_seconds(pid) - cpu_before
    distinct = len({event_id for event_id, _ in stream.received})
    if not done.is_set() or distinct != built.events:
        errors += 1
        ctx.note(
            f"replay {path}: {target.name} round {ctx.round_no + 1}: got {distinct} distinct of {built.events} events "
            f"({len(stream.received)} frames) in {seconds:.1f} s"
        )
    return {
        "events/s": distinct / seconds if seconds > 0 else math.nan,
        "seconds": seconds,
        "events": float(distinct),
        "CPU ms/kevent": cpu * 1e6 / distinct if distinct else math.nan,
        "errors": float(errors),
    }


async def run(ctx: Context, target: Target) -> dict[str, Measurement]:
    built = await build_store(ctx)
    home = ctx.fresh_dir(f"{target.name}-replay")
    copy_store(built, home)
    out: dict[str, Measurement] = {}
    async with http_server(ctx, target, "replay", home=home) as server:
        routes = [f"/sessions/{built.session_id}/events"]
        if target.name == "ours":
            routes.append("/events")
        for route in routes:
            case = "/events" if route == "/events" else "/sessions/:id/events"
            out[case] = await replay(ctx, target, server.port, server.pid, route, built)
    return out


WORKLOAD = Workload(
    name="replay",
    title=(
        "one client reads the whole history (Last-Event-ID: 0) of a store of N events built with our writer and "
        "copied to each server; npm ignores Last-Event-ID on GET /events, so that row is ours alone"
    ),
    metrics=METRICS,
    run=run,
    chart_metric="events/s",
    budget=BUILD_TIMEOUT + 2 * REPLAY_TIMEOUT + 60,
)
