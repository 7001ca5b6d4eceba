"""The annotations of another agentation server, through its HTTP API (`--http-url`).

`RemoteClient` (blocking, for the command line) and `AsyncRemoteClient`
(for the MCP tools of `server --mcp-only --http-url`) give the same results
and error texts as the local store: a 404 becomes the same "Annotation not
found: <id>", and a server that cannot be reached is one clear error naming
its URL, until it comes back. `x-api-key` is sent when a key is given.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any, cast
from urllib.parse import quote

import httpx2

from ..commands import AddThreadMessage, Command, UpdateAnnotation
from ..errors import AgentationError, AnnotationNotFound, SessionNotFound
from ..models import Event, JsonObject

TIMEOUT = httpx2.Timeout(10.0, connect=3.0)
Request = tuple[str, str, Any]
"""(method, path, JSON body) of one request."""


class RemoteUnavailable(AgentationError):
    """The remote server could not be reached, or answered with something other than its API."""


class _RemoteError(AgentationError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Api:
    """What both clients share: the requests each operation makes and how an answer is read."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"x-api-key": api_key} if api_key else {}

    def unreachable(self, exc: Exception) -> RemoteUnavailable:
        return RemoteUnavailable(
            f"Cannot reach the agentation server at {self.base_url}: {exc or type(exc).__name__}. "
            "Check that it is running and the URL is right."
        )

    def answer(self, response: httpx2.Response, method: str, path: str) -> Any:
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


def not_found_as(exc: _RemoteError, not_found: AgentationError) -> AgentationError:
    return not_found if exc.status == 404 else AgentationError(str(exc))


def writes(command: Command) -> list[Request]:
    """The requests that carry out `command`: those the npm server's own remote mode makes."""
    match command:
        case UpdateAnnotation():
            target = f"/annotations/{segment(command.annotation_id)}"
            requests: list[Request] = [("PATCH", target, {**command.changes, **command.extra_changes})]
            if command.message is not None:
                message = {"role": command.message.role, "content": command.message.content}
                requests.append(("POST", f"{target}/thread", message))
            return requests
        case AddThreadMessage():
            message = {"role": command.message.role, "content": command.message.content}
            return [("POST", f"/annotations/{segment(command.annotation_id)}/thread", message)]
    raise TypeError(f"not a change made through another server: {command!r}")


def segment(value: str) -> str:
    return quote(value, safe="")


def pending_path(session_id: str | None) -> str:
    return "/pending" if session_id is None else f"/sessions/{segment(session_id)}/pending"


class RemoteClient(_Api):
    """Blocking: one request at a time (the command line)."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        super().__init__(base_url, api_key)
        self._http = httpx2.Client(base_url=self.base_url, headers=self.headers, timeout=TIMEOUT)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx2.HTTPError as exc:
            raise self.unreachable(exc) from None
        return self.answer(response, method, path)

    def list_sessions(self) -> list[JsonObject]:
        return cast(list[JsonObject], self._call("GET", "/sessions"))

    def get_session(self, session_id: str) -> JsonObject:
        try:
            return cast(JsonObject, self._call("GET", f"/sessions/{segment(session_id)}"))
        except _RemoteError as exc:
            raise not_found_as(exc, SessionNotFound(session_id)) from None

    def pending(self, session_id: str | None) -> list[JsonObject]:
        try:
            return cast(list[JsonObject], self._call("GET", pending_path(session_id))["annotations"])
        except _RemoteError as exc:
            raise not_found_as(exc, SessionNotFound(session_id or "")) from None

    def get_annotation(self, annotation_id: str) -> JsonObject:
        try:
            return cast(JsonObject, self._call("GET", f"/annotations/{segment(annotation_id)}"))
        except _RemoteError as exc:
            raise not_found_as(exc, AnnotationNotFound(annotation_id)) from None

    def submit(self, command: Command) -> None:
        for method, path, body in writes(command):
            try:
                self._call(method, path, body)
            except _RemoteError as exc:
                raise not_found_as(exc, AnnotationNotFound(getattr(command, "annotation_id", ""))) from None

    def status(self) -> JsonObject:
        """The server's `/status` document."""
        return cast(JsonObject, self._call("GET", "/status"))

    def close(self) -> None:
        self._http.close()


class AsyncRemoteClient(_Api):
    """For the MCP tools of a server in remote mode; `events` follows the remote SSE stream."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        super().__init__(base_url, api_key)
        self._http = httpx2.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=TIMEOUT)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx2.HTTPError as exc:
            raise self.unreachable(exc) from None
        return self.answer(response, method, path)

    async def list_sessions(self) -> list[JsonObject]:
        return cast(list[JsonObject], await self._call("GET", "/sessions"))

    async def get_session(self, session_id: str) -> JsonObject:
        try:
            return cast(JsonObject, await self._call("GET", f"/sessions/{segment(session_id)}"))
        except _RemoteError as exc:
            raise not_found_as(exc, SessionNotFound(session_id)) from None

    async def pending(self, session_id: str | None) -> list[JsonObject]:
        try:
            return cast(list[JsonObject], (await self._call("GET", pending_path(session_id)))["annotations"])
        except _RemoteError as exc:
            raise not_found_as(exc, SessionNotFound(session_id or "")) from None

    async def get_annotation(self, annotation_id: str) -> JsonObject:
        try:
            return cast(JsonObject, await self._call("GET", f"/annotations/{segment(annotation_id)}"))
        except _RemoteError as exc:
            raise not_found_as(exc, AnnotationNotFound(annotation_id)) from None

    async def submit(self, command: Command) -> None:
        for method, path, body in writes(command):
            try:
                await self._call(method, path, body)
            except _RemoteError as exc:
                raise not_found_as(exc, AnnotationNotFound(getattr(command, "annotation_id", ""))) from None

    async def events(
        self, session_id: str | None, last_id: str | None = None, on_open: Callable[[], object] | None = None
    ) -> AsyncGenerator[Event, None]:
        """The remote server's events from now on (or after `last_id`); ends when the stream drops.

        `on_open` is called once the stream is open, before its first event.
        """
        path = "/events" if session_id is None else f"/sessions/{segment(session_id)}/events"
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with self._http.stream("GET", path, headers=headers, timeout=httpx2.Timeout(None)) as response:
                if response.status_code != 200:
                    await response.aread()
                    self.answer(response, "GET", path)
                    raise RemoteUnavailable(f"{self.base_url}{path} answered {response.status_code}")
                if on_open is not None:
                    on_open()
                fields: dict[str, str] = {}
                lines = cast(AsyncGenerator[str, None], response.aiter_lines())
                async with aclosing(lines):
                    async for line in lines:
                        if line == "":
                            if "data" in fields:
                                data = json.loads(fields["data"])
                                yield Event(
                                    data["type"],
                                    data.get("sessionId", ""),
                                    data.get("payload"),
                                    int(fields.get("id") or data.get("sequence") or 0),
                                    data.get("timestamp", ""),
                                )
                            fields = {}
                        elif not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
        except httpx2.HTTPError as exc:
            raise self.unreachable(exc) from None

    async def aclose(self) -> None:
        await self._http.aclose()
