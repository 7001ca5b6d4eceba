"""`agentation-mcp server`: logging set up for a server, then the service until it stops."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import trio

from ..config import parse_server_args
from ..errors import AgentationError, ConfigError

log = logging.getLogger("agentation_mcp")


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("mcp", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Lines are the message alone, one per HTTP request as the reference logs them:
    # records carry only what that needs.
    logging._srcfile = None
    logging.setLogRecordFactory(_Line)


class _Line(logging.LogRecord):
    """A log record with what a message-only line needs, without the caller, thread and process lookups."""

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **_: Any,
    ) -> None:
        self.name = name
        self.msg = msg
        if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            args = args[0]
        self.args = args
        self.levelname = logging.getLevelName(level)
        self.levelno = level
        self.pathname = self.filename = pathname
        self.module = ""
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func or ""
        self.created = time.time()
        self.msecs = 0.0
        self.relativeCreated = 0.0
        self.thread = self.threadName = self.process = self.processName = self.taskName = None


SERVER_HELP = """\
usage: agentation-mcp server [--port PORT] [--host ADDRESS] [--mcp-only | --http-only] [--http-url URL]
                             [--api-key KEY] [--channel]

Serve the nine MCP tools on stdio (for Claude Code and other MCP clients) and, on
127.0.0.1:PORT, the toolbar's HTTP API, its SSE streams and the tools over
Streamable HTTP at /mcp. Several servers can share the store; one owns the port.
It stops when stdin closes (the MCP client went away), or on Ctrl-C or SIGTERM.

options:
  -h, --help        show this help and exit
  --port PORT       HTTP port (default 4747)
  --host ADDRESS    interface to bind (default 127.0.0.1, or AGENTATION_HOST); anything
                    but loopback needs AGENTATION_ACCESS_KEY
  --mcp-only        serve MCP on stdio only, without HTTP
  --http-only       serve HTTP only (the toolbar's API, SSE and /mcp), without MCP on
                    stdio: stdin is never read, and it runs until Ctrl-C or SIGTERM; for a
                    server started in the background, by a service manager or in a container
  --http-url URL    with --mcp-only: carry out the tools on the agentation server at URL (its
                    HTTP API) instead of the local store, e.g. a server on the host seen from a
                    container
  --api-key KEY     with --http-url: the access key sent to that server as x-api-key; otherwise
                    cloud mode: proxy the toolbar's routes to the cloud API with this key (or
                    AGENTATION_API_KEY)
  --channel         push each new annotation (from any process on the store) to the MCP
                    clients as a Claude Code channel message (notifications/claude/channel)

environment: AGENTATION_STORE=memory, AGENTATION_EVENT_RETENTION_DAYS, AGENTATION_CORS_ORIGINS,
AGENTATION_ACCESS_KEY, AGENTATION_MAX_BODY_BYTES, AGENTATION_WEBHOOK_URL(S); see the README.
"""

STDIN_CLOSED = "agentation-mcp server: stdin closed, so the MCP session ended and the server stopped"
HTTP_ONLY_HINT = "to keep serving the toolbar without an MCP client, run `agentation-mcp server --http-only`"


def run_server(argv: Sequence[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        sys.stdout.write(SERVER_HELP)
        return 0
    _open_standard_descriptors()
    _configure_logging()
    from .. import service

    try:
        settings = parse_server_args(argv)
    except ConfigError as exc:
        print(f"agentation-mcp server: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    for warning in settings.warnings:
        log.warning("[Config] %s", warning)
    failures: list[AgentationError] = []
    interrupted = False
    stdin_closed = False
    try:
        stdin_closed = trio.run(partial(service.serve, settings))
    except* AgentationError as group:
        # Raised before the server's nurseries, or from inside them (wrapped in a group): one line each.
        failures = _leaves(group)
    except* KeyboardInterrupt:
        interrupted = True  # Ctrl-C before the signal handlers were in place
    if interrupted and not failures:
        return 130
    for failure in failures:
        print(f"agentation-mcp server: {failure}", file=sys.stderr)  # noqa: T201
    if stdin_closed and not failures:
        # A server started in the background, by a service manager or in a container has stdin at its end
        # from the start, and would otherwise stop after a second without a word.
        hint = "" if settings.http_url is not None else f"; {HTTP_ONLY_HINT}"
        print(STDIN_CLOSED + hint, file=sys.stderr)  # noqa: T201
    return 1 if failures else 0


def _open_standard_descriptors() -> None:
    """Point a closed stdin, stdout or stderr (`<&-`) at /dev/null, so that no file the server opens (the
    store) takes its number and gets read as MCP input or written as output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one, as those below are open


def _leaves(group: BaseExceptionGroup[AgentationError]) -> list[AgentationError]:
    """The errors in `group` and the groups nested in it, in order, each once."""
    found: list[AgentationError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        elif str(exc) not in (str(f) for f in found):
            found.append(exc)
    return found
