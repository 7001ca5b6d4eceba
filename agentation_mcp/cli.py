"""The command line: `agentation-mcp server|init|doctor|help`."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import trio

from . import __version__
from .config import parse_server_args
from .errors import AgentationError, ConfigError

USAGE = f"""\
agentation-mcp {__version__}: the Agentation annotation server for AI coding agents

Usage:
  agentation-mcp server [options]   Serve the MCP tools on stdio (and the toolbar's HTTP API)
  agentation-mcp init               Register the server with Claude Code
  agentation-mcp doctor             Check the set-up and the running server
  agentation-mcp help               Show this text (also --help, -h)

Server options:
  --port <port>      HTTP port (default 4747)
  --host <address>   Interface to bind (default 127.0.0.1; or AGENTATION_HOST)
  --mcp-only         Serve MCP on stdio only, no HTTP
  --http-url <url>   Use the HTTP API of the server at <url> instead of the local store
  --api-key <key>    Cloud mode API key (or AGENTATION_API_KEY)

Environment:
  AGENTATION_STORE=memory            Keep everything in memory, for this process only
  AGENTATION_EVENT_RETENTION_DAYS    Days of event history kept (default 7, 0-3650)

Register with Claude Code:
  claude mcp add agentation -- agentation-mcp server
"""

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


def _server(argv: Sequence[str]) -> int:
    from . import service

    try:
        settings = parse_server_args(argv)
        if settings.http_url is not None:
            raise ConfigError(
                "--http-url (tools using a remote server's HTTP API) is not available in this version yet."
            )
    except ConfigError as exc:
        print(f"agentation-mcp server: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    for warning in settings.warnings:
        log.warning("[Config] %s", warning)
    failures: list[AgentationError] = []
    interrupted = False
    try:
        trio.run(partial(service.serve, settings))
    except* AgentationError as group:
        # Raised before the server's nurseries, or from inside them (wrapped in a group): one line each.
        failures = _leaves(group)
    except* KeyboardInterrupt:
        interrupted = True  # Ctrl-C before the signal handlers were in place
    if interrupted and not failures:
        return 130
    for failure in failures:
        print(f"agentation-mcp server: {failure}", file=sys.stderr)  # noqa: T201
    return 1 if failures else 0


def _leaves(group: BaseExceptionGroup[AgentationError]) -> list[AgentationError]:
    """The errors in `group` and the groups nested in it, in order, each once."""
    found: list[AgentationError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        elif str(exc) not in (str(f) for f in found):
            found.append(exc)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    command = args[0] if args else "help"
    if command in ("help", "--help", "-h"):
        sys.stdout.write(USAGE)
        return 0
    if command == "server":
        return _server(args[1:])
    if command in ("init", "doctor"):
        print(f"agentation-mcp {command} is not available in this version yet.", file=sys.stderr)  # noqa: T201
        return 1
    print(f"Unknown command: {command}\nRun 'agentation-mcp help' for usage information.", file=sys.stderr)  # noqa: T201
    return 1
