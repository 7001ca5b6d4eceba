"""The exception tree of agentation-mcp.

Domain errors are values: the writer rolls back the one command that raised
one and hands it to the caller, and the edges (MCP tools, HTTP routes) turn it
into the client's error text. Anything outside this tree is a bug.

    AgentationError
    ├── NotFound
    │   ├── SessionNotFound        -> "Session not found: <id>"
    │   └── AnnotationNotFound     -> "Annotation not found: <id>"
    ├── InvalidInput               -> names the field and what it accepts
    ├── StoreFault                 -> the store cannot do it now; the message says why and what to do
    │   ├── StoreBusy              -> another process held the write lock too long
    │   ├── StoreFull              -> the disk holding the store is full
    │   ├── StoreReadOnly          -> the store can no longer be written
    │   ├── StoreDiskError         -> the disk reported an I/O error
    │   └── StoreCorrupt           -> SQLite found the store damaged
    ├── StoreClosed                -> the writer has shut down
    ├── StoreUnusable              -> the store cannot be opened at start-up
    ├── InternalError              -> a bug; the details are in the log, not in the reply
    ├── SchemaTooNew               -> the store was written by a newer version
    └── ConfigError                -> a setting from argv or the environment is unusable
"""

from __future__ import annotations


class AgentationError(Exception):
    """Base of every error this package raises on purpose."""


class NotFound(AgentationError):
    """Something named by id does not exist."""

    kind = "Item"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"{self.kind} not found: {item_id}")
        self.item_id = item_id


class SessionNotFound(NotFound):
    kind = "Session"


class AnnotationNotFound(NotFound):
    kind = "Annotation"


class InvalidInput(AgentationError):
    """A request field is missing, of the wrong type, or not an allowed value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class StoreFault(AgentationError):
    """The store could not carry out a read or a write for a reason outside the request.

    Nothing was changed; the same request can succeed once the fault is gone.
    Only `faults.store_fault` makes these from SQLite's errors.
    """


class StoreBusy(StoreFault):
    """The store stayed locked by another process past the busy timeout."""

    def __init__(self) -> None:
        super().__init__("The annotation store is busy (locked by another process); try again.")


class StoreFull(StoreFault):
    """The disk holding the store has no room for the write."""


class StoreReadOnly(StoreFault):
    """The store file or its folder can no longer be written."""


class StoreDiskError(StoreFault):
    """The operating system reported an I/O error reading or writing the store."""


class StoreCorrupt(StoreFault):
    """SQLite found the store's file damaged."""


class StoreClosed(AgentationError):
    """The writer is no longer accepting commands (the server is shutting down)."""

    def __init__(self) -> None:
        super().__init__("The annotation store is closed; the server is shutting down.")


class SchemaTooNew(AgentationError):
    """The store's schema version is newer than this program understands."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"The store has schema version {found}, but this agentation-mcp understands "
            f"versions up to {supported}. Upgrade agentation-mcp to use this store."
        )
        self.found = found
        self.supported = supported


class StoreUnusable(AgentationError):
    """The store cannot be opened at start-up; the message names the file, the problem and the fix."""


class InternalError(AgentationError):
    """A failure this program did not expect (a bug); the log on stderr has the details."""

    def __init__(self) -> None:
        super().__init__("The server could not apply this change; its log on stderr has the details.")


class ConfigError(AgentationError):
    """A command-line option or environment variable cannot be used."""


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in `group` and in the groups nested in it, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found
