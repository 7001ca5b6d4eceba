"""Our log lines, sent to the connected clients as `notifications/message`, at or above the level
each one set with `logging/setLevel` (none until it sets one).

The lines are the server's own (the `agentation_mcp` logger): a write fault, a busy store, the port
taken or taken over. They may be logged on any thread, so the handler only hands each record to
the trio loop; a bounded queue drops lines rather than let logging wait.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from .peers import LEVELS, Peer, Peers

LOGGER = "agentation_mcp"
_QUEUE = 256


def mcp_level(levelno: int) -> str:
    """The protocol's name for a Python logging level."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _wants(rank: int, peer: Peer) -> bool:
    return peer.level <= rank


class ClientLog(logging.Handler):
    """A logging handler that forwards records to every client that wants their level; `run` sends them."""

    def __init__(self, peers: Peers) -> None:
        super().__init__(logging.INFO)
        self._peers = peers
        self._send, self._receive = trio.open_memory_channel[tuple[str, str]](_QUEUE)
        self._token: trio.lowlevel.TrioToken | None = None

    def emit(self, record: logging.LogRecord) -> None:
        token = self._token
        if token is None:
            return
        level = mcp_level(record.levelno)
        rank = LEVELS.index(level)
        # Most lines (one a toolbar request) are wanted by nobody: they cost no wake-up of the loop.
        if not any(_wants(rank, peer) for peer in self._peers.all()):
            return
        item = (level, record.getMessage())
        try:
            token.run_sync_soon(self._queue, item)
        except trio.RunFinishedError:
            pass

    def _queue(self, item: tuple[str, str]) -> None:
        try:
            self._send.send_nowait(item)
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued lines until cancelled; the handler is attached to our logger meanwhile."""
        self._token = trio.lowlevel.current_trio_token()
        logger = logging.getLogger(LOGGER)
        logger.addHandler(self)
        try:
            task_status.started()
            async for level, message in self._receive:
                rank = LEVELS.index(level)
                params = {"level": level, "logger": LOGGER, "data": message}
                await self._peers.broadcast("notifications/message", params, to=partial(_wants, rank))
        finally:
            logger.removeHandler(self)
            self._token = None
