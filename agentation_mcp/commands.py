"""The writer's message protocol: one frozen dataclass per mutation.

Each command is built from a client's input by its `from_body` constructor,
which checks every field and raises `InvalidInput` naming the field and what
it accepts. A command that exists is therefore valid; the store only has to
check that the things it names exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput
from .models import (
    ANNOTATION_FIELDS,
    ANNOTATION_KINDS,
    ANNOTATION_STATUSES,
    EXTRA_KEYS,
    INTENTS,
    SERVER_OWNED,
    SEVERITIES,
    THREAD_ROLES,
    JsonObject,
    printable,
)

_ENUMS: dict[str, tuple[str, ...]] = {
    "status": ANNOTATION_STATUSES,
    "kind": ANNOTATION_KINDS,
    "intent": INTENTS,
    "severity": SEVERITIES,
    "role": THREAD_ROLES,
}
_REQUIRED_ON_CREATE = ("comment", "element", "elementPath", "x", "y", "timestamp")
_NON_EMPTY = frozenset({"element", "elementPath"})
# Modelled fields a PATCH may change; the rest of a PATCH body's modelled
# fields (the toolbar sends its whole copy) are left as they are.
_UPDATABLE = frozenset({"comment", "status", "resolvedBy", "thread", "intent", "severity", "sourceFile", "x", "y"})


def check_text(value: Any, path: str = "") -> None:
    """Raise `InvalidInput` naming the field if `value` holds text that is not valid Unicode.

    JSON's `\\u` escapes can carry a lone surrogate (`\\ud800`), which no
    UTF-8 text, and so no stored value, can hold. Such input is refused
    rather than stored altered.
    """
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                field = printable(path) or "body"
                raise InvalidInput(
                    field, f"{field} must be valid Unicode text; it holds a lone surrogate such as \\ud800."
                ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            check_text(key, name)
            check_text(item, name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]")


def _object_body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput("body", "The request body must be a JSON object.")
    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_field(name: str, value: Any) -> Any:
    """Return `value` if it suits annotation field `name`, else raise `InvalidInput`."""
    if name in _ENUMS:
        allowed = _ENUMS[name]
        if value not in allowed:
            raise InvalidInput(name, f"{name} must be one of: {', '.join(allowed)} (got {_show(value)}).")
        return value
    if name in EXTRA_KEYS or name == "boundingBox":
        if not isinstance(value, Mapping):
            raise InvalidInput(name, f"{name} must be an object (got {_show(value)}).")
        return dict(value)
    spec = _STORAGE.get(name)
    if spec == "number":
        if not _is_number(value):
            raise InvalidInput(name, f"{name} must be a number (got {_show(value)}).")
    elif spec == "text":
        if not isinstance(value, str):
            raise InvalidInput(name, f"{name} must be a string (got {_show(value)}).")
        if name in _NON_EMPTY and not value:
            raise InvalidInput(name, f"{name} must not be empty.")
    elif spec == "bool":
        if not isinstance(value, bool):
            raise InvalidInput(name, f"{name} must be true or false (got {_show(value)}).")
    elif name == "thread" and (not isinstance(value, list) or not all(isinstance(m, Mapping) for m in value)):
        raise InvalidInput(name, f"thread must be an array of message objects (got {_show(value)}).")
    return value


_STORAGE = {f.name: f.storage for f in ANNOTATION_FIELDS}


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return str(value)


@dataclass(frozen=True, slots=True)
class CreateSession:
    url: str
    project_id: str | None = None

    @classmethod
    def from_body(cls, body: Any) -> CreateSession:
        body = _object_body(body)
        url = body.get("url")
        if url is None or url == "":
            raise InvalidInput("url", "url is required")
        if not isinstance(url, str):
            raise InvalidInput("url", f"url must be a string (got {_show(url)}).")
        project_id = body.get("projectId")
        if project_id is not None and not isinstance(project_id, str):
            raise InvalidInput("projectId", f"projectId must be a string (got {_show(project_id)}).")
        return cls(url=url, project_id=project_id)


@dataclass(frozen=True, slots=True)
class CreateAnnotation:
    """Add an annotation to a session. `fields` holds checked modelled fields by JSON name."""

    session_id: str
    fields: JsonObject
    kind: str = "feedback"
    extra: JsonObject = field(default_factory=dict)

    @classmethod
    def from_body(cls, session_id: str, body: Any) -> CreateAnnotation:
        body = _object_body(body)
        missing = [n for n in _REQUIRED_ON_CREATE if body.get(n) is None]
        if missing:
            raise InvalidInput(missing[0], f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
        fields: JsonObject = {}
        extra: JsonObject = {}
        kind = "feedback"
        for name, value in body.items():
            if name in SERVER_OWNED or value is None:
                continue
            if name == "kind":
                kind = check_field(name, value)
            elif name in EXTRA_KEYS:
                extra[name] = check_field(name, value)
            elif name in _STORAGE:
                fields[name] = check_field(name, value)
            else:
                extra[name] = value
        return cls(session_id=session_id, fields=fields, kind=kind, extra=extra)


@dataclass(frozen=True, slots=True)
class NewThreadMessage:
    role: str
    content: str

    @classmethod
    def from_body(cls, body: Any) -> NewThreadMessage:
        body = _object_body(body)
        role, content = body.get("role"), body.get("content")
        if not role or not content:
            raise InvalidInput("role" if not role else "content", "role and content are required")
        check_field("role", role)
        if not isinstance(content, str):
            raise InvalidInput("content", f"content must be a string (got {_show(content)}).")
        return cls(role=role, content=content)


@dataclass(frozen=True, slots=True)
class UpdateAnnotation:
    """Change an annotation, and optionally add a thread message in the same step.

    `changes` holds modelled fields; `extra_changes` is merged into the kept
    unmodelled fields. A change of status to resolved or dismissed stamps
    `resolvedAt`; any other status clears it and `resolvedBy`.
    """

    annotation_id: str
    changes: JsonObject = field(default_factory=dict)
    extra_changes: JsonObject = field(default_factory=dict)
    message: NewThreadMessage | None = None

    @classmethod
    def from_body(cls, annotation_id: str, body: Any) -> UpdateAnnotation:
        body = _object_body(body)
        changes: JsonObject = {}
        extra_changes: JsonObject = {}
        for name, value in body.items():
            if value is None:
                continue
            if name in _UPDATABLE:
                changes[name] = check_field(name, value)
            elif name in EXTRA_KEYS:
                extra_changes[name] = check_field(name, value)
            elif name not in _STORAGE and name not in SERVER_OWNED and name != "kind":
                extra_changes[name] = value
        return cls(annotation_id=annotation_id, changes=changes, extra_changes=extra_changes)


@dataclass(frozen=True, slots=True)
class AddThreadMessage:
    annotation_id: str
    message: NewThreadMessage


@dataclass(frozen=True, slots=True)
class DeleteAnnotation:
    annotation_id: str


@dataclass(frozen=True, slots=True)
class RequestAction:
    """Ask the agents watching a session to act on its annotations."""

    session_id: str
    output: Any

    @classmethod
    def from_body(cls, session_id: str, body: Any) -> RequestAction:
        body = _object_body(body)
        output = body.get("output")
        if output in (None, "", 0, False):
            raise InvalidInput("output", "output is required")
        return cls(session_id=session_id, output=output)


@dataclass(frozen=True, slots=True)
class ProcessPresence:
    """One server process as presence records it (see `store.presence`)."""

    instance: str  # this run of the process: its pid and a random part, never reused
    pid: int
    host: str
    version: str
    started_at: str
    owns_port: bool
    port: int | None
    detail: JsonObject  # the port owner's `/status` keys (mode, listeners, webhooks); {} for the others


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """One MCP connection: its client (from `initialize`), transport and what it does now."""

    id: str
    client_name: str | None
    client_version: str | None
    transport: str  # "stdio" or "http"
    connected_at: str
    last_call_at: str | None
    watching: bool
    watching_session_id: str | None


@dataclass(frozen=True, slots=True)
class PagePresence:
    """One toolbar page: its SSE stream, the session it follows and the page's URL."""

    id: str
    session_id: str | None
    url: str | None
    connected_at: str


@dataclass(frozen=True, slots=True)
class RefusedOrigin:
    """A page origin the port owner's CORS rules refused: the last time, and how often since it started."""

    origin: str
    path: str
    last_at: str
    count: int


@dataclass(frozen=True, slots=True)
class RecordPresence:
    """Replace what this process recorded before with what it serves now (its heartbeat)."""

    process: ProcessPresence
    beat_at: float  # seconds since the epoch
    agents: tuple[AgentPresence, ...] = ()
    pages: tuple[PagePresence, ...] = ()
    refused: tuple[RefusedOrigin, ...] = ()


@dataclass(frozen=True, slots=True)
class EndPresence:
    """This process stops: its rows go (a page's last sighting and a refused origin stay)."""

    instance: str


Command = (
    CreateSession
    | CreateAnnotation
    | UpdateAnnotation
    | AddThreadMessage
    | DeleteAnnotation
    | RequestAction
    | RecordPresence
    | EndPresence
)
