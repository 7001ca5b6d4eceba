"""Opening the store: where it lives, its connections, and making commits durable.

The writer's connection is the only one that writes; reads take a read-only
connection of their own (see `reads`), and `WalSync` flushes each commit to
disk off the event loop. How commands are committed is `transactions`'s job,
what they write is `changes`'s. Nothing here awaits or knows about trio.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import apsw

from ..errors import StoreUnusable
from .faults import is_storage_error, store_fault

BUSY_TIMEOUT_MS = 5000
Connection = apsw.Connection
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where the store lives: a file, or a database private to this process."""

    path: Path | None  # None: in memory
    memory_name: str = ""

    @property
    def in_memory(self) -> bool:
        return self.path is None

    @classmethod
    def memory(cls) -> StoreLocation:
        return cls(None, f"/agentation-{os.getpid()}-{uuid.uuid4().hex}")


def _memory_uri(location: StoreLocation) -> str:
    # SQLite's memdb VFS shares one database between the connections of a
    # process that open the same "/name"; it lives until the last one closes.
    return f"file:{location.memory_name}?vfs=memdb"


def open_write_connection(location: StoreLocation) -> apsw.Connection:
    """The writer's connection: creates the file and folder, WAL, full sync, foreign keys."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    if location.path is None:
        conn = apsw.Connection(_memory_uri(location), flags=flags)
    else:
        location.path.parent.mkdir(parents=True, exist_ok=True)
        conn = apsw.Connection(str(location.path), flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    if location.path is not None:
        for _ in range(20):
            try:
                conn.pragma("journal_mode", "wal")
                break
            except apsw.BusyError:
                continue
        conn.pragma("synchronous", "FULL")
    conn.pragma("foreign_keys", True)
    return conn


class LockWait:
    """How the writer's connection waits while another process holds the write lock: as long as SQLite's
    busy timeout would, but `stop` (at shutdown) ends every wait at once.

    SQLite's own busy timeout cannot be cut short (not even by an interrupt),
    so a server stopping while another process held the store locked used to
    linger half a minute with a queued write; now that write fails as busy,
    and its caller, already gone, was never told it succeeded.
    """

    # Pauses between tries, in ms: SQLite's own schedule.
    PAUSES_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
    # A wait this long gets a line on stderr: other servers hold the lock for milliseconds, so this is
    # something else (a `sqlite3` shell with a transaction open, say).
    NOTICE_AFTER = 1.0

    def __init__(self, timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.timeout = timeout_ms / 1000
        self._stopped = threading.Event()
        self._since = 0.0
        self._noticed = False

    def install(self, conn: apsw.Connection) -> None:
        """Make `conn` wait for locks this way (replacing any busy timeout it has)."""
        conn.set_busy_handler(self)

    def stop(self) -> None:
        """End the wait under way, and wait no more: a locked store now fails at once."""
        self._stopped.set()

    def __call__(self, tries: int) -> bool:
        """SQLite's busy handler: whether to try for the lock again."""
        now = time.monotonic()
        if tries == 0:
            self._since = now
            self._noticed = False
        waited = now - self._since
        if self._stopped.is_set() or waited >= self.timeout:
            return False
        if waited >= self.NOTICE_AFTER and not self._noticed:
            self._noticed = True
            log.warning("[Store] Writes are waiting: another process holds the store's write lock")
        remaining = self.timeout - waited
        pause = self.PAUSES_MS[min(tries, len(self.PAUSES_MS) - 1)] / 1000
        return not self._stopped.wait(min(pause, remaining))


def unusable(exc: BaseException, location: StoreLocation) -> StoreUnusable | None:
    """What went wrong opening the store, in one line a person can act on; None for anything else."""
    path = location.path
    if path is None:
        return None
    if isinstance(exc, OSError) and not isinstance(exc, apsw.Error) and not path.parent.is_dir():
        return StoreUnusable(
            f"Cannot create the store's folder {path.parent}: {exc.strerror or exc}. "
            "Set HOME to a folder this user can write, or fix that folder's permissions."
        )
    if path.is_dir():
        return StoreUnusable(f"The store {path} is a directory, not a SQLite file. Move it aside and start again.")
    if isinstance(exc, apsw.NotADBError):
        return StoreUnusable(
            f"The store {path} is not a SQLite database. Move it aside and start again; a new store is created."
        )
    if isinstance(exc, apsw.CorruptError):
        return StoreUnusable(
            f"The store {path} is damaged (SQLite reports corruption). Check it with "
            f"sqlite3 '{path}' 'PRAGMA integrity_check', then restore a backup (see \"When things go wrong\" "
            "in the README) or move it aside."
        )
    if isinstance(exc, apsw.FullError):
        return StoreUnusable(f"The disk holding the store {path} is full. Free space and start again.")
    if isinstance(exc, (apsw.ReadOnlyError, apsw.CantOpenError, PermissionError)):
        return StoreUnusable(
            f"Cannot open the store {path} for writing: it or its folder is read-only. Make them writable by this user."
        )
    if isinstance(exc, apsw.Error):
        return StoreUnusable(f"Cannot open the store {path}: {exc}.")
    if isinstance(exc, OSError):
        return StoreUnusable(f"Cannot open the store {path}: {exc.strerror or exc}.")
    return None


class WalSync:
    """Makes each commit durable without holding the event loop while the disk flushes.

    `attach` switches the writer's connection to `synchronous=NORMAL`, so
    COMMIT writes the WAL without waiting for the disk, and takes over
    checkpoints from SQLite's automatic ones (a WAL hook counts the pages).
    Calling the object, on the database thread, after COMMIT and before any
    caller is answered, flushes the WAL file, and checkpoints once the WAL
    holds `CHECKPOINT_PAGES` or more. A reply still means the write survives
    a power loss, as with `synchronous=FULL`; the fsync just happens where
    the event loop does not wait for it. Checkpoints use a connection of
    their own, so they never touch the writer's while it commits the next
    batch.

    `quick` and `flush` are the other way in, for a small batch with
    nothing else queued or being flushed: the writer flushes it right away
    on the trio thread when the disk has been flushing in under
    `QUICK_SECONDS` and no checkpoint is due. Measured, a hop to the
    database thread and back cost as much as a fast disk's fsync; a slow
    disk (one flush over `QUICK_SECONDS` is enough) keeps every flush on the
    database thread until its flushes are fast again. `flushes` and
    `flush_seconds` count every fsync, both ways.

    The WAL file stays open for the flushes (opening it for each one was
    two more system calls a write). SQLite keeps the file while any
    connection has the store open, and ours do until `close`.
    """

    CHECKPOINT_PAGES = 1000
    QUICK_SECONDS = 0.001

    def __init__(self, checkpointer: apsw.Connection, wal_path: str) -> None:
        self.checkpointer = checkpointer
        self.wal_path = wal_path
        self._wal_fd: int | None = None
        self.pages = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self._recent = 0.0  # a decaying maximum of the flush time, in seconds

    @classmethod
    def attach(cls, conn: apsw.Connection, location: StoreLocation) -> WalSync | None:
        """The syncer for a file store in WAL mode; None (and `synchronous=FULL` kept) otherwise."""
        if location.path is None or conn.pragma("journal_mode") != "wal":
            return None
        checkpointer = apsw.Connection(str(location.path), flags=apsw.SQLITE_OPEN_READWRITE)
        checkpointer.set_busy_timeout(0)
        # A connection learns that the file is in WAL mode from its first read; until then a
        # checkpoint through it does nothing.
        checkpointer.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        sync = cls(checkpointer, f"{location.path}-wal")
        conn.pragma("synchronous", "NORMAL")
        conn.set_wal_hook(sync._count)
        return sync

    def _count(self, conn: apsw.Connection, name: str, pages: int) -> int:
        self.pages = pages
        return apsw.SQLITE_OK

    def flush(self) -> None:
        """Flush the WAL file to disk, on the calling thread."""
        started = time.perf_counter()
        if self._wal_fd is None:
            self._wal_fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        os.fsync(self._wal_fd)
        took = time.perf_counter() - started
        self.flushes += 1
        self.flush_seconds += took
        self._recent = max(took, self._recent * 0.875 + took * 0.125)

    def quick(self) -> bool:
        """Whether a flush now is expected to be quick (see the class), with no checkpoint due."""
        return self.pages < self.CHECKPOINT_PAGES and self._recent < self.QUICK_SECONDS

    def __call__(self) -> None:
        self.flush()
        if self.pages >= self.CHECKPOINT_PAGES:
            try:
                wal_pages, _ = self.checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.BusyError:
                return  # another connection is checkpointing; the next flush tries again
            except apsw.Error as exc:
                # The commits are safe in the WAL; the checkpoint is tried again at the next flush.
                fault = store_fault(exc, self.checkpointer) if is_storage_error(exc) else exc
                log.warning("[Store] Checkpoint failed: %s", fault)
                return
            if wal_pages >= 0:
                self.pages = 0

    def close(self) -> None:
        if self.flushes:
            log.info(
                "[Store] Flushed the WAL %d times, %.3f ms each on average",
                self.flushes,
                self.flush_seconds * 1000 / self.flushes,
            )
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self.checkpointer.close()


def open_read_connection(location: StoreLocation) -> apsw.Connection:
    """A read-only connection: SQLite itself then keeps it from writing."""
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    target = _memory_uri(location) if location.path is None else str(location.path)
    conn = apsw.Connection(target, flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    return conn


class StoreReport(NamedTuple):
    """What `doctor` reports of a store file, read without changing it."""

    size: int
    wal_size: int
    schema_version: int
    quick_check: str
    next_sequence: int
    highest_event: int


def examine(path: Path) -> StoreReport:
    """Read-only facts about the store at `path`; raises `StoreUnusable` naming what is wrong with it."""
    location = StoreLocation(path)
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        raise unusable(exc, location) or StoreUnusable(f"Cannot open the store {path}: {exc}.") from exc
    try:
        conn.set_busy_timeout(1000)
        version = conn.execute("PRAGMA user_version").get
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        check = "ok" if problems == ["ok"] else "; ".join(problems[:3])
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        next_sequence = highest = 0
        if "event_sequence" in tables:
            value = conn.execute("SELECT value FROM event_sequence WHERE id = 1").get
            next_sequence = int(value) + 1 if isinstance(value, int) else 1
        if "events" in tables:
            value = conn.execute("SELECT MAX(sequence) FROM events").get
            highest = int(value) if isinstance(value, int) else 0
    except apsw.Error as exc:
        raise unusable(exc, location) or StoreUnusable(f"Cannot read the store {path}: {exc}.") from exc
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return StoreReport(
        size=path.stat().st_size,
        wal_size=wal.stat().st_size if wal.exists() else 0,
        schema_version=int(version) if isinstance(version, int) else 0,
        quick_check=check,
        next_sequence=next_sequence,
        highest_event=highest,
    )


def sqlite_version() -> str:
    return str(apsw.sqlite_lib_version())
