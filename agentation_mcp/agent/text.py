"""Annotations, sessions and threads as Markdown a model reads well, for prompts and resources.

Every block names the ids an agent passes to the tools (`annotationId`, `sessionId`), and the
fields it acts on: the comment, the element and where it is, the source file, the thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIME_TYPE = "text/markdown"


def _line(value: Any) -> str:
    """`value` on one line: a comment's line breaks would break the list it sits in."""
    return " ".join(str(value).split())


# (field, label, how its value is shown, whether it is put on one line), in the order an agent reads them.
_DETAILS = (
    ("element", "element", "`{}`", True),
    ("elementPath", "path", "`{}`", True),
    ("url", "page", "{}", False),
    ("sourceFile", "source", "`{}` (start here)", False),
    ("reactComponents", "components", "{}", True),
    ("selectedText", "selected text", "{}", True),
    ("nearbyText", "nearby text", "{}", True),
)


def annotation_block(annotation: Mapping[str, Any], *, heading: str = "###") -> str:
    """One annotation: its comment as the heading, then what and where, then its thread."""
    comment = _line(annotation.get("comment") or "(no comment)")
    lines = [f"{heading} {comment}", "", f"- annotationId: `{annotation.get('id')}`"]
    if annotation.get("sessionId"):
        lines.append(f"- sessionId: `{annotation['sessionId']}`")
    kind = annotation.get("kind") or "feedback"
    details = [kind, *(str(annotation[k]) for k in ("intent", "severity") if annotation.get(k))]
    lines.append(f"- kind: {' / '.join(details)}")
    if annotation.get("status"):
        lines.append(f"- status: {annotation['status']}")
    for key, label, shape, one_line in _DETAILS:
        if annotation.get(key):
            value = annotation[key]
            lines.append(f"- {label}: " + shape.format(_line(value) if one_line else value))
    if kind in ("placement", "rearrange") and annotation.get(kind) is not None:
        lines.append(f"- {kind}: `{_line(annotation[kind])}`")
    thread = annotation.get("thread") or []
    if thread:
        lines += ["", "Thread:"]
        lines += [
            f"- **{m.get('role', '?')}**: {_line(m.get('content', ''))}" for m in thread if isinstance(m, Mapping)
        ]
    return "\n".join(lines)


def annotation_list(annotations: Iterable[Mapping[str, Any]], *, heading: str = "###") -> str:
    return "\n\n".join(annotation_block(a, heading=heading) for a in annotations)


def session_heading(session: Mapping[str, Any]) -> str:
    return f"## {session.get('url')}\n\n- sessionId: `{session.get('id')}`\n- created: {session.get('createdAt')}"


def session_document(session: Mapping[str, Any], budget: int) -> str:
    """A session with its annotations, by status (what is still open first), in at most about `budget`
    characters: the annotations past it are counted, and the tool that lists them all is named."""
    annotations = list(session.get("annotations") or [])
    parts = [session_heading(session), f"- annotations: {len(annotations)}"]
    left = budget - sum(len(p) for p in parts) - 400
    shown = 0
    for status in ("pending", "acknowledged", "resolved", "dismissed"):
        group = [a for a in annotations if (a.get("status") or "pending") == status]
        blocks: list[str] = []
        for annotation in group:
            block = annotation_block(annotation, heading="####")
            if len(block) + 2 > left and shown:
                break
            left -= len(block) + 2
            blocks.append(block)
            shown += 1
        if blocks:
            parts.append(f"### {status.capitalize()} ({len(group)})\n\n" + "\n\n".join(blocks))
        if len(blocks) < len(group):
            break
    if not annotations:
        parts.append("No annotations yet.")
    elif shown < len(annotations):
        parts.append(
            f"{len(annotations) - shown} more annotations are not shown here: `agentation_get_session` "
            f"with `sessionId` = `{session.get('id')}` lists them all."
        )
    return "\n\n".join(parts)


def sessions_document(sessions: Iterable[Mapping[str, Any]]) -> str:
    """Every session, newest first, with the URI that reads it."""
    rows = [
        f"- {s.get('url')}: sessionId `{s.get('id')}`, {s.get('status')}, created {s.get('createdAt')} "
        f"(agentation://sessions/{s.get('id')})"
        for s in sessions
    ]
    return "# Annotation sessions\n\n" + ("\n".join(rows) if rows else "No sessions yet.")


def pending_document(views: Sequence[Mapping[str, Any]], more: int, after: str | None) -> str:
    """A page of pending annotations, and how to get the rest."""
    if not views:
        return "# Pending annotations\n\nNothing is pending."
    text = f"# Pending annotations ({len(views)}{f' of {len(views) + more}' if more else ''})\n\n"
    text += annotation_list(views)
    if more:
        tool = "agentation_get_all_pending"
        text += f"\n\n{more} more are pending: call `{tool}` with `after` = `{after}` for the next page."
    return text
