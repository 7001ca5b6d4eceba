"""`python -m scripts.bench`: run the chosen workloads, print the report, write the JSON file and the chart."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from . import (
    cli,
    conflict,
    goals,
    health,
    large_store,
    mcp_latency,
    read_mix,
    replay,
    report,
    sse_fanout,
    startup,
    two_process,
    watch,
    write_mix,
    writer,
)
from .runner import FULL, QUICK, Context, Target, Workload, WorkloadResult, npm_target, our_target, run_workload, say

WORKLOADS: tuple[Workload, ...] = (
    mcp_latency.WORKLOAD,
    writer.WORKLOAD,
    startup.WORKLOAD,
    cli.WORKLOAD,
    watch.WORKLOAD,
    health.WORKLOAD,
    write_mix.WORKLOAD,
    conflict.WORKLOAD,
    read_mix.WORKLOAD,
    sse_fanout.WORKLOAD,
    two_process.WORKLOAD,
    replay.WORKLOAD,
    large_store.WORKLOAD,
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [w.name for w in WORKLOADS]
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description="Benchmark agentation-mcp against the npm agentation-mcp 1.3.2."
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round and small counts (a smoke run of a few minutes)"
    )
    parser.add_argument("--rounds", type=int, help="A/B rounds per workload (default 3; 1 with --quick)")
    parser.add_argument("--only", help=f"comma-separated workloads: {','.join(names)}")
    parser.add_argument(
        "--json", type=Path, default=Path("build/bench-results.json"), help="where to write all results"
    )
    parser.add_argument("--chart", type=Path, default=Path("build/bench-results.png"), help="where to draw the chart")
    parser.add_argument("--no-npm", action="store_true", help="run ours only")
    options = parser.parse_args(argv)
    if options.only:
        unknown = [n for n in options.only.split(",") if n not in names]
        if unknown:
            parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if options.rounds is not None and options.rounds < 1:
        parser.error("--rounds must be at least 1")
    return options


async def bench(ctx: Context, workloads: Sequence[Workload]) -> list[WorkloadResult]:
    return [await run_workload(ctx, workload) for workload in workloads]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    counts = QUICK if options.quick else FULL
    rounds = options.rounds or (1 if options.quick else 3)
    chosen = [w for w in WORKLOADS if not options.only or w.name in options.only.split(",")]
    npm, npm_note = (None, "left out (--no-npm)") if options.no_npm else npm_target()
    targets: list[Target] = [our_target()] + ([npm] if npm is not None else [])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentation-bench-") as tmp:
        ctx = Context(counts=counts, rounds=rounds, workdir=Path(tmp), targets=targets)
        info = report.machine(ctx, npm_note)
        report.describe(info)
        if npm is None:
            say(f"npm reference: {npm_note}; running ours only")
        results = trio.run(bench, ctx, chosen)
    report.print_report(info, results, ctx, npm is not None)
    checked = goals.check(results)
    goals.print_goals(checked)
    say(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s")
    report.write_json(options.json, info, results, ctx, goals=checked)
    report.write_chart(options.chart, results, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
