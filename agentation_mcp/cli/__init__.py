"""The command line: `agentation-mcp <command>`.

This module only dispatches: each command's module is imported when that
command runs, so `help` and the annotation commands never load the MCP SDK
or the HTTP stack.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import __version__
from .registration import register_command

ANNOTATION_COMMANDS = ("sessions", "pending", "show", "ack", "resolve", "dismiss", "reply", "watch")


def usage() -> str:
    return f"""\
agentation-mcp {__version__}: the Agentation annotation server for AI coding agents

Usage: agentation-mcp <command> [options]      (agentation-mcp <command> --help for its options)

Server:
  server            Serve the MCP tools on stdio and the toolbar's HTTP API on port 4747
  init              Register this installation with Claude Code, and check that it starts
  doctor            Check the store, the port and the set-up, and say how to fix what is wrong
  status            Show the servers on the store, the agents and toolbar pages connected, the counts
                    [--json] [--http-url URL [--api-key KEY]]

Annotations (on the local store, or on a server with --http-url URL [--api-key KEY]):
  sessions          List the sessions (one per annotated page)
  pending [SESSION] List pending annotations, of one session or of all
  show ID           Show one annotation with its thread
  ack ID            Acknowledge an annotation
  resolve ID        Resolve an annotation [--summary TEXT]
  dismiss ID        Dismiss an annotation --reason TEXT
  reply ID TEXT     Add a message to an annotation's thread
  watch             Print new annotations in batches as they arrive [--session S] [--timeout N]
                    [--batch-window N]
  Add --json for machine-readable output. Exit codes: 0 ok, 1 not found or refused, 2 usage.

  help              Show this text (also --help, -h)
  --version         Print the installed version (also -V)

Register with Claude Code (works from any shell):
  {register_command()}
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "help"
    if command in ("help", "--help", "-h"):
        sys.stdout.write(usage())
        return 0
    if command in ("--version", "-V"):
        sys.stdout.write(f"agentation-mcp {__version__}\n")
        return 0
    if command == "server":
        from .server import run_server

        return run_server(args[1:])
    if command == "init":
        from .init import run_init

        return run_init(args[1:])
    if command == "doctor":
        from .doctor import run_doctor

        return run_doctor(args[1:])
    if command == "status":
        from .status import run_status

        return run_status(args[1:])
    if command in ANNOTATION_COMMANDS:
        from .annotations import run_annotation_command

        return run_annotation_command(command, args[1:])
    sys.stderr.write(f"Unknown command: {command}\nRun 'agentation-mcp help' for usage information.\n")
    return 2
