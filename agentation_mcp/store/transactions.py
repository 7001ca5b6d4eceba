"""The transaction policy: how a batch of commands is committed, or fails whole.

* A batch is one `BEGIN IMMEDIATE` transaction. A command that fails for its
  own reason (what it names does not exist, or a bug) is undone alone and its
  error is its outcome; the others commit together.
* A storage fault (full disk, I/O error, a store turned read-only or found
  damaged) fails the whole batch: everything is rolled back, every caller
  gets the same `StoreFault`, and the next batch simply tries again. Nothing
  is half-applied, and nothing committed is reported as failed (COMMIT is the
  last step; an error from it means nothing was committed).
* While another process holds the write lock, `commit_batch` waits and
  retries, then fails every command with `StoreBusy`; `try_commit_batch`
  gives up at once so the caller can move the wait off the event loop.
* Rolling back never hides the error that caused it: when SQLite has already
  ended the transaction itself, there is nothing left to roll back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw
import outcome

from .. import commands as c
from ..errors import AgentationError, InternalError, StoreBusy, StoreFault
from ..models import Event
from .changes import append_events, apply
from .connection import BUSY_TIMEOUT_MS, LockWait
from .faults import is_storage_error, store_fault

# How often a batch tries again while other processes hold the write lock,
# each try waiting up to BUSY_TIMEOUT_MS.
BUSY_RETRIES = 6
log = logging.getLogger(__name__)

CommandOutcome = outcome.Outcome[tuple[Any, list[Event]]]


class _PartlyApplied(Exception):
    """A command failed after it had written something: the batch is redone with a savepoint per command."""


class _BatchFailed(Exception):
    """The transaction cannot go on (a storage fault, or SQLite ended it); `cause` says why.

    `culprit` is the index of the command whose own error ended it (a trigger
    can make SQLite roll back the whole transaction); None for a fault.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.culprit: int | None = None

    @property
    def storage(self) -> bool:
        return isinstance(self.cause, StoreFault) or is_storage_error(self.cause)


def commit_batch(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[CommandOutcome]:
    """Commit `commands` in one transaction; an outcome per command, in order. Never raises a storage error.

    Retries while another process holds the write lock, then fails every
    command with `StoreBusy`.
    """
    for _ in range(BUSY_RETRIES + 1):
        try:
            return _commit_once(conn, commands)
        except apsw.BusyError:
            continue
        except _BatchFailed as failed:
            results = _failed(conn, commands, failed, commit_batch)
            assert results is not None, "commit_batch always gives outcomes"
            return results
    return [outcome.Error(StoreBusy()) for _ in commands]


def try_commit_batch(
    conn: apsw.Connection, commands: Sequence[c.Command], lock_wait: LockWait | None = None
) -> list[CommandOutcome] | None:
    """`commit_batch` if the write lock is free right now; None, with nothing done, if another process holds it.

    Afterwards `conn` waits for locks as before: through `lock_wait` when
    given, else with SQLite's busy timeout.
    """
    conn.set_busy_timeout(0)
    try:
        return _try_again(conn, commands)
    finally:
        if lock_wait is None:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        else:
            lock_wait.install(conn)


def _try_again(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[CommandOutcome] | None:
    try:
        return _commit_once(conn, commands)
    except apsw.BusyError:
        return None
    except _BatchFailed as failed:
        return _failed(conn, commands, failed, _try_again)


def _failed(
    conn: apsw.Connection,
    commands: Sequence[c.Command],
    failed: _BatchFailed,
    again: Callable[[apsw.Connection, Sequence[c.Command]], list[CommandOutcome] | None],
) -> list[CommandOutcome] | None:
    """The outcomes of a batch whose transaction failed: every command fails with the fault, or,
    when one command's own error ended the transaction, that one fails and the others are committed anew."""
    if failed.culprit is None:
        return _all_failed(conn, commands, failed.cause)
    culprit = failed.culprit
    rest = again(conn, [*commands[:culprit], *commands[culprit + 1 :]])
    if rest is None:
        return None
    cause = failed.cause
    rest.insert(culprit, _command_failed(commands[culprit], cause if isinstance(cause, Exception) else failed))
    return rest


def _all_failed(conn: apsw.Connection, commands: Sequence[c.Command], cause: BaseException) -> list[CommandOutcome]:
    if isinstance(cause, StoreFault):
        error: AgentationError = cause
    elif isinstance(cause, apsw.Error) and is_storage_error(cause):
        error = store_fault(cause, conn)
    else:
        log.error("[Store] A batch of %d commands failed", len(commands), exc_info=cause)
        error = InternalError()
    return [outcome.Error(error) for _ in commands]


def _commit_once(conn: apsw.Connection, commands: Sequence[c.Command]) -> list[CommandOutcome]:
    """One try; raises `apsw.BusyError`, with everything rolled back, while another process holds the lock.

    Commands first run without savepoints: a command that fails almost
    always fails before it writes anything (the thing it names does not
    exist), and then there is nothing to undo. Only when one fails after
    writing is the batch rolled back and run again with a savepoint around
    each command, so that it still fails alone.
    """
    try:
        return _transaction(conn, commands, _apply_plain)
    except _PartlyApplied:
        return _transaction(conn, commands, _apply_in_savepoint)


def _transaction(
    conn: apsw.Connection,
    commands: Sequence[c.Command],
    apply_one: Callable[[apsw.Connection, c.Command], CommandOutcome],
) -> list[CommandOutcome]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except apsw.BusyError:
        raise
    except apsw.Error as exc:
        raise _BatchFailed(exc) from exc
    try:
        results: list[CommandOutcome] = []
        for command in commands:
            try:
                results.append(apply_one(conn, command))
            except _BatchFailed as failed:
                if not failed.storage:
                    failed.culprit = len(results)
                raise
        conn.execute("COMMIT")
    except apsw.BusyError:
        _rollback(conn)
        raise
    except (_PartlyApplied, _BatchFailed):
        _rollback(conn)
        raise
    except Exception as exc:
        _rollback(conn)
        raise _BatchFailed(exc) from exc
    except BaseException:
        _rollback(conn)
        raise
    return results


def _rollback(conn: apsw.Connection) -> None:
    """End the open transaction, if SQLite has not already; a failure here is logged, never raised."""
    if conn.get_autocommit():
        return
    try:
        conn.execute("ROLLBACK")
    except apsw.Error:
        log.warning("[Store] Rolling back a failed batch failed too", exc_info=True)


def _raise_if_it_ends_the_batch(exc: Exception, conn: apsw.Connection) -> None:
    """Re-raise `exc`, raised by one command, if it ends the whole batch rather than that command alone."""
    if isinstance(exc, apsw.BusyError):
        raise exc
    if isinstance(exc, StoreFault) or is_storage_error(exc) or conn.get_autocommit():
        raise _BatchFailed(exc) from exc


def _apply_plain(conn: apsw.Connection, command: c.Command) -> CommandOutcome:
    before = conn.total_changes()
    try:
        result, pending = apply(conn, command)
        events = append_events(conn, pending)
    except Exception as exc:
        _raise_if_it_ends_the_batch(exc, conn)
        if conn.total_changes() != before:
            raise _PartlyApplied from exc
        return _command_failed(command, exc)
    return outcome.Value((result, events))


def _apply_in_savepoint(conn: apsw.Connection, command: c.Command) -> CommandOutcome:
    conn.execute("SAVEPOINT command")
    try:
        result, pending = apply(conn, command)
        events = append_events(conn, pending)
    except Exception as exc:
        _raise_if_it_ends_the_batch(exc, conn)
        conn.execute("ROLLBACK TO command; RELEASE command")
        return _command_failed(command, exc)
    conn.execute("RELEASE command")
    return outcome.Value((result, events))


def _command_failed(command: c.Command, exc: Exception) -> CommandOutcome:
    if isinstance(exc, AgentationError):
        return outcome.Error(exc)
    log.error("[Store] Applying %s failed", type(command).__name__, exc_info=exc)
    return outcome.Error(InternalError())


def prune_events(conn: apsw.Connection, retention_days: int) -> int:
    """Delete events older than `retention_days`; the next sequence is never lowered.

    A disk that is full or failing only skips the pruning (logged): the
    server still starts and serves reads. A damaged store raises.
    """
    try:
        return _prune(conn, retention_days)
    except (apsw.FullError, apsw.IOError, apsw.ReadOnlyError) as exc:
        log.warning("[Store] Old events were not pruned: %s", store_fault(exc, conn))
        return 0


def _prune(conn: apsw.Connection, retention_days: int) -> int:
    cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).isoformat(timespec="milliseconds")
    cutoff = cutoff.replace("+00:00", "Z")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Record the high-water mark first, so pruning every event cannot lower it.
        conn.execute(
            "UPDATE event_sequence SET value = MAX(value, (SELECT COALESCE(MAX(sequence), 0) FROM events)) WHERE id = 1"
        )
        conn.execute("DELETE FROM events WHERE timestamp < ?", (cutoff,))
        pruned = conn.changes()
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return pruned
