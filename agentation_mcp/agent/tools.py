"""The nine MCP tools, served by `mcp`'s low-level server inside our trio nursery.

Tool names, input property names and types, `required` lists, result texts
(2-space indented JSON) and error texts match the reference; descriptions are
our own. Each result also carries the same data as structured content. Tools
read through the store reader and write through the writer, so a tool's
reply means its change is committed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server

from .. import __version__, operations
from ..clients.watch import DEFAULT_BATCH_WINDOW, DEFAULT_TIMEOUT, clamp, watch_annotations, watch_remote
from ..commands import Command, check_text
from ..errors import AgentationError, AnnotationNotFound, InvalidInput
from ..models import JsonObject, agent_view, json_bytes, printable, session_summary, to_json
from ..store import reads
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from .budget import (
    RESULT_SIZE_META,
    PageBudget,
    cursor_argument,
    decode_id,
    decode_position,
    id_cursor,
    position_cursor,
)
from .progress import reporting_progress
from .write_order import CURRENT_TURN

if TYPE_CHECKING:
    from ..clients.remote import AsyncRemoteClient
    from .features import Features

Handler = Callable[[Mapping[str, Any]], Awaitable[JsonObject]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    properties: dict[str, tuple[str, str]]  # name -> (JSON type, description)
    required: tuple[str, ...]
    hints: types.ToolAnnotations

    def to_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema={
                "type": "object",
                "properties": {n: {"type": t, "description": d} for n, (t, d) in self.properties.items()},
                "required": list(self.required),
            },
            annotations=self.hints,
            _meta=RESULT_SIZE_META,
        )


_READ = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
_MARK = types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
_ADD = types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

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
# Above this size a result goes out as text only: one copy of the data, not two.
STRUCTURED_MAX_BYTES = 256 * 1024

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
    ToolSpec(
        "agentation_acknowledge",
        "Mark an annotation as acknowledged, telling the person you have seen it and are working on it.",
        {"annotationId": ("string", "Id of the annotation to acknowledge")},
        ("annotationId",),
        _MARK,
    ),
    ToolSpec(
        "agentation_resolve",
        "Mark an annotation as resolved once you have made the change it asks for; its marker then leaves "
        "the person's page. Add a short summary of what you changed. Resolve only what the person accepted.",
        {
            "annotationId": ("string", "Id of the annotation to resolve"),
            "summary": ("string", "Optional: what you changed, added to the annotation's thread"),
        },
        ("annotationId",),
        _ADD,
    ),
    ToolSpec(
        "agentation_dismiss",
        "Dismiss an annotation you have decided not to act on, and say why; its marker then leaves the person's page.",
        {
            "annotationId": ("string", "Id of the annotation to dismiss"),
            "reason": ("string", "Why it is not being addressed, added to the annotation's thread"),
        },
        ("annotationId", "reason"),
        _ADD,
    ),
    ToolSpec(
        "agentation_reply",
        "Add a message to an annotation's thread: ask the person a question or tell them how it is going.",
        {
            "annotationId": ("string", "Id of the annotation to reply on"),
            "message": ("string", "The text of the reply"),
        },
        ("annotationId", "message"),
        _ADD,
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
        types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
READ_ONLY_TOOLS = frozenset(spec.name for spec in SPECS if spec.hints.read_only_hint)


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


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call answers: its text (JSON, or an error), the data again as structured content when
    small enough, and whether the call failed."""

    text: str
    structured_content: JsonObject | None = None
    is_error: bool = False

    def to_result(self) -> types.CallToolResult:
        """The SDK's model of this outcome."""
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=self.text)],
            structured_content=self.structured_content,
            is_error=self.is_error,
        )

    def wire(self) -> JsonObject:
        """This outcome as a `tools/call` result on the wire, in the form and key order the SDK sends."""
        out: JsonObject = {"content": [{"text": self.text, "type": "text"}], "isError": self.is_error}
        if self.structured_content is not None:
            out["structuredContent"] = self.structured_content
        return out


def _text_result(data: JsonObject) -> ToolOutcome:
    text = to_json(data, indent=2)
    return ToolOutcome(text, data if len(text) <= STRUCTURED_MAX_BYTES else None)


def _limit(args: Mapping[str, Any]) -> int | None:
    """The `limit` argument, checked (None when absent); raises `InvalidInput`."""
    value = args.get("limit")
    if value is None:
        return None
    if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(value)


@dataclass(frozen=True, slots=True)
class PendingPage:
    """One page of pending annotations (agent views), how many follow it, and the cursor to them."""

    views: list[JsonObject]
    more: int
    after: str | None


def pending_result(page: PendingPage) -> JsonObject:
    """The pending tools' result: `more` and `after` only when some were left out, so a list that fits
    is answered as it always was."""
    out: JsonObject = {"count": len(page.views), "annotations": page.views}
    if page.more:
        out["more"] = page.more
        out["after"] = page.after
    return out


def _page_of(annotations: list[JsonObject], limit: int | None) -> tuple[list[JsonObject], bool]:
    """The first annotations of a list held in memory that fit the page: `limit` of them, or the budget's."""
    if limit is not None:
        return [agent_view(a) for a in annotations[:limit]], len(annotations) > limit
    budget = PageBudget()
    for annotation in annotations:
        if not budget.take_view(agent_view(annotation)) and len(budget.views) > 1:
            return budget.views[:-1], True
    return budget.views, False


def _error_result(text: str) -> ToolOutcome:
    return ToolOutcome(printable(text), is_error=True)


class ToolBackend(Protocol):
    """Where the tools read and write: the local store, or another server (remote mode)."""

    async def list_sessions(self) -> list[JsonObject]: ...
    async def get_session(self, session_id: str) -> JsonObject: ...
    async def pending(self, session_id: str | None, limit: int | None, after: str | None) -> PendingPage:
        """The page of pending annotations after the cursor `after`: `limit` of them, or what fits."""
        ...

    async def get_annotation(self, annotation_id: str) -> JsonObject: ...
    async def submit(self, command: Command, queued: Callable[[], None] | None = None) -> None:
        """Carry out `command`; `queued` is called once later writes can no longer overtake it."""
        ...

    async def watch(self, session_id: str | None, batch_window: float, timeout: float) -> JsonObject: ...


class LocalBackend:
    """The store this process shares: reads through `reader`, changes through the writer."""

    def __init__(self, writer: Writer, hub: Hub, reader: Reader) -> None:
        self.writer, self.hub, self.reader = writer, hub, reader

    async def list_sessions(self) -> list[JsonObject]:
        return reads.list_sessions(self.reader)

    async def get_session(self, session_id: str) -> JsonObject:
        return reads.get_session(self.reader, session_id)

    async def pending(self, session_id: str | None, limit: int | None, after: str | None) -> PendingPage:
        position = decode_position(after) if after is not None else None
        if limit is None:
            budget = PageBudget()
            scan = reads.pending_scan(self.reader, session_id, position, MAX_LIMIT, budget.take_view, views=True)
        else:
            scan = reads.pending_scan(self.reader, session_id, position, limit, views=True)
        views = scan.annotations
        last = position_cursor(scan.last) if scan.last is not None else None
        return PendingPage(views, scan.more, last)

    async def get_annotation(self, annotation_id: str) -> JsonObject:
        return reads.get_annotation(self.reader, annotation_id)

    async def submit(self, command: Command, queued: Callable[[], None] | None = None) -> None:
        await self.writer.submit(command, queued)

    async def watch(self, session_id: str | None, batch_window: float, timeout: float) -> JsonObject:
        return await watch_annotations(
            self.hub, self.reader, session_id=session_id, batch_window=batch_window, timeout=timeout
        )


class RemoteBackend:
    """Another server's HTTP API (`server --mcp-only --http-url`)."""

    def __init__(self, remote: AsyncRemoteClient) -> None:
        self.remote = remote

    async def list_sessions(self) -> list[JsonObject]:
        return await self.remote.list_sessions()

    async def get_session(self, session_id: str) -> JsonObject:
        return await self.remote.get_session(session_id)

    async def pending(self, session_id: str | None, limit: int | None, after: str | None) -> PendingPage:
        pending = await self.remote.pending(session_id)
        if after is not None:
            last_id = decode_id(after)
            ids = [a["id"] for a in pending]
            if last_id not in ids:
                raise InvalidInput(
                    "after",
                    "The annotation that ended the previous page is no longer pending: list again without after.",
                )
            pending = pending[ids.index(last_id) + 1 :]
        views, cut = _page_of(pending, limit)
        more = len(pending) - len(views) if cut else 0
        return PendingPage(views, more, id_cursor(views[-1]["id"]) if cut else None)

    async def get_annotation(self, annotation_id: str) -> JsonObject:
        return await self.remote.get_annotation(annotation_id)

    async def submit(self, command: Command, queued: Callable[[], None] | None = None) -> None:
        await self.remote.submit(command)  # one HTTP request at a time in turn: done means in order
        if queued is not None:
            queued()

    async def watch(self, session_id: str | None, batch_window: float, timeout: float) -> JsonObject:
        return await watch_remote(self.remote, session_id=session_id, batch_window=batch_window, timeout=timeout)


def build_handlers(writer: Writer, hub: Hub, reader: Reader) -> dict[str, Handler]:
    """The tools on the local store, keyed by name; arguments are already type-checked."""
    return tool_handlers(LocalBackend(writer, hub, reader))


def build_remote_handlers(remote: AsyncRemoteClient) -> dict[str, Handler]:
    """The same tools, carried out on another server through its HTTP API."""
    return tool_handlers(RemoteBackend(remote))


def tool_handlers(backend: ToolBackend) -> dict[str, Handler]:
    """The nine tools' behaviour over `backend`, keyed by name."""

    async def carry_out(operation: tuple[Command, JsonObject]) -> JsonObject:
        command, result = operation
        turn = CURRENT_TURN.get()
        if turn is None:
            await backend.submit(command)
        else:
            await turn.wait()
            await backend.submit(command, turn.pass_on)
        return result

    async def list_sessions(args: Mapping[str, Any]) -> JsonObject:
        return {"sessions": [session_summary(s) for s in await backend.list_sessions()]}

    async def get_session(args: Mapping[str, Any]) -> JsonObject:
        return await backend.get_session(args["sessionId"])

    async def get_pending(args: Mapping[str, Any]) -> JsonObject:
        return pending_result(await backend.pending(args["sessionId"], _limit(args), cursor_argument(args)))

    async def get_all_pending(args: Mapping[str, Any]) -> JsonObject:
        return pending_result(await backend.pending(None, _limit(args), cursor_argument(args)))

    async def acknowledge(args: Mapping[str, Any]) -> JsonObject:
        return await carry_out(operations.acknowledge(args["annotationId"]))

    async def resolve(args: Mapping[str, Any]) -> JsonObject:
        return await carry_out(operations.resolve(args["annotationId"], args.get("summary")))

    async def dismiss(args: Mapping[str, Any]) -> JsonObject:
        return await carry_out(operations.dismiss(args["annotationId"], args["reason"]))

    async def reply(args: Mapping[str, Any]) -> JsonObject:
        if not args["message"]:
            await backend.get_annotation(args["annotationId"])  # an unknown id is the clearer error
        return await carry_out(operations.reply(args["annotationId"], args["message"]))

    async def watch(args: Mapping[str, Any]) -> JsonObject:
        return await backend.watch(
            args.get("sessionId"),
            clamp(args.get("batchWindowSeconds"), DEFAULT_BATCH_WINDOW, 1, 60),
            clamp(args.get("timeoutSeconds"), DEFAULT_TIMEOUT, 1, 300),
        )

    return {
        "agentation_list_sessions": list_sessions,
        "agentation_get_session": get_session,
        "agentation_get_pending": get_pending,
        "agentation_get_all_pending": get_all_pending,
        "agentation_acknowledge": acknowledge,
        "agentation_resolve": resolve,
        "agentation_dismiss": dismiss,
        "agentation_reply": reply,
        "agentation_watch_annotations": watch,
    }


DEFAULT_MAX_ARGUMENTS = 1024 * 1024


async def call_tool(
    handlers: Mapping[str, Handler],
    name: str,
    arguments: Mapping[str, Any] | None,
    *,
    max_bytes: int = DEFAULT_MAX_ARGUMENTS,
) -> ToolOutcome:
    """Run one tool call and turn its outcome into a tool result (errors included).

    Arguments larger than `max_bytes` as JSON are refused, as an HTTP body
    over the same limit is.
    """
    spec = SPEC_BY_NAME.get(name)
    handler = handlers.get(name)
    if spec is None or handler is None:
        return _error_result(f"Unknown tool: {name}")
    args = arguments or {}
    issues = argument_issues(spec, args)
    if issues:
        return _error_result(json.dumps(issues, indent=2))
    try:
        check_text(args)
        if len(json_bytes(args)) > max_bytes:
            raise InvalidInput("arguments", f"Tool arguments too large: the limit is {max_bytes} bytes.")
        return _text_result(await handler(args))
    except AnnotationNotFound as exc:
        return _error_result(f"Annotation not found: {exc.item_id}")
    except AgentationError as exc:
        return _error_result(str(exc))


def build_mcp_server(
    writer: Writer,
    hub: Hub,
    reader: Reader,
    *,
    max_arguments: int = DEFAULT_MAX_ARGUMENTS,
    features: Features | None = None,
) -> Server[Any]:
    """A fresh MCP server with the nine tools on the local store; one per stdio or HTTP session is fine."""
    return mcp_server_for(build_handlers(writer, hub, reader), max_arguments=max_arguments, features=features)


def mcp_server_for(
    handlers: Mapping[str, Handler], *, max_arguments: int = DEFAULT_MAX_ARGUMENTS, features: Features | None = None
) -> Server[Any]:
    """A fresh MCP server with the nine tools carried out by `handlers`, and `features` besides them."""
    tools = [spec.to_tool() for spec in SPECS]

    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        async with reporting_progress(ctx, params.name, params.arguments):
            outcome = await call_tool(handlers, params.name, params.arguments, max_bytes=max_arguments)
        return outcome.to_result()

    server = Server("agentation", version=__version__, on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    # The SDK wraps every request in an OpenTelemetry span by default; with no exporter installed that is
    # a fifth of a tool call's CPU spent on nothing. The SDK documents emptying this list as the opt-out.
    server.middleware.clear()
    if features is not None:
        features.install(server)
    return server
