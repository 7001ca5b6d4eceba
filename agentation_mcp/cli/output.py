"""How the annotation commands print: aligned columns for people, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import JsonObject


def relative_time(value: Any, now: datetime | None = None) -> str:
    """ "just now", "5m ago", "3h ago", "2d ago" for an ISO timestamp or epoch milliseconds; "" if unreadable."""
    moment: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return ""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def table(rows: Sequence[Sequence[str]], width: int | None = None) -> str:
    """Rows as aligned columns; the last column is cut to fit `width` (the terminal's, by default)."""
    if not rows:
        return ""
    width = width or shutil.get_terminal_size((100, 24)).columns
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False))
        room = max(width - len(head) - 2, 10)
        last = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        lines.append(f"{head}  {last}".rstrip())
    return "\n".join(lines)


def sessions_table(sessions: list[JsonObject]) -> str:
    if not sessions:
        return "No sessions."
    rows = [["ID", "STATUS", "CREATED", "URL"]]
    rows += [
        [s["id"], str(s.get("status", "")), relative_time(s.get("createdAt")), one_line(s.get("url"))] for s in sessions
    ]
    return table(rows)


def annotations_table(annotations: list[JsonObject]) -> str:
    if not annotations:
        return "No pending annotations."
    rows = [["ID", "AGE", "KIND", "ELEMENT", "COMMENT"]]
    for a in annotations:
        kind = "/".join(str(v) for v in (a.get("kind"), a.get("intent"), a.get("severity")) if v)
        rows.append(
            [
                a["id"],
                relative_time(a.get("timestamp")),
                kind,
                one_line(a.get("element"))[:30],
                one_line(a.get("comment")),
            ]
        )
    return table(rows)


def annotation_details(a: JsonObject) -> str:
    fields = [
        ("id", a.get("id")),
        ("session", a.get("sessionId")),
        ("status", a.get("status")),
        ("kind", a.get("kind")),
        ("intent", a.get("intent")),
        ("severity", a.get("severity")),
        ("element", a.get("element")),
        ("path", a.get("elementPath")),
        ("source", a.get("sourceFile")),
        ("url", a.get("url")),
        ("created", relative_time(a.get("timestamp"))),
        ("comment", a.get("comment")),
    ]
    lines = [f"{name + ':':<10} {one_line(value)}" for name, value in fields if value not in (None, "")]
    thread = a.get("thread") or []
    if thread:
        lines.append("thread:")
        for message in thread:
            when = relative_time(message.get("timestamp"))
            lines.append(f"  [{message.get('role')}, {when}] {one_line(message.get('content'))}")
    return "\n".join(lines)


def print_json(value: Any, *, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(value, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
