"""The push channel (`server --channel`): each new annotation, from any process on the store, sent
into the conversation as `notifications/claude/channel`, so a Claude Code session started with
channels enabled gets the feedback the moment it is written, without a watch loop.

Claude Code listens for it from a server that declares `capabilities.experimental["claude/channel"]`;
`content` becomes the text the model reads, and each `meta` key an attribute of the tag around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import JsonObject

CAPABILITY = "claude/channel"
METHOD = "notifications/claude/channel"
INSTRUCTIONS = (
    'New browser annotations arrive as <channel source="agentation" annotationId=... sessionId=...> messages: '
    "each is feedback a person just left on an element of their page. Acknowledge it with "
    "agentation_acknowledge, make the change, then resolve it with agentation_resolve and a summary (or reply "
    "with a question, or dismiss it with a reason)."
)


def _one_line(value: Any, limit: int = 500) -> str:
    flat = " ".join(str(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def channel_params(annotation: Mapping[str, Any]) -> JsonObject:
    """The notification's params for a new annotation: a short readable text, and the ids to act on."""
    comment = _one_line(annotation.get("comment") or "(no comment)")
    where = [f"on `{_one_line(annotation['element'], 120)}`" if annotation.get("element") else "on the page"]
    if annotation.get("url"):
        where.append(f"at {annotation['url']}")
    lines = [f"New annotation {' '.join(where)}: {comment}"]
    if annotation.get("elementPath"):
        lines.append(f"Element path: {_one_line(annotation['elementPath'], 300)}")
    if annotation.get("sourceFile"):
        lines.append(f"Source: {annotation['sourceFile']}")
    kind = annotation.get("kind") or "feedback"
    if kind != "feedback":
        lines.append(f"Kind: {kind}")
    return {
        "content": "\n".join(lines),
        "meta": {"annotationId": str(annotation.get("id")), "sessionId": str(annotation.get("sessionId"))},
    }
