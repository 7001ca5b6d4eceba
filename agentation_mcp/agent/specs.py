"""The nine MCP tools as data: names, descriptions, input schemas, hints and `_meta`, without the SDK.

The one source of the tools' specs: the stdio front end answers `tools/list`
from `wire()` before the SDK is loaded, and the SDK's `Tool` models are built
from the same dicts (`sdk_server`). Tool names, input property names and
types, and `required` lists match the reference; descriptions are our own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..models import JsonObject
from .budget import RESULT_SIZE_META


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    properties: dict[str, tuple[str, str]]  # name -> (JSON type, description)
    required: tuple[str, ...]
    hints: JsonObject  # the tool's annotations as on the wire (`readOnlyHint`, ...)

    def wire(self) -> JsonObject:
        """The tool as a `tools/list` entry, in the key order the SDK writes (a test compares the bytes)."""
        return {
            "_meta": dict(RESULT_SIZE_META),
            "annotations": {key: self.hints[key] for key in _HINT_ORDER if key in self.hints},
            "description": self.description,
            "inputSchema": {
                "properties": {n: {"type": t, "description": d} for n, (t, d) in self.properties.items()},
                "required": list(self.required),
                "type": "object",
            },
            "name": self.name,
        }


_HINT_ORDER = ("destructiveHint", "idempotentHint", "openWorldHint", "readOnlyHint")

_READ: JsonObject = {"readOnlyHint": True, "openWorldHint": False}
_MARK: JsonObject = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}
_ADD: JsonObject = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": False}

_KINDS = (
    'Every annotation has a `kind`: "feedback" (a comment on an element, the default), "placement" '
    '(a design component the user placed on the page) or "rearrange" (a section the user moved or '
    "resized); placement and rearrange annotations carry their layout data."
)
_SOURCE = "When `sourceFile` is present it names the file and line that rendered the element: start there."
MAX_LIMIT = 100_000
_LIMIT = (
    f"Optional: return at most this many (up to {MAX_LIMIT}), however long the result; by default a page "
    "holds what fits in about 80,000 characters. When there are more, the result's `more` says how many "
    "were left out and its `after` continues the list"
)
_AFTER = "Optional: the `after` value of the previous page, to get the annotations that follow it"


def _on_annotation(
    name: str,
    description: str,
    verb: str,
    more: dict[str, tuple[str, str]] | None = None,
    *,
    required: tuple[str, ...] = (),
    hints: JsonObject = _ADD,
) -> ToolSpec:
    """A tool that acts on one annotation: `annotationId` ("Id of the annotation to <verb>") comes first."""
    properties = {"annotationId": ("string", f"Id of the annotation to {verb}"), **(more or {})}
    return ToolSpec(name, description, properties, ("annotationId", *required), hints)


SPECS: tuple[ToolSpec, ...] = (
    ToolSpec("agentation_list_sessions", "List every annotation session (one per annotated page).", {}, (), _READ),
    ToolSpec(
        "agentation_get_session",
        "Get one session and every annotation in it, whatever its status.",
        {"sessionId": ("string", "Id of the session to fetch")},
        ("sessionId",),
        _READ,
    ),
    ToolSpec(
        "agentation_get_pending",
        f"Get the annotations of one session that are still pending (nobody has acknowledged, resolved or "
        f"dismissed them yet). {_KINDS} {_SOURCE}",
        {
            "sessionId": ("string", "Id of the session whose pending annotations to list"),
            "limit": ("number", _LIMIT),
            "after": ("string", _AFTER),
        },
        ("sessionId",),
        _READ,
    ),
    ToolSpec(
        "agentation_get_all_pending",
        f"Get the pending annotations of all sessions at once, feedback, placements and rearrangements alike. "
        f"{_KINDS} {_SOURCE}",
        {"limit": ("number", _LIMIT), "after": ("string", _AFTER)},
        (),
        _READ,
    ),
    _on_annotation(
        "agentation_acknowledge",
        "Mark an annotation as acknowledged, telling the person you have seen it and are working on it.",
        "acknowledge",
        hints=_MARK,
    ),
    _on_annotation(
        "agentation_resolve",
        "Mark an annotation as resolved once you have made the change it asks for; its marker then leaves "
        "the person's page. Add a short summary of what you changed. Resolve only what the person accepted.",
        "resolve",
        {"summary": ("string", "Optional: what you changed, added to the annotation's thread")},
    ),
    _on_annotation(
        "agentation_dismiss",
        "Dismiss an annotation you have decided not to act on, and say why; its marker then leaves the person's page.",
        "dismiss",
        {"reason": ("string", "Why it is not being addressed, added to the annotation's thread")},
        required=("reason",),
    ),
    _on_annotation(
        "agentation_reply",
        "Add a message to an annotation's thread: ask the person a question or tell them how it is going.",
        "reply on",
        {"message": ("string", "The text of the reply")},
        required=("message",),
    ),
    ToolSpec(
        "agentation_watch_annotations",
        "Wait for the person to annotate in the browser and return the new annotations as one batch. "
        "Annotations already pending are returned at once; otherwise it waits up to timeoutSeconds for a "
        "first new one, then keeps collecting for batchWindowSeconds before returning. All kinds are "
        "included (feedback, placement, rearrange). Call it in a loop for hands-free work; after each fix "
        "call agentation_resolve with the annotation's id and a summary, and resolve only what the person "
        "accepted: if they reject a change, leave the annotation open.",
        {
            "sessionId": ("string", "Optional: watch only this session (default: every session)"),
            "batchWindowSeconds": (
                "number",
                "Seconds to keep collecting after the first new annotation (default 10, from 1 to 60)",
            ),
            "timeoutSeconds": (
                "number",
                "Longest wait, in seconds, for a first new annotation (default 120, from 1 to 300)",
            ),
        },
        (),
        _READ,
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
READ_ONLY_TOOLS = frozenset(spec.name for spec in SPECS if spec.hints.get("readOnlyHint"))


def _js_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def argument_issues(spec: ToolSpec, arguments: Mapping[str, Any]) -> list[JsonObject]:
    """Problems with `arguments`, in the shape the reference reports them."""
    issues: list[JsonObject] = []
    for name, (expected, _) in spec.properties.items():
        if name in arguments:
            received = _js_type(arguments[name])
        elif name in spec.required:
            received = "undefined"
        else:
            continue
        if received != expected:
            message = "Required" if received == "undefined" else f"Expected {expected}, received {received}"
            issues.append(
                {"code": "invalid_type", "expected": expected, "received": received, "path": [name], "message": message}
            )
    return issues
