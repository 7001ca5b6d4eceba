"""`agentation-mcp server`: logging set up for a server, then the service until it stops."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import trio

from ..config import parse_server_args
from ..errors import AgentationError, ConfigError, leaves

log = logging.getLogger(__name__)


def _configure_logging() -> logging.Handler:
    """Our log lines on stderr, each the message alone as the reference server writes them.

    The handler and its formatter sit on our own logger (every module logs to
    a child of it, `logging.getLogger(__name__)`): nothing of the process's
    logging changes, so the libraries' warnings still reach stderr through
    logging's last resort and their quieter records go nowhere, as before.
    """
    logger = logging.getLogger(__name__.partition(".")[0])
    for old in [h for h in logger.handlers if isinstance(h, _ServerLines)]:
        logger.removeHandler(old)
    handler = _ServerLines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


class _ServerLines(logging.StreamHandler[TextIO]):
    """The server's stderr: one line a record, the message alone."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))


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
        failures = _distinct(group)
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


def _distinct(group: BaseExceptionGroup[AgentationError]) -> list[AgentationError]:
    """The errors in `group` and the groups nested in it, in order, each message once."""
    found: list[AgentationError] = []
    for exc in leaves(group):
        if isinstance(exc, AgentationError) and str(exc) not in (str(f) for f in found):
            found.append(exc)
    return found
