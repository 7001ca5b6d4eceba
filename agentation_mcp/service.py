"""The composition root: opens the store, starts the writer and the front ends.

    trio.run(serve)
    └── store nursery: the writer (started once the schema is migrated)
        └── front-end nursery: MCP over stdio; the HTTP API, SSE and /mcp on
            the port (or waiting for it), with webhooks; the hub's
            cross-process tail; the presence heartbeat; the signal watcher

stdin EOF, SIGTERM or SIGINT cancel the front ends, which frees the port;
the writer is then closed, commits what is queued, and the connections are
closed. With `--http-only` stdin is never read: only a signal stops it.

Start-up order: stdio answers first. The MCP SDK is not imported before it
(see `agent.stdio`). The HTTP side is imported on a worker thread once the
client's first message is answered, or after `HTTP_WAIT` seconds without one
(at once when no MCP client can be on stdin); its `/mcp` app, which needs the
SDK, is built by the first request to `/mcp`.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from .agent.features import Features
from .agent.presence import StdioPresence, recorded
from .agent.stdio import LOADING, load_sdk, pollable, serve_stdio
from .agent.tools import Handler, LocalBackend, RemoteBackend, tool_handlers
from .config import Settings, display_url
from .models import Event, to_json
from .store import connection, reads, schema, transactions
from .store.connection import StoreLocation
from .store.heartbeat import Heartbeat
from .store.hub import Hub
from .store.reads import Reader
from .store.writer import Writer, run_writer

log = logging.getLogger(__name__)
HTTP_WAIT = 0.5  # seconds the HTTP side waits for stdio's first answer before it loads anyway


async def _cancel_on_signal(
    scope: trio.CancelScope, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("[MCP] %s received, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


async def _log_events(hub: Hub, path: Path, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Append every event the hub publishes to `path`, one JSON line each (AGENTATION_EVENT_LOG).

    A plain subscriber, so the file shows exactly what listeners receive; a
    lag is written as its own line and the log resumes from the table.
    """

    def line(event: Event) -> str:
        return to_json({"sequence": event.sequence, "type": event.type, "sessionId": event.session_id}) + "\n"

    with path.open("a", encoding="utf-8") as out:
        after = hub.last_published
        while True:
            with hub.subscribe() as sub:
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                for event in hub.backlog(after):
                    out.write(line(event))
                    after = event.sequence
                out.flush()
                async for event in sub.receive:
                    if event.sequence > after:
                        out.write(line(event))
                        out.flush()
                        after = event.sequence
            out.write(to_json({"lagged": after}) + "\n")
            out.flush()


def _load_http() -> ModuleType:
    """The HTTP side: one of the two deliberate lazy imports, so stdio answers first."""
    with LOADING:
        from .web import app as web_app

    return web_app


def _load_mcp_app() -> ModuleType:
    """The `/mcp` app's module, which loads the SDK: the other lazy import, made by `/mcp`'s first request."""
    with LOADING:
        load_sdk()
        from .agent import http as agent_http

    return agent_http


Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class _McpOnDemand:
    """The `/mcp` app, built by its first request: the SDK loads on a worker thread then, not at start-up.

    Its session manager runs in `nursery` from then on, as long as the HTTP side does.
    """

    def __init__(self, nursery: trio.Nursery, build: Callable[[ModuleType], tuple[Asgi, Any]]) -> None:
        self._nursery = nursery
        self._build = build
        self._app: Asgi | None = None
        self._lock = trio.Lock()

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await self._nursery.start(self._serve)
        await self._app(scope, receive, send)

    async def _serve(self, task_status: trio.TaskStatus[Asgi]) -> None:
        agent_http = await trio.to_thread.run_sync(_load_mcp_app)
        app, manager = self._build(agent_http)
        async with manager.run():
            task_status.started(app)
            await trio.sleep_forever()


async def _run_http(
    settings: Settings,
    writer: Writer,
    hub: Hub,
    reader: Reader,
    features: Features,
    begin: trio.Event,
    presence: Heartbeat,
    store: str,
) -> None:
    """Once `begin` is set (or after `HTTP_WAIT`), import the HTTP side on a worker thread, so stdio answers
    meanwhile, then serve it with `/mcp` mounted (built by its first request)."""
    with trio.move_on_after(HTTP_WAIT):
        await begin.wait()
    web_app = await trio.to_thread.run_sync(_load_http)

    def build(agent_http: ModuleType) -> tuple[Asgi, Any]:
        app, manager = agent_http.build_http_mcp(
            writer,
            hub,
            reader,
            idle_timeout=settings.mcp_idle_seconds,
            max_arguments=settings.max_body_bytes,
            features=features,
            presence=presence,
        )
        return app, manager

    async with trio.open_nursery() as nursery:
        await web_app.run_http(settings, writer, hub, reader, _McpOnDemand(nursery, build), presence, store)
        nursery.cancel_scope.cancel()


def _raise_unusable(exc: Exception, location: StoreLocation) -> None:
    """Raise the one-line `StoreUnusable` for a store that cannot be opened; return for anything else."""
    problem = connection.unusable(exc, location)
    if problem is not None:
        raise problem from exc


def _open_store(write_conn: connection.Connection, location: StoreLocation, settings: Settings) -> None:
    """Migrate the schema and prune old events: the writes made before serving."""
    schema.migrate(write_conn)
    if location.in_memory:
        log.info("[Store] Using in-memory store (AGENTATION_STORE=memory)")
        return
    pruned = transactions.prune_events(write_conn, settings.event_retention_days)
    log.info("[Store] Using SQLite store (%s)%s", location.path, f", pruned {pruned} old events" if pruned else "")


async def _serve_remote(settings: Settings, http_url: str) -> bool:
    """MCP over stdio with the tools carried out on the server at `http_url`: no local store, no HTTP."""
    from .clients.remote import AsyncRemoteClient

    remote = AsyncRemoteClient(http_url, settings.api_key)
    stdin_closed = False
    try:
        async with trio.open_nursery() as front:
            await front.start(_cancel_on_signal, front.cancel_scope)
            log.info("[MCP] Agentation MCP server started on stdio (tools on %s)", http_url)
            gc.freeze()
            backend = RemoteBackend(remote)
            features = Features(backend)
            await front.start(features.run, None)
            await _serve_tools(tool_handlers(backend), settings, features, trio.Event())
            stdin_closed = True
            front.cancel_scope.cancel()
    finally:
        await remote.aclose()
    return stdin_closed


async def serve(settings: Settings) -> bool:
    """Run the server until stdin closes or a signal arrives; True when it stopped because stdin closed."""
    if settings.http_url is not None:
        return await _serve_remote(settings, settings.http_url)
    stdin_closed = False
    location = StoreLocation.memory() if settings.store_in_memory else StoreLocation(settings.store_path)
    try:
        write_conn = connection.open_write_connection(location)
    except Exception as exc:
        _raise_unusable(exc, location)
        raise
    read_conn = None
    wal_sync = None
    try:
        try:
            _open_store(write_conn, location, settings)
        except Exception as exc:
            _raise_unusable(exc, location)
            raise
        read_conn = connection.open_read_connection(location)
        wal_sync = connection.WalSync.attach(write_conn, location)
        lock_wait = connection.LockWait()
        reader = Reader(read_conn)
        hub = Hub(partial(reads.events_after, reader), reads.last_sequence(reader))
        async with trio.open_nursery() as store_nursery:
            writer: Writer = await store_nursery.start(
                partial(
                    run_writer,
                    write_conn,
                    hub,
                    in_thread=not location.in_memory,
                    durable=wal_sync,
                    quick_flush=wal_sync,
                    lock_wait=lock_wait,
                )
            )
            try:
                async with trio.open_nursery() as front:
                    await front.start(_cancel_on_signal, front.cancel_scope)
                    if not location.in_memory:
                        front.start_soon(hub.run_tail, partial(reads.data_version, reader))
                    if settings.event_log is not None:
                        await front.start(_log_events, hub, settings.event_log)
                    backend = LocalBackend(writer, hub, reader)
                    features = Features(backend, with_channel=settings.channel)
                    await front.start(features.run, hub)
                    presence = Heartbeat()
                    await front.start(presence.run, writer, reader)
                    store = "memory" if location.path is None else str(location.path)
                    stdio_answered = trio.Event()
                    if settings.http_only or not pollable(0):
                        stdio_answered.set()  # no MCP client to answer first
                    if not settings.mcp_only:
                        front.start_soon(
                            _run_http, settings, writer, hub, reader, features, stdio_answered, presence, store
                        )
                    if settings.http_only:
                        log.info("[HTTP] Serving HTTP only: stdin is not read; stop with Ctrl-C or SIGTERM")
                        gc.freeze()
                        await trio.sleep_forever()
                    where = (
                        "no HTTP" if settings.mcp_only else f"HTTP: {display_url(settings.bind_host, settings.port)}"
                    )
                    log.info("[MCP] Agentation MCP server started on stdio (%s)", where)
                    # Everything built so far (modules, the SDK's models) lives as long as the process:
                    # keep it out of the collector's full passes, which otherwise show up as latency spikes.
                    gc.freeze()
                    await _serve_tools(
                        tool_handlers(backend), settings, features, stdio_answered, StdioPresence(presence)
                    )
                    stdin_closed = True
                    front.cancel_scope.cancel()
            finally:
                # What is queued is still committed, unless another process holds the store locked: then
                # it fails at once instead of holding up the exit (its callers are gone).
                lock_wait.stop()
                writer.close()
    finally:
        closers = [wal_sync.close if wal_sync else None, read_conn.close if read_conn else None, write_conn.close]
        close_all([closer for closer in closers if closer is not None])
    return stdin_closed


async def _serve_tools(
    handlers: Mapping[str, Handler],
    settings: Settings,
    features: Features,
    answered: trio.Event,
    presence: StdioPresence | None = None,
) -> None:
    """The tools on stdio: the handshake and quick calls answered directly, the rest (and every other
    feature) through the SDK once needed; `answered` is set once the client's first message is answered.
    With `presence`, the client is recorded from its `initialize` until stdin closes."""
    if presence is not None:
        handlers = recorded(handlers, presence.agent)
    try:
        await serve_stdio(
            handlers,
            features,
            max_arguments=settings.max_body_bytes,
            answered=answered.set,
            initialized=presence.initialized if presence is not None else None,
        )
    finally:
        if presence is not None:
            presence.disconnected()


def close_all(closers: list[Callable[[], object]]) -> None:
    """Call each of `closers`; one that fails is logged, so it neither stops the others nor hides the error
    that brought the server down."""
    for close in closers:
        try:
            close()
        except Exception as exc:
            log.warning("[Store] Closing the store failed: %s", exc)
