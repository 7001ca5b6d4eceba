"""The prompts: ready-made instructions a client offers as commands (Claude Code:
`/mcp__agentation__fix-annotations`), with the pending annotations inlined so one command does the job.

- `fix-annotations` [sessionId]: the workflow (acknowledge, fix, then resolve, reply or dismiss)
  and what is pending now, within the output budget.
- `watch-and-fix` [sessionId]: the same, as a loop on `agentation_watch_annotations`.
- `review-session` sessionId: one page's annotations and their threads, to read.

`completion/complete` offers the known session ids (with their page URLs) for `sessionId`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from ..errors import AgentationError
from . import text
from .budget import DEFAULT_BUDGET

if TYPE_CHECKING:
    from .tools import ToolBackend

INVALID_PARAMS = -32602
MAX_COMPLETIONS = 100  # the most values one completion may carry

_SESSION_OPTIONAL = types.PromptArgument(
    name="sessionId", description="Only this session's annotations (default: every session)", required=False
)
PROMPTS = (
    types.Prompt(
        name="fix-annotations",
        title="Fix the pending annotations",
        description="Work through the annotations people left in the browser: acknowledge, fix, resolve.",
        arguments=[_SESSION_OPTIONAL],
    ),
    types.Prompt(
        name="watch-and-fix",
        title="Watch for annotations and fix them as they come",
        description="Wait for new annotations in a loop and fix each batch, until you are told to stop.",
        arguments=[_SESSION_OPTIONAL],
    ),
    types.Prompt(
        name="review-session",
        title="Review one page's annotations",
        description="A readable account of one session's annotations and their threads.",
        arguments=[types.PromptArgument(name="sessionId", description="The session to review", required=True)],
    ),
)
_BY_NAME = {p.name: p for p in PROMPTS}

_WORKFLOW = """For each annotation:

1. Call `agentation_acknowledge` with its `annotationId`, so the person sees you are on it.
2. Make the change it asks for. Its `sourceFile`, when present, names the file and line that rendered \
the element: start there; otherwise find the element from its path, text and components.
3. Then one of:
   - `agentation_resolve` with a short `summary` of what you changed, once it is done;
   - `agentation_reply` with a `message`, to ask the person a question when the request is unclear \
(leave it open);
   - `agentation_dismiss` with a `reason`, when it should not be done.

Resolve only what the person asked for and accepted; if they reject a change, leave the annotation open."""


def _user(body: str) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=types.TextContent(type="text", text=body))


class Prompts:
    """The prompt handlers, reading through `backend` (the local store or another server)."""

    def __init__(self, backend: ToolBackend) -> None:
        self._backend = backend

    async def list(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=list(PROMPTS))

    async def get(self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        prompt = _BY_NAME.get(params.name)
        if prompt is None:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}")
        args: Mapping[str, str] = params.arguments or {}
        session_id = args.get("sessionId") or None
        try:
            if prompt.name == "review-session":
                if session_id is None:
                    raise MCPError(INVALID_PARAMS, "review-session needs a sessionId.")
                body = await self._review(session_id)
            else:
                body = await self._fix(session_id, watch=prompt.name == "watch-and-fix")
        except AgentationError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        return types.GetPromptResult(description=prompt.description, messages=[_user(body)])

    async def _pending_now(self, session_id: str | None) -> str:
        page = await self._backend.pending(session_id, None, None)
        if not page.views:
            where = f" in session `{session_id}`" if session_id else ""
            return f"Nothing is pending{where} right now."
        listed = text.annotation_list(page.views)
        header = f"Pending now ({len(page.views)}{f' of {len(page.views) + page.more}' if page.more else ''}):"
        tail = ""
        if page.more:
            tool = "agentation_get_pending" if session_id else "agentation_get_all_pending"
            tail = f"\n\n{page.more} more are pending: get them with `{tool}` and `after` = `{page.after}`."
        return f"{header}\n\n{listed}{tail}"

    async def _fix(self, session_id: str | None, *, watch: bool) -> str:
        scope = f"session `{session_id}`" if session_id else "every session"
        if watch:
            loop = (
                f"Work in a loop until I tell you to stop. Call `agentation_watch_annotations`"
                f"{f' with `sessionId` = `{session_id}`' if session_id else ''}; it returns the annotations "
                "already pending at once, or waits for new ones and returns them as a batch. Fix each batch "
                "as below, then call it again. When it returns with `timeout: true`, nothing came: call it "
                "again."
            )
            return f"{loop}\n\n{_WORKFLOW}\n\n{await self._pending_now(session_id)}"
        intro = f"People left feedback on the page in the browser ({scope}). Fix it with the agentation tools."
        return f"{intro}\n\n{_WORKFLOW}\n\n{await self._pending_now(session_id)}"

    async def _review(self, session_id: str) -> str:
        session = await self._backend.get_session(session_id)
        intro = (
            "Here is one page's annotations, with their threads. Summarise what was asked, what was done and "
            "what is still open; change nothing unless I ask."
        )
        return f"{intro}\n\n{text.session_document(session, DEFAULT_BUDGET)}"

    async def complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        """Session ids for a `sessionId` argument, of the prompts and the session template alike."""
        if params.argument.name != "sessionId":
            return types.CompleteResult(completion=types.Completion(values=[]))
        typed = params.argument.value
        sessions = await self._backend.list_sessions()
        matches = [s for s in sessions if str(s["id"]).startswith(typed) or typed.lower() in str(s["url"]).lower()]
        values = [str(s["id"]) for s in matches[:MAX_COMPLETIONS]]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(matches), has_more=len(matches) > len(values))
        )
