"""`doctor`'s checks from presence: is an agent connected, has a toolbar page been seen, was a page refused.

They read the store's presence tables (read-only, no server needed), which
every server process on the store keeps up to date: the MCP clients of every
process, the toolbar pages of the port's owner, and the page origins its
CORS rules refused.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import is_loopback_name, normalize_origin, parse_cors_origins
from ..errors import ConfigError, StoreFault
from ..models import JsonObject
from ..store import connection, presence
from ..store.connection import StoreLocation
from ..store.reads import Reader
from .doctor import FAIL, OK, WARN, Check

PAGE_RECENT = 3600.0  # seconds: a toolbar page seen this recently means the toolbar is set up
REFUSAL_RECENT = 3600.0


def presence_checks(store_path: Path, port: int, now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    status: JsonObject = {"processes": [], "agents": [], "pages": [], "lastPageSeenAt": None, "refusedOrigins": []}
    owner_port = None
    if store_path.exists():
        try:
            conn = connection.open_read_connection(StoreLocation(store_path))
        except Exception as exc:  # the store check says what is wrong with the file
            return [Check("agents", WARN, f"presence could not be read: {exc}")]
        try:
            reader = Reader(conn, None)
            if presence.has_tables(reader):
                status = presence.status(reader, now)
                owner_port = _owner_port(reader, now)
        except StoreFault as exc:
            return [Check("agents", WARN, f"presence could not be read: {exc}")]
        finally:
            conn.close()
    return [_agents(status), _pages(status, owner_port or port, now), *_refusals(status, now)]


def _owner_port(reader: Reader, now: float) -> int | None:
    value = reader.conn.execute(
        "SELECT port FROM presence_processes WHERE owns_port = 1 AND beat_at >= ? ORDER BY beat_at DESC LIMIT 1",
        (now - presence.EXPIRY,),
    ).get
    return value if isinstance(value, int) else None


def _agents(status: JsonObject) -> Check:
    agents = status["agents"]
    if not agents:
        return Check(
            "agents",
            WARN,
            "no MCP client is connected to any agentation server on this store, so nobody reads the annotations",
            "start your agent in the project (once registered, Claude Code starts the server: agentation-mcp init)",
        )
    described = []
    for agent in agents:
        client = agent["client"]
        name = " ".join(part for part in (client.get("name") or "an unnamed client", client.get("version")) if part)
        watching = ", watching" if agent["watching"] else ""
        described.append(f"{name} ({agent['transport']}, pid {agent['pid']}{watching})")
    return Check("agents", OK, f"{len(agents)} connected: {'; '.join(described)}")


def _pages(status: JsonObject, port: int, now: float) -> Check:
    pages = status["pages"]
    if pages:
        return Check("toolbar page", OK, f"connected now: {', '.join(str(p['url']) for p in pages)}")
    hint = f'render the toolbar with the server\'s address: <Agentation endpoint="http://localhost:{port}" />'
    last = status["lastPageSeenAt"]
    seconds = _age(last, now)
    if seconds is not None and seconds <= PAGE_RECENT:
        return Check("toolbar page", OK, f"none connected now; the last was seen {int(seconds // 60)} min ago")
    when = "has ever connected" if last is None else f"was seen in the last hour (the last: {last})"
    detail = (
        f"no toolbar page {when}; without its endpoint prop the toolbar keeps annotations in the browser "
        "and the agent sees none"
    )
    return Check("toolbar page", WARN, detail, hint)


def _refusals(status: JsonObject, now: float) -> list[Check]:
    """A FAIL for each page origin refused in the last hour that the rules still refuse: those of the live
    server that refused it, or, with none running, those of this environment."""
    try:
        any_origin, extra = parse_cors_origins(os.environ.get("AGENTATION_CORS_ORIGINS"))
    except ConfigError:
        any_origin, extra = False, frozenset()
    checks = []
    for refused in status["refusedOrigins"]:
        seconds = _age(refused["lastAt"], now)
        if seconds is None or seconds > REFUSAL_RECENT:
            continue
        if not refused["byLiveProcess"] and _allowed(refused["origin"], any_origin, extra):
            continue
        origin = refused["origin"]
        detail = (
            f"a page at {origin} was refused by the server's CORS rules ({refused['count']} requests, "
            f"the last {int(seconds // 60)} min ago, {refused['path']})"
        )
        fix = (
            f"add it to the server's environment, AGENTATION_CORS_ORIGINS={_joined(origin, extra)}, "
            "and restart the server"
        )
        checks.append(Check("page origin", FAIL, detail, fix))
    return checks


def _allowed(origin: str, any_origin: bool, extra: frozenset[str]) -> bool:
    if any_origin:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    return normalized in extra or is_loopback_name(urlsplit(normalized).hostname or "")


def _joined(origin: str, extra: frozenset[str]) -> str:
    return ",".join(sorted({*extra, normalize_origin(origin) or origin}))


def _age(stamp: Any, now: float) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return now - moment.timestamp()
