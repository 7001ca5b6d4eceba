"""Records and their shapes on the wire.

The store keeps sessions, annotations and events in the reference's SQLite
tables; this module turns rows into the JSON objects clients see (the
annotation "row form", the agent-facing summary the MCP tools return, events)
and renders JSON the way the reference's JavaScript does, so that `5.0`
goes out as `5`. Pure: no I/O, no trio.
"""

from __future__ import annotations

import json
import math
import operator
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

JsonObject = dict[str, Any]

ANNOTATION_STATUSES: Final = ("pending", "acknowledged", "resolved", "dismissed")
CLOSED_STATUSES: Final = frozenset({"resolved", "dismissed"})
ANNOTATION_KINDS: Final = ("feedback", "placement", "rearrange")
INTENTS: Final = ("fix", "change", "question", "approve")
SEVERITIES: Final = ("blocking", "important", "suggestion")
THREAD_ROLES: Final = ("human", "agent")

# Event types, exactly as the toolbar and agents know them.
SESSION_CREATED: Final = "session.created"
ANNOTATION_CREATED: Final = "annotation.created"
ANNOTATION_UPDATED: Final = "annotation.updated"
ANNOTATION_DELETED: Final = "annotation.deleted"
THREAD_MESSAGE: Final = "thread.message"
ACTION_REQUESTED: Final = "action.requested"


@dataclass(frozen=True, slots=True)
class AnnotationField:
    """One modelled annotation field: its JSON name, its column and how it is stored."""

    name: str
    column: str
    storage: str  # "text" | "number" | "bool" | "json"


# Modelled fields in the reference's row-form key order. `kind` and the
# `extra` keys (placement, rearrange, attributes, frame) are placed by
# `annotation_from_row` itself.
ANNOTATION_FIELDS: Final = (
    AnnotationField("x", "x", "number"),
    AnnotationField("y", "y", "number"),
    AnnotationField("comment", "comment", "text"),
    AnnotationField("element", "element", "text"),
    AnnotationField("elementPath", "element_path", "text"),
    AnnotationField("timestamp", "timestamp", "number"),
    AnnotationField("selectedText", "selected_text", "text"),
    AnnotationField("boundingBox", "bounding_box", "json"),
    AnnotationField("nearbyText", "nearby_text", "text"),
    AnnotationField("cssClasses", "css_classes", "text"),
    AnnotationField("nearbyElements", "nearby_elements", "text"),
    AnnotationField("computedStyles", "computed_styles", "text"),
    AnnotationField("fullPath", "full_path", "text"),
    AnnotationField("accessibility", "accessibility", "text"),
    AnnotationField("isMultiSelect", "is_multi_select", "bool"),
    AnnotationField("isFixed", "is_fixed", "bool"),
    AnnotationField("reactComponents", "react_components", "text"),
    AnnotationField("sourceFile", "source_file", "text"),
    AnnotationField("url", "url", "text"),
    AnnotationField("intent", "intent", "text"),
    AnnotationField("severity", "severity", "text"),
    AnnotationField("status", "status", "text"),
    AnnotationField("thread", "thread", "json"),
    AnnotationField("createdAt", "created_at", "text"),
    AnnotationField("updatedAt", "updated_at", "text"),
    AnnotationField("resolvedAt", "resolved_at", "text"),
    AnnotationField("resolvedBy", "resolved_by", "text"),
    AnnotationField("authorId", "author_id", "text"),
)
FIELD_BY_NAME: Final = {f.name: f for f in ANNOTATION_FIELDS}

# Keys the reference keeps in the `extra` JSON column; anything else a client
# sends that is not modelled is kept there too, under these top-level keys'
# neighbours, and returned at the end of the row form.
EXTRA_KEYS: Final = ("placement", "rearrange", "attributes", "frame")
# Fields the server owns; a client never sets them.
SERVER_OWNED: Final = frozenset({"id", "sessionId", "status", "createdAt", "updatedAt", "resolvedAt"})


class _IsoClock:
    """`Date.toISOString()` for now; the date and time up to the second are formatted once a second."""

    second = -1
    prefix = ""

    @classmethod
    def now(cls) -> str:
        ms = time.time_ns() // 1_000_000
        second, millis = divmod(ms, 1000)
        if second != cls.second:
            cls.prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            cls.second = second
        return f"{cls.prefix}{millis:03d}Z"


def now_iso() -> str:
    """The current UTC time as JavaScript's `Date.toISOString()` writes it."""
    return _IsoClock.now()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    digits = []
    while True:
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
        if n == 0:
            return "".join(reversed(digits))


def new_id() -> str:
    """An id in the reference's form: `<ms since epoch, base 36>-<6 random base-36 chars>`.

    The random part only keeps ids of the same millisecond apart, as the
    reference's does; it is no secret, so it comes from `random` (seeded
    from the OS once, and again in a forked child), not from a system call
    per id as `secrets` would make.
    """
    return f"{_base36(now_ms())}-{_base36(random.randrange(36**6)).rjust(6, '0')}"


def js_number(value: Any) -> Any:
    """An integral float as an int, so that it prints as JavaScript prints numbers (`5`, not `5.0`).

    Numbers enter as JavaScript would hold them (request bodies are parsed with
    `parse_js_float`, REAL columns go through this), so `to_json` needs no pass
    over the whole value.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def parse_js_float(text: str) -> Any:
    """`json.loads`'s `parse_float`: `1.0` and `1e3` become ints, as in JavaScript."""
    return js_number(float(text))


_DECODER = json.JSONDecoder(parse_float=parse_js_float)


def printable(text: str) -> str:
    """`text` with any lone surrogate (which no UTF-8 can carry) written as its `\\udXXX` escape.

    For messages that quote what a client sent: an error must always be sendable.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_bytes(value: Any) -> bytes:
    """Compact JSON like `JSON.stringify(v)`, as UTF-8.

    orjson writes it; what orjson refuses (integers past 64 bits, keys that
    are not strings) goes through the standard library instead.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def to_json(value: Any, *, indent: int | None = None) -> str:
    """JSON text: compact like `JSON.stringify(v)`, or indented like `JSON.stringify(v, null, 2)`."""
    if indent is None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if indent == 2:
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        except TypeError:
            pass
    return json.dumps(value, ensure_ascii=False, indent=indent)


def from_json(text: str | bytes) -> Any:
    """Stored JSON (written by this server or the reference, so numbers are already as JavaScript writes them)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _DECODER.decode(text if isinstance(text, str) else text.decode())


def _load_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return from_json(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class Event:
    """One persisted change, as SSE streams and watchers receive it."""

    type: str
    session_id: str
    payload: Any
    sequence: int
    timestamp: str
    payload_json: str | None = field(default=None, compare=False, repr=False)
    """The payload as compact JSON, when the store already has it (saves encoding it again)."""

    def to_wire(self) -> JsonObject:
        return {
            "type": self.type,
            "sessionId": self.session_id,
            "payload": self.payload,
            "sequence": self.sequence,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event produced inside a transaction, before its sequence is allocated."""

    type: str
    session_id: str
    payload: Any
    timestamp: str = field(default_factory=now_iso)


def session_from_row(row: Mapping[str, Any]) -> JsonObject:
    """A session as the GET routes and `agentation_get_session` show it."""
    out: JsonObject = {
        "id": row["id"],
        "url": row["url"],
        "status": row["status"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "projectId": row["project_id"],
        "userId": row["user_id"],
    }
    if row["metadata"] is not None:
        out["metadata"] = _load_json(row["metadata"])
    return out


def session_summary(session: Mapping[str, Any]) -> JsonObject:
    """The short form `agentation_list_sessions` returns."""
    return {k: session[k] for k in ("id", "url", "status", "createdAt")}


def annotation_from_row(row: Mapping[str, Any]) -> JsonObject:
    """An annotation in the one stored form every read returns.

    Key order follows the reference; `boundingBox` and `thread` are left out
    when absent, `placement`/`rearrange` appear only on annotations of that
    kind, and unmodelled fields the client sent come last.
    """
    extra = _load_json(row["extra"]) if row["extra"] is not None else {}
    if not isinstance(extra, dict):
        extra = {}
    kind = row["kind"] or "feedback"
    out: JsonObject = {"id": row["id"], "sessionId": row["session_id"]}
    _put_fields(out, row, _FIELDS_BEFORE_KIND)
    for key in ("attributes", "frame"):
        if extra.get(key) is not None:
            out[key] = extra[key]
    out["kind"] = kind
    if kind in ("placement", "rearrange") and extra.get(kind) is not None:
        out[kind] = extra[kind]
    _put_fields(out, row, _FIELDS_AFTER_KIND)
    for key, value in extra.items():
        if key not in EXTRA_KEYS and key not in out:
            out[key] = value
    return out


_TEXT, _NUMBER, _BOOL, _JSON = range(4)
_STORAGE_CODES = {"text": _TEXT, "number": _NUMBER, "bool": _BOOL, "json": _JSON}
_SPLIT = next(i for i, f in enumerate(ANNOTATION_FIELDS) if f.name == "sourceFile") + 1
# (JSON name, column, storage) with `kind` and the extra keys placed after sourceFile.
_FIELDS_BEFORE_KIND: Final = tuple((f.name, f.column, _STORAGE_CODES[f.storage]) for f in ANNOTATION_FIELDS[:_SPLIT])
_FIELDS_AFTER_KIND: Final = tuple((f.name, f.column, _STORAGE_CODES[f.storage]) for f in ANNOTATION_FIELDS[_SPLIT:])


def _put_fields(out: JsonObject, row: Mapping[str, Any], fields: tuple[tuple[str, str, int], ...]) -> None:
    for name, column, storage in fields:
        value = row[column]
        if storage == _TEXT:
            out[name] = value
        elif storage == _NUMBER:
            out[name] = js_number(value)
        elif storage == _BOOL:
            out[name] = bool(value)
        elif value is not None:
            out[name] = _load_json(value)


RowBuilder = Callable[[Sequence[Any]], JsonObject]
_NO_EXTRA: Final = (None, "{}")


def annotation_builder(names: Sequence[str]) -> RowBuilder:
    """`annotation_from_row` for rows whose columns are `names`, in that order, made for long lists.

    A row with no `extra` keys (most rows) is built in one go: its values taken in
    the row form's key order and zipped into a dict, then the few numbers,
    flags and JSON fields fixed in place (an assignment keeps a key's place;
    an absent JSON field is deleted). Any other row goes to
    `annotation_from_row`.
    """
    index = {name: i for i, name in enumerate(names)}
    if any(f.column not in index for f in ANNOTATION_FIELDS) or not {"id", "session_id", "kind", "extra"} <= set(index):
        return lambda row: annotation_from_row(dict(zip(names, row, strict=True)))
    fields = [("id", "id"), ("sessionId", "session_id")]
    fields += [(f.name, f.column) for f in ANNOTATION_FIELDS[:_SPLIT]]
    fields += [("kind", "kind")]
    fields += [(f.name, f.column) for f in ANNOTATION_FIELDS[_SPLIT:]]
    keys = tuple(name for name, _ in fields)
    take = operator.itemgetter(*(index[column] for _, column in fields))
    numbers = tuple(f.name for f in ANNOTATION_FIELDS if f.storage == "number")
    flags = tuple(f.name for f in ANNOTATION_FIELDS if f.storage == "bool")
    stored_json = tuple(f.name for f in ANNOTATION_FIELDS if f.storage == "json")
    extra_at = index["extra"]

    def build(row: Sequence[Any]) -> JsonObject:
        if row[extra_at] not in _NO_EXTRA:
            return annotation_from_row(dict(zip(names, row, strict=True)))
        out = dict(zip(keys, take(row), strict=True))
        out["kind"] = out["kind"] or "feedback"
        for key in numbers:
            out[key] = js_number(out[key])
        for key in flags:
            out[key] = bool(out[key])
        for key in stored_json:
            value = out[key]
            if value is None:
                del out[key]
            else:
                out[key] = _load_json(value)
        return out

    return build


def agent_view(annotation: Mapping[str, Any]) -> JsonObject:
    """The summary of an annotation the pending and watch tools give an agent."""
    out: JsonObject = {
        key: annotation.get(key)
        for key in (
            "id",
            "kind",
            "comment",
            "element",
            "elementPath",
            "url",
            "intent",
            "severity",
            "timestamp",
            "nearbyText",
            "reactComponents",
        )
    }
    out["kind"] = annotation.get("kind") or "feedback"
    if annotation.get("sourceFile"):
        out["sourceFile"] = annotation["sourceFile"]
    for key in ("attributes", "frame"):
        if annotation.get(key) is not None:
            out[key] = annotation[key]
    kind = out["kind"]
    if kind in ("placement", "rearrange") and annotation.get(kind) is not None:
        out[kind] = annotation[kind]
    return out


VIEW_COLUMNS: Final = (
    "id",
    "kind",
    "comment",
    "element",
    "element_path",
    "url",
    "intent",
    "severity",
    "timestamp",
    "nearby_text",
    "react_components",
    "source_file",
    "extra",
)
"""The annotation columns `agent_view_from_row` takes, in this order."""


def agent_view_from_row(row: Sequence[Any]) -> JsonObject:
    """`agent_view(annotation_from_row(...))` from the `VIEW_COLUMNS` of a row alone.

    A long pending list reads a dozen columns instead of thirty-odd, and
    builds one small object per annotation instead of two.
    """
    (
        annotation_id,
        kind,
        comment,
        element,
        element_path,
        url,
        intent,
        severity,
        timestamp,
        nearby,
        react,
        source,
        raw,
    ) = row
    kind = kind or "feedback"
    out: JsonObject = {
        "id": annotation_id,
        "kind": kind,
        "comment": comment,
        "element": element,
        "elementPath": element_path,
        "url": url,
        "intent": intent,
        "severity": severity,
        "timestamp": js_number(timestamp),
        "nearbyText": nearby,
        "reactComponents": react,
    }
    if source:
        out["sourceFile"] = source
    if raw is not None:
        extra = _load_json(raw)
        if isinstance(extra, dict):
            for key in ("attributes", "frame"):
                if extra.get(key) is not None:
                    out[key] = extra[key]
            if kind in ("placement", "rearrange") and extra.get(kind) is not None:
                out[kind] = extra[kind]
    return out
