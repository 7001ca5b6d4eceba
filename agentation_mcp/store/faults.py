"""The one place where SQLite's errors become ours.

A full disk, an I/O error, a store that turned read-only or damaged, a lock
held too long: `store_fault` turns each into a `StoreFault` whose message
names the file, the problem and what to do, for HTTP and MCP callers alike.
`is_storage_error` tells such an error apart from one that means a bug (a
constraint, a syntax error), which stays an `InternalError` for the one
command that hit it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import apsw

from ..errors import StoreBusy, StoreCorrupt, StoreDiskError, StoreFault, StoreFull, StoreReadOnly

P = ParamSpec("P")
R = TypeVar("R")

# Errors that come from the file, the disk or other processes, not from the statement run.
STORAGE_ERRORS: tuple[type[apsw.Error], ...] = (
    apsw.BusyError,
    apsw.FullError,
    apsw.IOError,
    apsw.ReadOnlyError,
    apsw.CorruptError,
    apsw.NotADBError,
    apsw.CantOpenError,
    apsw.NoMemError,
    apsw.ProtocolError,
)


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, STORAGE_ERRORS)


def where(conn: apsw.Connection) -> str:
    """The store's file as a person knows it, or "the in-memory store"."""
    name = conn.filename
    return name if name and "memdb" not in conn.open_vfs else "the in-memory store"


def store_fault(exc: apsw.Error, conn: apsw.Connection) -> StoreFault:
    """The `StoreFault` for a storage error met on `conn`."""
    path = where(conn)
    if isinstance(exc, apsw.BusyError):
        return StoreBusy()
    if isinstance(exc, apsw.FullError):
        return StoreFull(f"The disk holding {path} is full; free space and retry.")
    if isinstance(exc, apsw.ReadOnlyError):
        return StoreReadOnly(
            f"The store {path} can no longer be written (it or its folder became read-only); "
            "make them writable by this user and retry."
        )
    if isinstance(exc, apsw.CorruptError | apsw.NotADBError):
        return StoreCorrupt(
            f"The store {path} is damaged (SQLite reports corruption). Check it with "
            f"sqlite3 '{path}' 'PRAGMA integrity_check', and see \"When things go wrong\" in the README "
            "for restoring a backup. Reads of undamaged data still work."
        )
    detail = str(exc).strip() or type(exc).__name__
    return StoreDiskError(
        f"The disk holding {path} reported an error ({detail}); check the disk and its free space, then retry."
    )


class _HasConnection(Protocol):
    @property
    def conn(self) -> apsw.Connection: ...


S = TypeVar("S", bound=_HasConnection)


def mapped(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """`fn(source, ...)` raising our `StoreFault` where SQLite raised a storage error."""

    @functools.wraps(fn)
    def call(source: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(source, *args, **kwargs)
        except STORAGE_ERRORS as exc:
            raise store_fault(exc, source.conn) from exc

    return call
