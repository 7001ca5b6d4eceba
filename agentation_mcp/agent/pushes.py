"""What the server sends its clients unasked as the store changes, in every process sharing it.

The hub publishes this process's commits and, through its tail, every other process's; while any
client is connected, this task follows it and turns each event into notifications:
`resources/list_changed` when a session is created, `resources/updated` for each subscribed resource
the event touches, and, with the channel on, `claude/channel` for each new annotation. With no
client connected it does not follow the hub at all: there is nobody to notify, and following would
wake it (and keep the cross-process tail polling) for every write.
"""

from __future__ import annotations

from contextlib import aclosing
from functools import partial
from typing import Any

import trio

from ..models import Event
from ..store.hub import Hub
from . import channel
from .peers import Peer, Peers
from .uris import uris_touched

LIST_CHANGED = "notifications/resources/list_changed"
UPDATED = "notifications/resources/updated"


def _annotation_id(event: Event) -> str | None:
    payload: Any = event.payload
    if not isinstance(payload, dict):
        return None
    found = payload.get("id") if event.type.startswith("annotation.") else payload.get("annotationId")
    return found if isinstance(found, str) else None


def _subscribed(uri: str, peer: Peer) -> bool:
    return uri in peer.subscriptions


async def run_pushes(
    hub: Hub, peers: Peers, *, with_channel: bool, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Follow the hub while any client is connected, until cancelled, sending each event's notifications."""
    task_status.started()
    while True:
        await peers.wait_for_any()
        async with aclosing(hub.follow(hub.last_published)) as events:
            async for event in events:
                await _push(event, peers, with_channel)
                if not len(peers):
                    break


async def _push(event: Event, peers: Peers, with_channel: bool) -> None:
    if not len(peers):
        return
    listed = event.type in ("session.created", "session.deleted")
    if listed or (with_channel and event.type == "annotation.created"):
        await peers.join_expected()  # these go to every client, one that has not reached the SDK yet too
    if listed:
        await peers.broadcast(LIST_CHANGED)
    annotation_id = _annotation_id(event)
    for uri in uris_touched(event.type, event.session_id, annotation_id):
        await peers.broadcast(UPDATED, {"uri": uri}, to=partial(_subscribed, uri))
    if with_channel and event.type == "annotation.created" and isinstance(event.payload, dict):
        await peers.broadcast(channel.METHOD, channel.channel_params(event.payload))
