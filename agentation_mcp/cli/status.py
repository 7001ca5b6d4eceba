"""`agentation-mcp status`: who is connected, on the local store or on a server (`--http-url`).

It prints what `GET /status` answers: the server processes on the store, the
MCP clients connected to any of them (and whether they are waiting in a
watch), the toolbar pages connected now, and the counts. `--json` prints
the document itself. Without `--http-url` nothing needs to run: presence is
read from the store's own tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..clients.local import LocalClient
from ..errors import AgentationError
from ..models import JsonObject
from . import output
from .options import add_server_options, refuse_bad_url


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentation-mcp status",
        description="Show the server processes on the store, the agents and toolbar pages connected, and the counts.",
    )
    p.add_argument("--json", action="store_true", help="print the /status document as JSON")
    add_server_options(p, "ask the server at URL instead of reading the local store")
    return p


def run_status(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if refuse_bad_url("status", args):
        return 2
    try:
        document = _document(args)
    except AgentationError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if args.json:
        output.print_json(document)
    else:
        output.print_text(describe(document))
    return 0


def _document(args: argparse.Namespace) -> JsonObject:
    if args.http_url:
        from ..clients.remote import RemoteClient

        remote = RemoteClient(args.http_url, args.api_key or os.environ.get("AGENTATION_ACCESS_KEY"))
        try:
            return remote.status()
        finally:
            remote.close()
    home = Path(os.environ.get("HOME") or Path.home())
    local = LocalClient(home / ".agentation" / "store.db")
    try:
        return local.status()
    finally:
        local.close()


def _ago(value: Any) -> str:
    return output.relative_time(value) or "?"


def describe(doc: JsonObject) -> str:
    """The document for a person: one section each for processes, agents, pages and annotations."""
    lines = [f"agentation-mcp {doc.get('version', '?')}, store {doc.get('store', '?')}"]
    processes = doc.get("processes") or []
    if processes:
        shown = [f"pid {p['pid']}" + (" (owns the port)" if p.get("ownsPort") else "") for p in processes]
        lines.append(f"Servers: {', '.join(shown)}")
    else:
        lines.append("Servers: none running on this store")
    agents = doc.get("agents") or []
    lines.append(f"Agents: {len(agents) or 'none connected'}")
    for agent in agents:
        client = agent.get("client") or {}
        name = " ".join(str(part) for part in (client.get("name") or "unnamed client", client.get("version")) if part)
        watched = agent.get("watchingSessionId") or "every session"
        watching = f", watching {watched}" if agent.get("watching") else ""
        last = f", last call {_ago(agent['lastCallAt'])}" if agent.get("lastCallAt") else ""
        lines.append(
            f"  {name} over {agent.get('transport')} (pid {agent.get('pid')}), "
            f"connected {_ago(agent.get('connectedAt'))}{last}{watching}"
        )
    pages = doc.get("pages") or []
    if pages:
        lines.append(f"Toolbar pages: {len(pages)}")
        for page in pages:
            session = f" (session {page['sessionId']})" if page.get("sessionId") else ""
            lines.append(f"  {page.get('url')}{session}, connected {_ago(page.get('connectedAt'))}")
    elif doc.get("lastPageSeenAt"):
        lines.append(f"Toolbar pages: none connected; the last was seen {_ago(doc['lastPageSeenAt'])}")
    else:
        lines.append("Toolbar pages: none has ever connected")
    counts = doc.get("counts") or {}
    statuses = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pending", "acknowledged", "resolved", "dismissed"))
    lines.append(f"Annotations: {statuses}, in {counts.get('sessions', 0)} sessions")
    for refused in doc.get("refusedOrigins") or []:
        last = _ago(refused["lastAt"])
        lines.append(
            f"Refused: a page at {refused['origin']} ({refused.get('count')} requests, last {last}); "
            "allow it with AGENTATION_CORS_ORIGINS"
        )
    return "\n".join(lines)
