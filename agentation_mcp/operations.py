"""What acknowledging, resolving, dismissing and replying mean: the command each one sends, and its result.

Shared by the MCP tools and the command line (on the local store or a remote
server), so all of them change the same things and answer in the same shape
and words.
"""

from __future__ import annotations

from .commands import AddThreadMessage, Command, NewThreadMessage, UpdateAnnotation
from .errors import AgentationError
from .models import JsonObject

EMPTY_MESSAGE = "message must not be empty."


def acknowledge(annotation_id: str) -> tuple[Command, JsonObject]:
    return (
        UpdateAnnotation(annotation_id, {"status": "acknowledged"}),
        {"acknowledged": True, "annotationId": annotation_id},
    )


def resolve(annotation_id: str, summary: str | None) -> tuple[Command, JsonObject]:
    message = NewThreadMessage("agent", f"Resolved: {summary}") if summary else None
    result: JsonObject = {"resolved": True, "annotationId": annotation_id}
    if summary is not None:
        result["summary"] = summary
    return UpdateAnnotation(annotation_id, {"status": "resolved", "resolvedBy": "agent"}, message=message), result


def dismiss(annotation_id: str, reason: str) -> tuple[Command, JsonObject]:
    message = NewThreadMessage("agent", f"Dismissed: {reason}")
    return (
        UpdateAnnotation(annotation_id, {"status": "dismissed", "resolvedBy": "agent"}, message=message),
        {"dismissed": True, "annotationId": annotation_id, "reason": reason},
    )


def reply(annotation_id: str, message: str) -> tuple[Command, JsonObject]:
    """Raises `AgentationError` for an empty message (the caller checks the annotation exists first)."""
    if not message:
        raise AgentationError(EMPTY_MESSAGE)
    return (
        AddThreadMessage(annotation_id, NewThreadMessage("agent", message)),
        {"replied": True, "annotationId": annotation_id, "message": message},
    )
