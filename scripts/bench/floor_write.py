"""The floor under one client's write: what the store's own write costs behind the leanest trio HTTP loop.

    python -m scripts.bench.floor_write [--rounds 3] [--ops 4000]

Runs the one-client write mix of `write-mix` against four servers in turn,
each round in the same order, and prints each one's medians and their ratios
to npm's:

* `floor, no flush`: this package's own command validation, transaction code
  (`store.changes`) and schema, committed on the trio thread behind a bare
  HTTP loop (raw non-blocking socket, httptools, orjson: one task per
  connection, no writer task, hub, gate, log line or headers beyond the
  length), and the WAL never flushed: the npm server's durability;
* `floor`: the same, with the WAL flushed (`WalSync.flush`) before each
  answer, as our server does;
* `ours`: `agentation-mcp server`;
* `npm`: the npm server 1.3.2, when installed (`scripts/install-reference`).

The first two are a measuring device only, never a way to run the product:
they answer the write mix's four requests and `/health`, nothing else, with
no checks on Host, Origin or key. The distance from `floor, no flush` to
npm is what Python, trio and this store code cost against node; from
`floor` to `floor, no flush`, what the flush costs a write on this disk;
from `ours` to `floor`, what the server's own parts cost.

`python -m scripts.bench.floor_write serve --port P [--no-flush]` runs a floor
server (the bench starts it with HOME set to a fresh folder).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httptools
import orjson
import trio

from agentation_mcp import commands
from agentation_mcp.store import connection, schema
from agentation_mcp.store.changes import append_events, apply
from agentation_mcp.store.connection import StoreLocation, WalSync

from .api import set_up, write_mix
from .loadgen import ClientPlan, run_clients
from .runner import FULL, Context, Target, http_server, npm_target, our_target, ratio, say

ANNOTATIONS = 256
WARM_UP = 600
TIME_CAP = 300.0
FIGURES = ("ops/s", "p50 ms", "p99 ms", "CPU ms/op")

# --- the floor server --------------------------------------------------------------------

_CREATE = re.compile(rb"^/sessions/([^/]+)/annotations$")
_ANNOTATION = re.compile(rb"^/annotations/([^/]+)$")
_THREAD = re.compile(rb"^/annotations/([^/]+)/thread$")


class _Store:
    def __init__(self, flush: bool) -> None:
        folder = Path(os.environ["HOME"]) / ".agentation"
        folder.mkdir(parents=True, exist_ok=True)
        location = StoreLocation(folder / "store.db")
        self.conn = connection.open_write_connection(location)
        schema.migrate(self.conn)
        self.sync = WalSync.attach(self.conn, location) if flush else None
        if not flush:
            self.conn.pragma("synchronous", "NORMAL")

    def commit(self, command: commands.Command) -> bytes:
        self.conn.execute("BEGIN IMMEDIATE")
        result, pending = apply(self.conn, command)
        events = append_events(self.conn, pending)
        self.conn.execute("COMMIT")
        if self.sync is not None:
            self.sync.flush()
        for event in events:
            if event.payload is result and event.payload_json is not None:
                return event.payload_json.encode()
        return orjson.dumps(result)

    def route(self, method: bytes, url: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"GET":
            return 200, b'{"status":"ok"}'
        data: Any = orjson.loads(body) if body else None
        if method == b"POST" and url == b"/sessions":
            return 201, self.commit(commands.CreateSession(url=data["url"]))
        if method == b"POST" and (found := _CREATE.match(url)):
            return 201, self.commit(commands.CreateAnnotation.from_body(found[1].decode(), data))
        if method == b"PATCH" and (found := _ANNOTATION.match(url)):
            return 200, self.commit(commands.UpdateAnnotation.from_body(found[1].decode(), data))
        if method == b"POST" and (found := _THREAD.match(url)):
            message = commands.NewThreadMessage(data["role"], data["content"])
            return 201, self.commit(commands.AddThreadMessage(found[1].decode(), message))
        return 404, b"{}"


class _Request:
    def __init__(self) -> None:
        self.url = b""
        self.body = bytearray()
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


async def _serve_connection(store: _Store, stream: trio.SocketStream) -> None:
    sock = socket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)
    with sock:
        request = _Request()
        parser = httptools.HttpRequestParser(request)
        while True:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            if not data:
                return
            parser.feed_data(data)
            if request.complete:
                status, body = store.route(parser.get_method(), request.url, bytes(request.body))
                head = b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                sock.sendall(head % (status, len(body)) + body)
                request = _Request()
                parser = httptools.HttpRequestParser(request)


def serve(port: int, flush: bool) -> None:
    store = _Store(flush)

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(store, stream)

    async def listen() -> None:
        await trio.serve_tcp(handler, port, host="127.0.0.1")

    trio.run(listen)


# --- the comparison ------------------------------------------------------------------------


ROOT = Path(__file__).resolve().parents[2]


def _floor_target(flush: bool) -> Target:
    argv = (sys.executable, "-m", "scripts.bench.floor_write", "serve", *(() if flush else ("--no-flush",)))
    return Target("ours", argv, "scripts.bench.floor_write")


def _importable_from_anywhere() -> None:
    """Servers run in their HOME folder: let them import `scripts` from this checkout (after anything
    already on PYTHONPATH, so another version of the package put there still wins)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT)])


async def _one_client(ctx: Context, target: Target, label: str, ops: int) -> dict[str, float]:
    async with http_server(ctx, target, label) as server:
        (session_id,), ids = await set_up(server.port, ANNOTATIONS)
        warm = write_mix(server.port, session_id, ids, 0, WARM_UP, ANNOTATIONS)
        await run_clients([ClientPlan(server.port, warm)], [server.pid], TIME_CAP)
        plan = write_mix(server.port, session_id, ids, 0, ops, ANNOTATIONS + WARM_UP)
        load = await run_clients([ClientPlan(server.port, plan)], [server.pid], TIME_CAP)
    measured = load.measurement()
    if measured["errors"]:
        raise SystemExit(f"{label}: {measured['errors']:.0f} requests failed")
    return measured


async def compare(rounds: int, ops: int) -> dict[str, dict[str, float]]:
    _importable_from_anywhere()
    npm, why = npm_target()
    servers: list[tuple[str, Target]] = [
        ("floor, no flush", _floor_target(flush=False)),
        ("floor", _floor_target(flush=True)),
        ("ours", our_target()),
    ]
    if npm is None:
        say(f"npm: left out ({why})")
    else:
        servers.append(("npm", npm))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in servers}
    with tempfile.TemporaryDirectory(prefix="agentation-floor-") as tmp:
        ctx = Context(counts=FULL, rounds=rounds, workdir=Path(tmp), targets=[target for _, target in servers])
        for r in range(rounds):
            for name, target in servers:
                measured = await _one_client(ctx, target, f"floor-{r}-{len(results[name])}", ops)
                results[name].append(measured)
                figures = ", ".join(f"{key} {measured[key]:.3f}" for key in FIGURES)
                say(f"  round {r + 1}: {name:<16} {figures}")
    return {name: {key: statistics.median(m[key] for m in runs) for key in FIGURES} for name, runs in results.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        served = argparse.ArgumentParser(prog="python -m scripts.bench.floor_write serve")
        served.add_argument("--port", type=int, required=True)
        served.add_argument("--no-flush", action="store_true")
        options = served.parse_args(args[1:])
        serve(options.port, flush=not options.no_flush)
        return 0
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.floor_write", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each server once a round (default 3)")
    parser.add_argument("--ops", type=int, default=4000, help="requests measured per run (default 4000)")
    options = parser.parse_args(args)
    medians = trio.run(compare, options.rounds, options.ops)
    say(f"\none client's write mix, medians of {options.rounds} rounds (and ratios to npm where it ran):")
    npm = medians.get("npm")
    for name, figures in medians.items():
        cells = []
        for key in FIGURES:
            cell = f"{key} {figures[key]:.3f}"
            if npm is not None and name != "npm":
                cell += f" ({ratio(figures[key], npm[key]):.2f}x)"
            cells.append(cell)
        say(f"  {name:<16} " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
