"""Where one client's write goes: py-spy on our server under the one-client write mix, stack by stack.

    python -m scripts.bench.profile_write [--ops 6000] [--rate 1000] [--raw FILE]

Starts our server, runs one client's write mix (as `write-mix` does) once to
warm up, then again with `py-spy record --idle --nonblocking` attached to the server, and
sorts every sample of the trio thread into the stage of the write path it
shows (the first rule below whose frame is on the stack), and the database
thread's flushes apart. With `--idle` a thread is sampled whether it runs or
waits, so a stage's samples per request, at `rate` samples a second, are the
wall time it took: together the trio thread's stages make up one request's
whole cycle (1 / throughput), the client's turn included (the trio thread
waits in epoll for the next request, or for the database thread).

py-spy comes with the bench extra (`pip install -e '.[bench]'`); it must be
allowed to attach (root, or ptrace permitted).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from .api import set_up, write_mix
from .loadgen import ClientPlan, run_clients
from .runner import FULL, Context, http_server, our_target, say

ANNOTATIONS = 256
WARM_UP = 600
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("flush on the database thread", ("WalSync.__call__",)),
    ("the database thread waiting", ("DatabaseThread._work",)),
    ("other threads", ("Thread._bootstrap",)),
    ("cross-process tail (data_version polls)", ("Hub.run_tail",)),
    ("flush on the trio thread", ("WalSync.flush",)),
    ("publish (hub, SSE fan-out)", ("Hub.publish", "Hub.hold_from", "Hub.catch_up", "_fan_out")),
    ("transaction (BEGIN..COMMIT)", ("try_commit_batch", "commit_batch")),
    ("flush hop (to the database thread and back)", ("DatabaseThread.run", "_answer (")),
    ("writer loop (batching, replies)", ("_serve (",)),
    ("response write", ("_respond_json", "Request.respond", "refuse")),
    ("validate (JSON body, command)", ("json_body", "from_body", "decode_json", "check_text")),
    ("submit and wait for the reply", ("Writer.submit", "Writer._committed")),
    ("route (gate, match, log line)", ("HttpApi", "JsonRoutes", "Gate")),
    ("parse (llhttp)", ("_feed", "Request.__init__", "_Connection.finish")),
    ("socket read", ("_receive", "next_message")),
    ("between requests", ("serve_connection",)),
    ("epoll wait (the client's turn, or the database thread)", ("get_events",)),
    ("trio scheduler", ("unrolled_run",)),
)
_OFF_TRIO = {"flush on the database thread", "the database thread waiting", "other threads"}


def stage_of(stack: str) -> str:
    for name, patterns in STAGES:
        if any(pattern in stack for pattern in patterns):
            return name
    return "other"


def breakdown(raw: Path, ops: int, rate: int) -> list[tuple[str, float]]:
    """(stage, ms per request) from py-spy's raw (collapsed) output."""
    samples: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            samples[stage_of(stack)] += int(count)
    names = [name for name, _ in STAGES] + ["other"]
    return [(name, samples[name] * 1000 / rate / ops) for name in names if samples[name]]


async def profile(ops: int, rate: int, raw: Path) -> tuple[dict[str, float], list[tuple[str, float]]]:
    target = our_target()
    with tempfile.TemporaryDirectory(prefix="agentation-profile-") as tmp:
        ctx = Context(counts=FULL, rounds=1, workdir=Path(tmp), targets=[target])
        async with http_server(ctx, target, "profile") as server:
            (session_id,), ids = await set_up(server.port, ANNOTATIONS)
            warm = write_mix(server.port, session_id, ids, 0, WARM_UP, ANNOTATIONS)
            await run_clients([ClientPlan(server.port, warm)], [server.pid], 60)
            spy = await trio.lowlevel.open_process(
                [
                    "py-spy",
                    "record",
                    "--idle",
                    "--nonblocking",
                    "-p",
                    str(server.pid),
                    "-r",
                    str(rate),
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await trio.sleep(1)  # py-spy attached
            plan = ClientPlan(server.port, write_mix(server.port, session_id, ids, 0, ops, ANNOTATIONS + WARM_UP))
            load = await run_clients([plan], [server.pid], 300)
            spy.send_signal(2)
            with trio.fail_after(30):
                await spy.wait()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed (exit code {spy.returncode}): is it installed, and allowed to attach?")
    # py-spy keeps sampling for the second it waited before the load and while it stops: those samples
    # are idle waits and land in the epoll stage; the per-request figures below count them in.
    return load.measurement(), breakdown(raw, ops, rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.profile_write", description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=6000, help="requests profiled (default 6000)")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second (default 1000)")
    parser.add_argument("--raw", type=Path, default=Path("build/profile-write.txt"), help="py-spy's raw output")
    options = parser.parse_args(argv)
    options.raw.parent.mkdir(parents=True, exist_ok=True)
    measured, stages = trio.run(profile, options.ops, options.rate, options.raw)
    say(
        f"one client, {options.ops} requests: {measured['ops/s']:.0f} ops/s, p50 {measured['p50 ms']:.3f} ms, "
        f"p99 {measured['p99 ms']:.3f} ms, server CPU {measured['CPU ms/op']:.3f} ms/op"
    )
    say(f"{'stage':<58} ms per request")
    trio_total = 0.0
    for name, ms in stages:
        if name not in _OFF_TRIO:
            trio_total += ms
        say(f"  {name:<56} {ms:7.3f}" + ("  (off the trio thread)" if name in _OFF_TRIO else ""))
    say(f"  {'trio thread, all stages':<56} {trio_total:7.3f}")
    say(f"raw samples: {options.raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
