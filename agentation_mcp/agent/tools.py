"""What the nine MCP tools do, without the SDK: their handlers over a backend, and one call's outcome.

Result texts (2-space indented JSON) and error texts match the reference.
Each result also carries the same data as structured content. Tools read
through the store reader and write through the writer, so a tool's reply
means its change is committed. The specs are in `specs`; the SDK's server
that serves them is built in `sdk_server`; quick calls on stdio skip it
(`direct_calls`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .. import operations
from ..clients.watch import DEFAULT_BATCH_WINDOW, DEFAULT_TIMEOUT, clamp, watch_annotations, watch_remote
from ..commands import Command, check_text
from ..errors import AgentationError, AnnotationNotFound, InvalidInput
from ..models import JsonObject, agent_view, json_bytes, printable, session_summary, to_json
from ..store import reads
from ..store.hub import Hub
from ..store.reads import Reader
from ..store.writer import Writer
from .budget import (
    PageBudget,
    cursor_argument,
    decode_id,
    decode_position,
    id_cursor,
    position_cursor,
)
from .specs import MAX_LIMIT, SPEC_BY_NAME, argument_issues
from .write_order import Turn

if TYPE_CHECKING:
    from ..clients.remote import AsyncRemoteClient

Handler = Callable[[Mapping[str, Any], Turn | None], Awaitable[JsonObject]]
"""A tool's behaviour: its checked arguments, and the turn its write waits for (None: no order to keep)."""


# Above this size a result goes out as text only: one copy of the data, not two.
STRUCTURED_MAX_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call answers: its text (JSON, or an error), the data again as structured content when
    small enough, and whether the call failed."""

    text: str
    structured_content: JsonObject | None = None
    is_error: bool = False

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

    async def carry_out(operation: tuple[Command, JsonObject], turn: Turn | None) -> JsonObject:
        command, result = operation
        if turn is None:
            await backend.submit(command)
        else:
            await turn.wait()
            await backend.submit(command, turn.pass_on)
        return result

    async def list_sessions(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return {"sessions": [session_summary(s) for s in await backend.list_sessions()]}

    async def get_session(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return await backend.get_session(args["sessionId"])

    async def get_pending(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return pending_result(await backend.pending(args["sessionId"], _limit(args), cursor_argument(args)))

    async def get_all_pending(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return pending_result(await backend.pending(None, _limit(args), cursor_argument(args)))

    async def acknowledge(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return await carry_out(operations.acknowledge(args["annotationId"]), turn)

    async def resolve(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return await carry_out(operations.resolve(args["annotationId"], args.get("summary")), turn)

    async def dismiss(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        return await carry_out(operations.dismiss(args["annotationId"], args["reason"]), turn)

    async def reply(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
        if not args["message"]:
            await backend.get_annotation(args["annotationId"])  # an unknown id is the clearer error
        return await carry_out(operations.reply(args["annotationId"], args["message"]), turn)

    async def watch(args: Mapping[str, Any], turn: Turn | None) -> JsonObject:
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
    turn: Turn | None = None,
) -> ToolOutcome:
    """Run one tool call and turn its outcome into a tool result (errors included); a write waits for `turn`.

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
        return _text_result(await handler(args, turn))
    except AnnotationNotFound as exc:
        return _error_result(f"Annotation not found: {exc.item_id}")
    except AgentationError as exc:
        return _error_result(str(exc))
