"""Server-sent events: the frames on the wire and the `Last-Event-ID` cursor."""

from __future__ import annotations

import re
from json.encoder import encode_basestring as _string
from typing import Any
from urllib.parse import urlsplit

from ..models import Event, to_json

CONNECTED = b": connected\n\n"
PING = b": ping\n\n"
PING_INTERVAL = 30.0

_LEADING_INT = re.compile(r"^\s*([+-]?\d+)")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def url_host(url: str | None) -> str | None:
    """The `host[:port]` of a page URL, as JavaScript's `URL.host` gives it (what `?domain=` matches)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in _DEFAULT_PORTS:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return host if port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"


def connected(domain: str | None = None) -> bytes:
    return CONNECTED if domain is None else f": connected to domain {domain}\n\n".encode()


def frame(event_type: str, session_id: str, sequence: int, payload_json: str, timestamp: str) -> bytes:
    """`event: <type>`, `id: <sequence>`, `data: <the event as compact JSON>`, from the payload's JSON text.

    The data line is what `to_json(event.to_wire())` gives, put together
    without decoding and encoding the payload again.
    """
    return (
        f"event: {event_type}\nid: {sequence}\ndata: "
        f'{{"type":{_string(event_type)},"sessionId":{_string(session_id)},"payload":{payload_json},'
        f'"sequence":{sequence},"timestamp":{_string(timestamp)}}}\n\n'
    ).encode()


FRAME_SQL = (
    "'event: ' || type || char(10) || 'id: ' || sequence || char(10) || "
    """'data: {"type":' || json_quote(type) || ',"sessionId":' || json_quote(session_id) || """
    """',"payload":' || payload || ',"sequence":' || sequence || ',"timestamp":' || json_quote(timestamp) || """
    "'}' || char(10) || char(10)"
)
"""`frame` as an SQL expression over the `events` table's columns, so a replay is framed by SQLite.

`json_quote` escapes a string exactly as `encode_basestring` does."""


def event_frame(event: Event) -> bytes:
    payload_json = event.payload_json if event.payload_json is not None else to_json(event.payload)
    return frame(event.type, event.session_id, event.sequence, payload_json, event.timestamp)


def sync_frame(data: dict[str, Any], event_type: str, sequence: int | None) -> bytes:
    """A frame for the agent's initial sync; `sync.complete` has no id line."""
    id_line = "" if sequence is None else f"id: {sequence}\n"
    return f"event: {event_type}\n{id_line}data: {to_json(data)}\n\n".encode()


MAX_SEQUENCE = 2**63 - 1  # SQLite's largest integer


def parse_last_event_id(value: str | None) -> int | None:
    """The cursor a reconnecting client asks to resume after, or None to start live.

    Read like JavaScript's parseInt, as the reference does: `"12abc"` is 12;
    a negative number replays everything; anything else, a number past the
    largest sequence the store can hold included, starts live.
    """
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    if match is None:
        return None
    number = match.group(1)
    if len(number.lstrip("+-")) > len(str(MAX_SEQUENCE)):
        return None if not number.startswith("-") else 0
    cursor = int(number)
    return None if cursor > MAX_SEQUENCE else max(cursor, 0)
