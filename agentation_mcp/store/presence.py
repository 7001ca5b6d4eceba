"""Presence in the store: which server processes run, which MCP clients and toolbar pages they serve.

Every process on the store writes its own rows (`record`, a `RecordPresence`
command of its heartbeat, see `heartbeat`) and reads everyone's (`status`),
so the process that owns the HTTP port can tell about the MCP clients of
every other one. The tables are our own (`presence_*`, schema version 4); the
reference's tables are never touched.

A process is present while its heartbeat is fresh: `beat_at` within
`EXPIRY` seconds, and, on this host, its pid still a running process (so a
process that exits cleanly, or is killed, leaves at once where that can be
told, and within `EXPIRY` seconds everywhere). Its agents and pages are
present while it is. Each heartbeat also deletes what long-dead processes
left behind.

Presence rows go through the writer like every other change (`RecordPresence`
and `EndPresence` commands), so each process keeps one write connection and
one transaction at a time: presence never competes with annotation writes for
the write lock inside a process, never splits or reorders their batches, and
takes the same path through a busy or faulty store. What presence does not
need is durability: the next heartbeat rewrites it, so the writer does not
flush the WAL (fsync) for a batch that caused no event. A heartbeat every few
seconds is then one small transaction without a disk flush, and the next
annotation write's flush covers it. (A second, unflushed connection was the
alternative; it would have competed with the writer for the lock.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from .. import commands as c
from ..models import JsonObject, from_json, to_json
from .faults import mapped
from .reads import Reader, rows

EXPIRY = 6.0
"""Seconds after its last heartbeat that a process (and what it served) counts as gone."""
FORGET_AFTER = 600.0
"""Seconds after which a dead process's rows are deleted by the next heartbeat of any process."""
PAGE_HISTORY_DAYS = 7
STATUSES = ("pending", "acknowledged", "resolved", "dismissed")
HOST = socket.gethostname()


def record(conn: apsw.Connection, cmd: c.RecordPresence) -> None:
    """Replace this process's rows with `cmd`'s snapshot (inside the writer's transaction)."""
    p = cmd.process
    conn.execute(
        "INSERT OR REPLACE INTO presence_processes (instance, pid, host, version, started_at, owns_port, port, "
        "detail, beat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (p.instance, p.pid, p.host, p.version, p.started_at, int(p.owns_port), p.port, to_json(p.detail), cmd.beat_at),
    )
    conn.execute("DELETE FROM presence_agents WHERE instance = ?", (p.instance,))
    if cmd.agents:
        conn.executemany(
            "INSERT OR REPLACE INTO presence_agents (id, instance, client_name, client_version, transport, "
            "connected_at, last_call_at, watching, watching_session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    a.id,
                    p.instance,
                    a.client_name,
                    a.client_version,
                    a.transport,
                    a.connected_at,
                    a.last_call_at,
                    int(a.watching),
                    a.watching_session_id,
                )
                for a in cmd.agents
            ],
        )
    conn.execute("DELETE FROM presence_pages WHERE instance = ?", (p.instance,))
    if cmd.pages:
        seen = iso(cmd.beat_at)
        conn.executemany(
            "INSERT OR REPLACE INTO presence_pages (id, instance, session_id, url, connected_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(g.id, p.instance, g.session_id, g.url, g.connected_at, seen) for g in cmd.pages],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO presence_pages_seen (url, session_id, last_seen_at) VALUES (?, ?, ?)",
            [(g.url or "", g.session_id, seen) for g in cmd.pages],
        )
    if cmd.refused:
        conn.executemany(
            "INSERT OR REPLACE INTO presence_refused_origins (origin, instance, path, count, last_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r.origin, p.instance, r.path, r.count, r.last_at) for r in cmd.refused],
        )
    _forget_the_dead(conn, cmd.beat_at)


def end(conn: apsw.Connection, cmd: c.EndPresence) -> None:
    """Delete a process's rows as it stops."""
    for table in ("presence_agents", "presence_pages", "presence_processes"):
        conn.execute(f"DELETE FROM {table} WHERE instance = ?", (cmd.instance,))


def _forget_the_dead(conn: apsw.Connection, now: float) -> None:
    dead = now - FORGET_AFTER
    conn.execute("DELETE FROM presence_processes WHERE beat_at < ?", (dead,))
    for table in ("presence_agents", "presence_pages"):
        conn.execute(f"DELETE FROM {table} WHERE instance NOT IN (SELECT instance FROM presence_processes)")
    conn.execute("DELETE FROM presence_pages_seen WHERE last_seen_at < ?", (iso(now - PAGE_HISTORY_DAYS * 86400),))
    conn.execute("DELETE FROM presence_refused_origins WHERE last_at < ?", (iso(now - 86400),))


def iso(seconds: float) -> str:
    """Seconds since the epoch as an ISO timestamp like `now_iso`'s."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pid_gone(pid: int, host: str) -> bool:
    """Whether process `pid` of `host` has certainly ended (exited, or a zombie); False when this host cannot tell.

    Only a process recorded under this host's name is looked up (a container sharing the store has a host
    name, and pids, of its own); for the others the heartbeat alone decides.
    """
    if host != HOST:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not _signalable(pid)
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X")


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@mapped
def has_tables(src: Reader) -> bool:
    """Whether the store has presence at all (a store no server of version 4 or later has opened has not)."""
    return src.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'presence_processes'").get is not None


def _live(conn: apsw.Connection, now: float, gone: Callable[[int, str], bool]) -> dict[str, JsonObject]:
    """The rows of the processes present now, by instance."""
    live: dict[str, JsonObject] = {}
    for row in rows(conn, "SELECT * FROM presence_processes WHERE beat_at >= ? ORDER BY started_at", (now - EXPIRY,)):
        if not gone(row["pid"], row["host"]):
            live[row["instance"]] = row
    return live


def _agents(conn: apsw.Connection, live: dict[str, JsonObject]) -> list[JsonObject]:
    return [
        {**row, "pid": live[row["instance"]]["pid"]}
        for row in rows(conn, "SELECT * FROM presence_agents ORDER BY connected_at, id")
        if row["instance"] in live
    ]


@mapped
def agents_present(src: Reader, now: float, *, gone: Callable[[int, str], bool] = pid_gone) -> list[JsonObject]:
    """The stored rows of the agents present now (with their process's `pid`), for the port owner's log."""
    if not has_tables(src):
        return []
    return _agents(src.conn, _live(src.conn, now, gone))


@mapped
def status(src: Reader, now: float, *, gone: Callable[[int, str], bool] = pid_gone) -> JsonObject:
    """The presence parts of the status document: `processes`, `agents`, `pages`, `counts`, and besides them
    `lastPageSeenAt` (the latest sighting of any toolbar page) and `refusedOrigins`."""
    out: JsonObject = {"processes": [], "agents": [], "pages": [], "counts": counts(src)}
    out["lastPageSeenAt"] = None
    out["refusedOrigins"] = []
    if not has_tables(src):
        return out
    conn = src.conn
    live = _live(conn, now, gone)
    ordered = sorted(live.values(), key=lambda r: (not r["owns_port"], r["started_at"]))
    out["processes"] = [{"pid": r["pid"], "ownsPort": bool(r["owns_port"]), "version": r["version"]} for r in ordered]
    out["agents"] = [
        {
            "client": {"name": row["client_name"], "version": row["client_version"]},
            "transport": row["transport"],
            "pid": row["pid"],
            "connectedAt": row["connected_at"],
            "lastCallAt": row["last_call_at"],
            "watching": bool(row["watching"]),
            "watchingSessionId": row["watching_session_id"],
        }
        for row in _agents(conn, live)
    ]
    for row in rows(conn, "SELECT * FROM presence_pages ORDER BY connected_at, id"):
        if row["instance"] in live:
            out["pages"].append(
                {
                    "sessionId": row["session_id"],
                    "url": row["url"],
                    "connectedAt": row["connected_at"],
                    "lastSeenAt": row["last_seen_at"],
                }
            )
    out["lastPageSeenAt"] = conn.execute("SELECT MAX(last_seen_at) FROM presence_pages_seen").get
    out["refusedOrigins"] = [
        {
            "origin": row["origin"],
            "path": row["path"],
            "count": row["count"],
            "lastAt": row["last_at"],
            "byLiveProcess": row["instance"] in live,
        }
        for row in rows(conn, "SELECT * FROM presence_refused_origins ORDER BY last_at DESC")
    ]
    return out


@mapped
def owner_detail(src: Reader, now: float, *, gone: Callable[[int, str], bool] = pid_gone) -> JsonObject | None:
    """The `detail` the live port owner recorded (its `/status` keys and start), or None without one."""
    if not has_tables(src):
        return None
    for row in rows(src.conn, "SELECT * FROM presence_processes WHERE owns_port = 1 AND beat_at >= ?", (now - EXPIRY,)):
        if not gone(row["pid"], row["host"]):
            detail: Any = from_json(row["detail"]) if row["detail"] else {}
            return {**(detail if isinstance(detail, dict) else {}), "startedAt": row["started_at"]}
    return None


@mapped
def counts(src: Reader) -> JsonObject:
    """How many sessions, and annotations in each status."""
    out: JsonObject = {"sessions": src.conn.execute("SELECT COUNT(*) FROM sessions").get or 0}
    by_status: dict[Any, Any] = dict(
        src.conn.execute("SELECT status, COUNT(*) FROM annotations GROUP BY status").fetchall()  # type: ignore[arg-type]
    )
    for status_name in STATUSES:
        out[status_name] = by_status.get(status_name, 0)
    return out
