"""The annotations as the command line sees them: a client for the local store, one interface for both kinds.

`AnnotationClient` is what the human commands use; `LocalClient` works on
the store file directly, and `remote.RemoteClient` on another server's HTTP
API. A local write is a command committed by the same transaction function
the writer uses, so every running server publishes it to its listeners
through the cross-process tail, in sequence order with its own writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from .. import __version__
from ..commands import Command
from ..errors import AnnotationNotFound, SessionNotFound
from ..models import JsonObject
from ..store import connection, presence, reads, schema, transactions
from ..store.connection import StoreLocation
from ..store.reads import Reader


class AnnotationClient(Protocol):
    def list_sessions(self) -> list[JsonObject]: ...

    def get_session(self, session_id: str) -> JsonObject:
        """The session with its annotations; raises `SessionNotFound`."""
        ...

    def pending(self, session_id: str | None) -> list[JsonObject]:
        """Pending annotations of one session (raises `SessionNotFound`) or of all."""
        ...

    def get_annotation(self, annotation_id: str) -> JsonObject:
        """Raises `AnnotationNotFound`."""
        ...

    def submit(self, command: Command) -> None:
        """Carry out one change; raises its `AgentationError`."""
        ...

    def close(self) -> None: ...


class LocalClient:
    """The store file itself. Reads never create it; the first write does."""

    def __init__(self, path: Path) -> None:
        self.location = StoreLocation(path)
        self._reader: Reader | None = None

    def _read(self) -> Reader | None:
        if self._reader is None:
            if self.location.path is None or not self.location.path.exists():
                return None
            self._reader = Reader(connection.open_read_connection(self.location), None)
        return self._reader

    def list_sessions(self) -> list[JsonObject]:
        reader = self._read()
        return reads.list_sessions(reader) if reader else []

    def get_session(self, session_id: str) -> JsonObject:
        reader = self._read()
        if reader is None:
            raise SessionNotFound(session_id)
        return reads.get_session(reader, session_id)

    def pending(self, session_id: str | None) -> list[JsonObject]:
        reader = self._read()
        if reader is None:
            if session_id is not None:
                raise SessionNotFound(session_id)
            return []
        if session_id is not None and not reads.session_exists(reader, session_id):
            raise SessionNotFound(session_id)
        return reads.pending_annotations(reader, session_id)

    def get_annotation(self, annotation_id: str) -> JsonObject:
        reader = self._read()
        if reader is None:
            raise AnnotationNotFound(annotation_id)
        return reads.get_annotation(reader, annotation_id)

    def submit(self, command: Command) -> None:
        if self.location.path is not None and not self.location.path.exists():
            # Every command here names an annotation, and without a store there is none.
            raise AnnotationNotFound(getattr(command, "annotation_id", ""))
        conn = connection.open_write_connection(self.location)
        try:
            schema.migrate(conn)
            [outcome] = transactions.commit_batch(conn, [command])
            outcome.unwrap()
        finally:
            conn.close()

    def status(self, now: float | None = None) -> JsonObject:
        """The document `/status` answers, read from the store without a server: the npm keys and `startedAt`
        are the port owner's as it last recorded them (none without a live owner)."""
        now = time.time() if now is None else now
        reader = self._read()
        owner = presence.owner_detail(reader, now) if reader is not None else None
        doc: JsonObject = {
            "mode": "local",
            "webhooksConfigured": False,
            "webhookCount": 0,
            "activeListeners": 0,
            "agentListeners": 0,
        }
        doc.update({key: value for key, value in (owner or {}).items() if key in doc})
        doc["version"] = __version__
        doc["store"] = str(self.location.path)
        doc["startedAt"] = owner.get("startedAt") if owner is not None else None
        if reader is None:
            empty = {"sessions": 0, **dict.fromkeys(presence.STATUSES, 0)}
            doc.update(processes=[], agents=[], pages=[], counts=empty, lastPageSeenAt=None, refusedOrigins=[])
        else:
            doc.update(presence.status(reader, now))
        return doc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.conn.close()
            self._reader = None
