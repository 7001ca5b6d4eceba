"""The resources: annotations as Markdown documents a client attaches to a conversation (Claude Code:
`@agentation:agentation://pending`).

- `agentation://pending`: every pending annotation, a page within the output budget;
- `agentation://sessions`: every session;
- `agentation://sessions/{sessionId}`: one session with its annotations (also listed, one per session);
- `agentation://annotations/{annotationId}`: one annotation with its thread.

`resources/subscribe` marks a URI for `notifications/resources/updated`; `pushes` sends those, and
`notifications/resources/list_changed` when a session is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from ..errors import AgentationError, AnnotationNotFound, SessionNotFound
from . import text
from .budget import DEFAULT_BUDGET
from .peers import Peers
from .uris import ANNOTATION_PREFIX, PENDING, SESSION_PREFIX, SESSIONS

if TYPE_CHECKING:
    from .tools import ToolBackend

RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = -32602


def _markdown(name: str, title: str, uri: str, description: str) -> types.Resource:
    return types.Resource(name=name, title=title, uri=uri, description=description, mime_type=text.MIME_TYPE)


FIXED = (
    _markdown(
        "pending",
        "Pending annotations",
        PENDING,
        "Every annotation nobody has acknowledged, resolved or dismissed yet, newest page first.",
    ),
    _markdown("sessions", "Annotation sessions", SESSIONS, "Every annotated page, newest first, with its session id."),
)


def _markdown_template(name: str, title: str, uri_template: str, description: str) -> types.ResourceTemplate:
    return types.ResourceTemplate(
        name=name, title=title, uri_template=uri_template, description=description, mime_type=text.MIME_TYPE
    )


TEMPLATES = (
    _markdown_template(
        "session",
        "One session",
        SESSION_PREFIX + "{sessionId}",
        "One annotated page with all its annotations and their threads.",
    ),
    _markdown_template(
        "annotation", "One annotation", ANNOTATION_PREFIX + "{annotationId}", "One annotation with its thread."
    ),
)


class Resources:
    """The resource handlers, reading through `backend` (the local store or another server)."""

    def __init__(self, backend: ToolBackend, peers: Peers) -> None:
        self._backend = backend
        self._peers = peers

    async def list(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        sessions = [
            types.Resource(
                name=f"session {s['id']}",
                title=f"Annotations on {s['url']}",
                uri=SESSION_PREFIX + str(s["id"]),
                description=f"The session of {s['url']}, created {s['createdAt']}.",
                mime_type=text.MIME_TYPE,
            )
            for s in await self._backend.list_sessions()
        ]
        return types.ListResourcesResult(resources=[*FIXED, *sessions])

    async def templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=list(TEMPLATES))

    async def read(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            body = await self._document(uri)
        except (SessionNotFound, AnnotationNotFound) as exc:
            raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri} ({exc})", {"uri": uri}) from None
        except AgentationError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type=text.MIME_TYPE, text=body)]
        )

    async def _document(self, uri: str) -> str:
        if uri == PENDING:
            page = await self._backend.pending(None, None, None)
            return text.pending_document(page.views, page.more, page.after)
        if uri == SESSIONS:
            return text.sessions_document(await self._backend.list_sessions())
        if uri.startswith(SESSION_PREFIX) and len(uri) > len(SESSION_PREFIX):
            return text.session_document(await self._backend.get_session(uri[len(SESSION_PREFIX) :]), DEFAULT_BUDGET)
        if uri.startswith(ANNOTATION_PREFIX) and len(uri) > len(ANNOTATION_PREFIX):
            annotation = await self._backend.get_annotation(uri[len(ANNOTATION_PREFIX) :])
            return "# Annotation\n\n" + text.annotation_block(annotation, heading="##")
        raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        self._peers.peer(ctx).subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        self._peers.peer(ctx).subscriptions.discard(str(params.uri))
        return types.EmptyResult()
