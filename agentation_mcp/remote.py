"""The annotations of another agentation server, through its HTTP API (`--http-url`).

`RemoteClient` implements `annotation_client.AnnotationClient` with the
same results and error texts as the local store: a 404 becomes the same
"Annotation not found: <id>", and a server that cannot be reached is one
clear error naming its URL. `x-api-key` is sent when a key is given.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx2

from .commands import AddThreadMessage, Command, UpdateAnnotation
from .errors import AgentationError, AnnotationNotFound, SessionNotFound
from .models import JsonObject

TIMEOUT = httpx2.Timeout(10.0, connect=3.0)


class RemoteUnavailable(AgentationError):
    """The remote server could not be reached, or answered with something other than its API."""


class RemoteClient:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx2.Client(base_url=self.base_url, headers=headers, timeout=TIMEOUT)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx2.HTTPError as exc:
            raise RemoteUnavailable(
                f"Cannot reach the agentation server at {self.base_url}: {exc or type(exc).__name__}. "
                "Check that it is running and the URL is right."
            ) from None
        if response.status_code == 401:
            raise RemoteUnavailable(f"The agentation server at {self.base_url} refused the access key (401).")
        try:
            data = response.json()
        except ValueError:
            raise RemoteUnavailable(
                f"The server at {self.base_url} answered {method} {path} with {response.status_code}, not JSON: "
                "is it an agentation server?"
            ) from None
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            raise _RemoteError(response.status_code, str(error or response.reason_phrase))
        return data

    def list_sessions(self) -> list[JsonObject]:
        sessions: list[JsonObject] = self._call("GET", "/sessions")
        return sessions

    def get_session(self, session_id: str) -> JsonObject:
        try:
            session: JsonObject = self._call("GET", f"/sessions/{_segment(session_id)}")
        except _RemoteError as exc:
            raise exc.as_not_found(SessionNotFound(session_id)) from None
        return session

    def pending(self, session_id: str | None) -> list[JsonObject]:
        path = "/pending" if session_id is None else f"/sessions/{_segment(session_id)}/pending"
        try:
            data = self._call("GET", path)
        except _RemoteError as exc:
            raise exc.as_not_found(SessionNotFound(session_id or "")) from None
        annotations: list[JsonObject] = data["annotations"]
        return annotations

    def get_annotation(self, annotation_id: str) -> JsonObject:
        try:
            annotation: JsonObject = self._call("GET", f"/annotations/{_segment(annotation_id)}")
        except _RemoteError as exc:
            raise exc.as_not_found(AnnotationNotFound(annotation_id)) from None
        return annotation

    def submit(self, command: Command) -> None:
        """The HTTP requests the npm server's own remote mode makes for each change."""
        match command:
            case UpdateAnnotation():
                target = f"/annotations/{_segment(command.annotation_id)}"
                self._write(command.annotation_id, "PATCH", target, {**command.changes, **command.extra_changes})
                if command.message is not None:
                    message = {"role": command.message.role, "content": command.message.content}
                    self._write(command.annotation_id, "POST", f"{target}/thread", message)
            case AddThreadMessage():
                message = {"role": command.message.role, "content": command.message.content}
                self._write(
                    command.annotation_id, "POST", f"/annotations/{_segment(command.annotation_id)}/thread", message
                )
            case _:
                raise TypeError(f"not a change the command line makes: {command!r}")

    def _write(self, annotation_id: str, method: str, path: str, body: JsonObject) -> None:
        try:
            self._call(method, path, body)
        except _RemoteError as exc:
            raise exc.as_not_found(AnnotationNotFound(annotation_id)) from None

    def close(self) -> None:
        self._http.close()


class _RemoteError(AgentationError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def as_not_found(self, not_found: AgentationError) -> AgentationError:
        return not_found if self.status == 404 else AgentationError(str(self))


def _segment(value: str) -> str:
    return quote(value, safe="")
