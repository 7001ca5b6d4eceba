"""The toolbar's JSON routes: sessions, annotations, threads and the action request.

Each route reads its body, builds a checked command and hands it to the
writer, so a 2xx means committed; reads go to the read-only connection.
Routes, status codes, field names and error texts follow the reference
(spec section 2.4), with errors that name the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..commands import (
    AddThreadMessage,
    CreateAnnotation,
    CreateSession,
    DeleteAnnotation,
    NewThreadMessage,
    RequestAction,
    UpdateAnnotation,
    check_text,
)
from ..errors import (
    AgentationError,
    AnnotationNotFound,
    InvalidInput,
    SessionNotFound,
    StoreClosed,
    StoreFault,
    StoreFull,
)
from ..models import JsonObject, parse_js_float, printable
from ..store import reads
from ..store.reads import Reader
from ..store.writer import Writer
from .streams import Listeners
from .wire import Request

FireWebhooks = Callable[[str, JsonObject], int]


class HttpError(Exception):
    """Answer the request with this status and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        message = printable(message)
        super().__init__(status, message)
        self.status = status
        self.message = message


NOT_FOUND = HttpError(404, "Not found")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=parse_js_float)


def decode_json(raw: bytes) -> Any:
    """A request body as JSON, numbers as JavaScript holds them; raises `ValueError`."""
    return _DECODER.decode(raw.decode("utf-8"))


async def json_body(request: Request) -> Any:
    """The request body as JSON; an empty body is `{}`. Raises `HttpError(400)` for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = decode_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "Invalid JSON") from None
    if b"\\ud" in raw or b"\\uD" in raw:  # only an escape can spell a lone surrogate
        check_text(body)
    return body


def domain_error(exc: AgentationError) -> HttpError:
    if isinstance(exc, SessionNotFound):
        return HttpError(404, "Session not found")
    if isinstance(exc, AnnotationNotFound):
        return HttpError(404, "Annotation not found")
    if isinstance(exc, InvalidInput):
        return HttpError(400, str(exc))
    if isinstance(exc, StoreFull):
        return HttpError(507, str(exc))
    if isinstance(exc, StoreFault | StoreClosed):
        return HttpError(503, str(exc))
    return HttpError(500, str(exc))


class JsonRoutes:
    def __init__(
        self, writer: Writer, reader: Reader, listeners: Listeners, fire_webhooks: FireWebhooks | None
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.listeners = listeners
        self.fire_webhooks = fire_webhooks

    async def handle(self, request: Request, parts: list[str]) -> tuple[int, Any]:
        """(status, JSON body) for the route `parts` names; raises `HttpError` or `AgentationError`.

        The body is an object to encode, or `bytes` already encoded.
        """
        reader, writer = self.reader, self.writer
        match request.method, parts:
            case "GET", ["sessions"]:
                return 200, reads.list_sessions(reader)
            case "POST", ["sessions"]:
                body = await json_body(request)
                return 201, await writer.submit_json(CreateSession.from_body(body))
            case "GET", ["sessions", session_id]:
                return 200, reads.get_session(reader, session_id)
            case "GET", ["sessions", session_id, "pending"]:
                pending = reads.pending_annotations(reader, session_id)
                return 200, {"count": len(pending), "annotations": pending}
            case "GET", ["pending"]:
                pending = reads.pending_annotations(reader, None)
                return 200, {"count": len(pending), "annotations": pending}
            case "POST", ["sessions", session_id, "annotations"]:
                body = await json_body(request)
                return 201, await writer.submit_json(CreateAnnotation.from_body(session_id, body))
            case "POST", ["sessions", session_id, "action"]:
                body = await json_body(request)
                if not reads.session_exists(reader, session_id):
                    raise SessionNotFound(session_id)
                return 200, await self._request_action(RequestAction.from_body(session_id, body))
            case "GET", ["annotations", annotation_id]:
                return 200, reads.get_annotation(reader, annotation_id)
            case "PATCH", ["annotations", annotation_id]:
                body = await json_body(request)
                return 200, await writer.submit_json(UpdateAnnotation.from_body(annotation_id, body))
            case "DELETE", ["annotations", annotation_id]:
                return 200, await writer.submit_json(DeleteAnnotation(annotation_id))
            case "POST", ["annotations", annotation_id, "thread"]:
                body = await json_body(request)
                message = NewThreadMessage.from_body(body)
                return 201, await writer.submit_json(AddThreadMessage(annotation_id, message))
        raise NOT_FOUND

    async def _request_action(self, command: RequestAction) -> JsonObject:
        result = await self.writer.submit(command)
        listeners = self.listeners.receiving(command.session_id)
        webhooks = 0
        if self.fire_webhooks is not None:
            webhooks = self.fire_webhooks(command.session_id, result["payload"])
        return {
            "success": True,
            "annotationCount": result["annotationCount"],
            "delivered": {"sseListeners": listeners, "webhooks": webhooks, "total": listeners + webhooks},
        }
