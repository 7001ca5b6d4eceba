"""Server-sent events: the frames on the wire and the `Last-Event-ID` cursor."""

from __future__ import annotations

import re
from typing import Any

from .models import Event, to_json

CONNECTED = b": connected\n\n"
PING = b": ping\n\n"
PING_INTERVAL = 30.0

_LEADING_INT = re.compile(r"^\s*([+-]?\d+)")


def connected(domain: str | None = None) -> bytes:
    return CONNECTED if domain is None else f": connected to domain {domain}\n\n".encode()


def event_frame(event: Event) -> bytes:
    """`event: <type>`, `id: <sequence>`, `data: <the event as compact JSON>`."""
    return f"event: {event.type}\nid: {event.sequence}\ndata: {to_json(event.to_wire())}\n\n".encode()


def sync_frame(data: dict[str, Any], event_type: str, sequence: int | None) -> bytes:
    """A frame for the agent's initial sync; `sync.complete` has no id line."""
    id_line = "" if sequence is None else f"id: {sequence}\n"
    return f"event: {event_type}\n{id_line}data: {to_json(data)}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The cursor a reconnecting client asks to resume after, or None to start live.

    Read like JavaScript's parseInt, as the reference does: `"12abc"` is 12;
    a negative number replays everything; anything else starts live.
    """
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    if match is None:
        return None
    return max(int(match.group(1)), 0)
