"""The annotation commands: sessions, pending, show, ack, resolve, dismiss, reply, watch.

They work on the local store by default, or on another server with
`--http-url URL [--api-key KEY]`, through one `AnnotationClient`. Changes
are the same operations the MCP tools carry out, with the same error texts.
Exit codes: 0 ok, 1 not found or refused, 2 usage (argparse's own).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import operations
from ..clients.local import AnnotationClient, LocalClient
from ..config import shared_store_path
from ..errors import AgentationError, AnnotationNotFound
from ..models import agent_view, session_summary
from . import output
from .options import add_server_options, refuse_bad_url

DESCRIPTIONS = {
    "sessions": "List the sessions (one per annotated page), newest first.",
    "pending": "List pending annotations: of one session, or of every session.",
    "show": "Show one annotation, with its thread.",
    "ack": "Acknowledge an annotation: tell the person it is being worked on.",
    "resolve": "Resolve an annotation once the change is made; its marker leaves the page.",
    "dismiss": "Dismiss an annotation that will not be acted on, with the reason.",
    "reply": "Add a message to an annotation's thread.",
    "watch": "Print new annotations in batches as they arrive, until the timeout or Ctrl-C.",
}


def parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"agentation-mcp {command}", description=DESCRIPTIONS[command])
    if command == "pending":
        p.add_argument("session", nargs="?", help="only this session's pending annotations")
    if command in ("show", "ack", "resolve", "dismiss", "reply"):
        p.add_argument("id", help="the annotation's id")
    if command == "resolve":
        p.add_argument("--summary", help="what was changed, added to the thread")
    if command == "dismiss":
        p.add_argument("--reason", required=True, help="why it will not be acted on, added to the thread")
    if command == "reply":
        p.add_argument("text", help="the message")
    if command == "watch":
        p.add_argument("--session", help="only this session")
        p.add_argument("--timeout", type=float, help="stop after this many seconds (default: until Ctrl-C)")
        p.add_argument(
            "--batch-window", type=float, default=10.0, help="seconds to collect after a first new one (default 10)"
        )
    p.add_argument("--json", action="store_true", help="machine-readable output (watch: one JSON object per line)")
    add_server_options(p, "use the server at URL instead of the local store")
    return p


def client_for(args: argparse.Namespace) -> AnnotationClient:
    if args.http_url:
        from ..clients.remote import RemoteClient

        return RemoteClient(args.http_url, args.api_key or os.environ.get("AGENTATION_ACCESS_KEY"))
    return LocalClient(shared_store_path())


def run_annotation_command(command: str, argv: Sequence[str]) -> int:
    args = parser(command).parse_args(argv)
    if refuse_bad_url(command, args):
        return 2
    if command == "watch":
        from .watching import run_watch

        return run_watch(args, client_for(args))
    client = client_for(args)
    try:
        return _run(command, args, client)
    except AnnotationNotFound as exc:
        sys.stderr.write(f"Annotation not found: {exc.item_id}\n")
        return 1
    except AgentationError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        client.close()


def _print(as_json: bool, data: object, text: str) -> int:
    if as_json:
        output.print_json(data)
    else:
        output.print_text(text)
    return 0


def _run(command: str, args: argparse.Namespace, client: AnnotationClient) -> int:
    if command == "sessions":
        sessions = client.list_sessions()
        summaries = {"sessions": [session_summary(s) for s in sessions]}
        return _print(args.json, summaries, output.sessions_table(sessions))
    if command == "pending":
        pending = client.pending(args.session)
        listed = {"count": len(pending), "annotations": [agent_view(a) for a in pending]}
        return _print(args.json, listed, output.annotations_table(pending))
    if command == "show":
        annotation = client.get_annotation(args.id)
        return _print(args.json, annotation, output.annotation_details(annotation))
    if command == "ack":
        operation = operations.acknowledge(args.id)
        said = f"Acknowledged {args.id}."
    elif command == "resolve":
        operation = operations.resolve(args.id, args.summary)
        said = f"Resolved {args.id}."
    elif command == "dismiss":
        operation = operations.dismiss(args.id, args.reason)
        said = f"Dismissed {args.id}."
    else:
        if not args.text:
            client.get_annotation(args.id)  # an unknown id is the clearer error, as for the tool
        operation = operations.reply(args.id, args.text)
        said = f"Replied on {args.id}."
    change, result = operation
    client.submit(change)
    return _print(args.json, result, said)
