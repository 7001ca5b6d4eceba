"""`agentation-mcp watch`: new annotations printed in batches as they arrive.

Events come from the local store (the hub's cross-process tail, which sees
every server's commits) or from a remote server's SSE stream (resumed with
`Last-Event-ID` after a drop). A batch starts with the first new annotation
and collects for the batch window; annotations closed or deleted meanwhile
are left out. It runs until `--timeout` or Ctrl-C, and exits 0 either way.
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import aclosing
from datetime import datetime
from functools import partial

import trio

from ..clients import batches
from ..clients.local import AnnotationClient, LocalClient
from ..clients.watch import follow_remote
from ..errors import AgentationError
from ..models import Event, JsonObject, agent_view
from ..store import connection, reads, schema
from ..store.hub import Hub
from ..store.reads import Reader
from . import output

RETRY_AFTER = 2.0
"""Seconds between tries to reach a remote server that is down."""


def run_watch(args: argparse.Namespace, client: AnnotationClient) -> int:
    try:
        trio.run(partial(_watch, args, client))
    except* KeyboardInterrupt:
        pass  # Ctrl-C is how a watch is meant to end
    finally:
        client.close()
    return 0


async def _watch(args: argparse.Namespace, client: AnnotationClient) -> None:
    send, events = batches.event_channel()
    timeout = math.inf if args.timeout is None else max(args.timeout, 0.0)
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            # Announced once events are followed from this moment on: nothing written after the line is missed.
            if isinstance(client, LocalClient):
                await nursery.start(_local_events, client, send)
            else:
                await nursery.start(_remote_events, args.http_url, args.api_key, args.session, send)
            where = args.http_url or "the local store"
            sys.stderr.write(f"Watching {where} for new annotations (Ctrl-C to stop)\n")
            sys.stderr.flush()
            window = max(args.batch_window, 0.0)
            while True:
                pending = batches.still_pending(await batches.next_batch(events, args.session, window))
                if pending:
                    _print_batch(pending, as_json=args.json)


def _print_batch(annotations: list[JsonObject], *, as_json: bool) -> None:
    if as_json:
        sessions = list(dict.fromkeys(a.get("sessionId") for a in annotations))
        line = {"timeout": False, "count": len(annotations), "sessions": sessions}
        line["annotations"] = [agent_view(a) for a in annotations]
        output.print_json(line, indent=None)
        return
    stamp = datetime.now().strftime("%H:%M:%S")
    count = len(annotations)
    output.print_text(f"-- {count} new annotation{'s' if count != 1 else ''} at {stamp}")
    output.print_text(output.annotations_table(annotations))


async def _local_events(
    client: LocalClient,
    send: trio.MemorySendChannel[Event],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    location = client.location
    if location.path is not None and not location.path.exists():
        conn = connection.open_write_connection(location)  # the store a server would make; watch from its start
        try:
            schema.migrate(conn)
        finally:
            conn.close()
    reader = Reader(connection.open_read_connection(location), None)
    try:
        hub = Hub(partial(reads.events_after, reader), reads.last_sequence(reader))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(hub.run_tail, partial(reads.data_version, reader), fastest=0.05))
            async with aclosing(hub.follow(hub.last_published)) as events:
                task_status.started()
                async for event in events:
                    await send.send(event)
    finally:
        reader.conn.close()


async def _remote_events(
    base_url: str,
    api_key: str | None,
    session: str | None,
    send: trio.MemorySendChannel[Event],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    from ..clients.remote import AsyncRemoteClient

    def reachable(down: AgentationError | None) -> None:
        if down is None:
            sys.stderr.write(f"Connected to {base_url} again\n")
        else:
            sys.stderr.write(f"{down} Retrying every {RETRY_AFTER:g} s.\n")

    remote = AsyncRemoteClient(base_url, api_key)
    try:
        await follow_remote(
            remote, session, send, retry_after=RETRY_AFTER, reachable=reachable, task_status=task_status
        )
    finally:
        with trio.CancelScope(shield=True):
            await remote.aclose()
