"""`agentation-mcp watch`: new annotations printed in batches as they arrive.

Events come from the local store (the hub's cross-process tail, which sees
every server's commits) or from a remote server's SSE stream (resumed with
`Last-Event-ID` after a drop). A batch starts with the first new annotation
and collects for the batch window; annotations closed or deleted meanwhile
are left out. It runs until `--timeout` or Ctrl-C, and exits 0 either way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import datetime
from functools import partial
from typing import cast

import trio

from ..clients.local import AnnotationClient, LocalClient
from ..models import ANNOTATION_CREATED, ANNOTATION_DELETED, ANNOTATION_UPDATED, JsonObject, agent_view
from ..store import connection, reads, schema
from ..store.hub import Hub
from ..store.reads import Reader
from . import output

Seen = tuple[str, str, JsonObject]
"""(event type, session id, payload) of one event."""
Batch = list[JsonObject]


def run_watch(args: argparse.Namespace, client: AnnotationClient) -> int:
    try:
        trio.run(partial(_watch, args, client))
    except* KeyboardInterrupt:
        pass  # Ctrl-C is how a watch is meant to end
    finally:
        client.close()
    return 0


async def _watch(args: argparse.Namespace, client: AnnotationClient) -> None:
    send, receive = trio.open_memory_channel[Seen](math.inf)
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
            emit = partial(_print_batch, as_json=args.json)
            await _batches(receive, args.session, max(args.batch_window, 0.0), emit)


async def _batches(
    receive: trio.MemoryReceiveChannel[Seen],
    session: str | None,
    window: float,
    emit: Callable[[list[JsonObject]], None],
) -> None:
    """`emit` each batch of new annotations that are still pending when its window ends."""
    async for kind, session_id, payload in receive:
        if kind != ANNOTATION_CREATED or (session is not None and session_id != session):
            continue
        batch: dict[str, JsonObject] = {payload["id"]: payload}
        with trio.move_on_after(window):
            async for kind, session_id, payload in receive:
                created = kind == ANNOTATION_CREATED and (session is None or session_id == session)
                if created or (kind == ANNOTATION_UPDATED and payload.get("id") in batch):
                    batch[payload["id"]] = payload
                elif kind == ANNOTATION_DELETED:
                    batch.pop(str(payload.get("id")), None)
        pending = [a for a in batch.values() if a.get("status", "pending") == "pending"]
        if pending:
            emit(pending)


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
    send: trio.MemorySendChannel[Seen],
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
                    send.send_nowait((event.type, event.session_id, event.payload))
    finally:
        reader.conn.close()


async def _remote_events(
    base_url: str,
    api_key: str | None,
    session: str | None,
    send: trio.MemorySendChannel[Seen],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    import httpx2

    path = "/events" if session is None else f"/sessions/{session}/events"
    headers = {"x-api-key": api_key} if api_key else {}
    last_id: str | None = None
    said_down = False
    async with httpx2.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=None) as http:
        while True:
            request_headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with http.stream("GET", path, headers=request_headers) as response:
                    if response.status_code != 200:
                        raise httpx2.HTTPError(f"{response.status_code} from {path}")
                    task_status.started()
                    task_status = trio.TASK_STATUS_IGNORED
                    if said_down:
                        sys.stderr.write(f"Connected to {base_url} again\n")
                        said_down = False
                    fields: dict[str, str] = {}
                    async with aclosing(cast(AsyncGenerator[str, None], response.aiter_lines())) as lines:
                        async for line in lines:
                            if line == "":
                                if "data" in fields:
                                    event = json.loads(fields["data"])
                                    last_id = fields.get("id", last_id)
                                    send.send_nowait((event["type"], event.get("sessionId", ""), event["payload"]))
                                fields = {}
                            elif not line.startswith(":"):
                                name, _, value = line.partition(":")
                                fields[name] = value.removeprefix(" ")
            except httpx2.HTTPError as exc:
                task_status.started()  # watching begins anyway; events come once the server is back
                task_status = trio.TASK_STATUS_IGNORED
                if not said_down:
                    sys.stderr.write(f"Cannot reach {base_url} ({exc or type(exc).__name__}); retrying every 2 s\n")
                    said_down = True
            await trio.sleep(2)
