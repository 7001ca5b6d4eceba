"""The resources' URIs, and which of them a store event changes (for `pushes`, without the SDK)."""

from __future__ import annotations

SCHEME = "agentation://"
PENDING = "agentation://pending"
SESSIONS = "agentation://sessions"
SESSION_PREFIX = "agentation://sessions/"
ANNOTATION_PREFIX = "agentation://annotations/"


def uris_touched(event_type: str, session_id: str, annotation_id: str | None) -> list[str]:
    """The resources an event changes."""
    uris = [SESSION_PREFIX + session_id]
    if event_type.startswith("session."):
        uris.append(SESSIONS)
    if event_type.startswith(("annotation.", "thread.")):
        uris.append(PENDING)
        if annotation_id:
            uris.append(ANNOTATION_PREFIX + annotation_id)
    return uris
