"""`agentation-mcp init`: register this installation with an agent client, then check that it starts.

`--client claude` (the default) registers through `claude mcp add` when
`claude` is on PATH (never by editing Claude Code's own files); without it,
`--scope project` writes the project's `.mcp.json`, and any other scope
prints the one command to run. `--client codex|cursor|vscode` merge our entry
into that client's file (agent_configs), keeping everything else. Running it
again is safe: an entry with the same command is left alone, a different one
is replaced; `--remove` takes the entry out again. It asks before changing
anything only when run in a terminal without `--yes`; `--print` (also
`--dry-run`) shows what it would run or write, and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import DEFAULT_PORT
from .agent_configs import CLIENTS, NAME, ConfigFile, ConfigFileError, config_file, write_atomically
from .registration import server_command

CLAUDE_TIMEOUT = 60.0
START_TIMEOUT = 20.0
NOTES = {"Claude Code": "Claude Code asks to approve it on its next start in this project."}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentation-mcp init",
        description="Register this agentation-mcp with an agent client, and check that it starts.",
    )
    p.add_argument(
        "--client",
        choices=CLIENTS,
        default="claude",
        help="claude: claude mcp add (default); codex: ~/.codex/config.toml ($CODEX_HOME); "
        "cursor: .cursor/mcp.json; vscode: .vscode/mcp.json",
    )
    p.add_argument(
        "--scope",
        choices=("local", "user", "project"),
        help="claude: as in claude mcp add (default local); cursor: project (default) or user (~/.cursor)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the HTTP port it serves (default {DEFAULT_PORT})")
    p.add_argument("--remove", action="store_true", help="take our entry out again; everything else is kept")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.add_argument(
        "--print",
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print what would be written or run, and change nothing",
    )
    return p


def run_init(argv: Sequence[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    command = server_command() + ([] if args.port == DEFAULT_PORT else ["--port", str(args.port)])
    if args.client == "claude":
        args.scope = args.scope or "local"
        done = _claude_code(command, args)
    else:
        try:
            target = config_file(args.client, args.scope, Path.cwd(), Path(os.environ.get("HOME") or Path.home()))
        except ValueError as exc:
            p.error(str(exc))
        done = _with_file(target, None if args.remove else command, args)
    if done != 0 or args.dry_run or args.remove:
        return done
    return _check_it_starts(command)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if args.yes or args.dry_run or not sys.stdin.isatty():
        return True
    answer = input(f"{question} [Y/n] ").strip().lower()
    return answer in ("", "y", "yes")


def _claude_code(command: list[str], args: argparse.Namespace) -> int:
    claude = shutil.which("claude")
    if claude is not None:
        return _with_claude(claude, command, args)
    if args.scope == "project":
        target = config_file("claude", "project", Path.cwd(), Path.home())
        return _with_file(target, None if args.remove else command, args)
    _say("The claude command is not on PATH. To " + ("unregister" if args.remove else "register") + ", run:")
    if args.remove:
        _say(f"  claude mcp remove --scope {args.scope} {NAME}")
    else:
        _say(f"  claude mcp add --scope {args.scope} {NAME} -- {shlex.join(command)}")
    return 0


def _registered(claude: str) -> list[str] | None:
    """The command registered under our name (in any scope Claude Code sees from here), or None."""
    done = subprocess.run(
        [claude, "mcp", "get", NAME], capture_output=True, text=True, timeout=CLAUDE_TIMEOUT, check=False
    )
    if done.returncode != 0:
        return None
    fields = {}
    for line in done.stdout.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name] = value.strip()
    if "Command" not in fields:
        return None
    return [fields["Command"], *shlex.split(fields.get("Args", ""))]


def _with_claude(claude: str, command: list[str], args: argparse.Namespace) -> int:
    current = _registered(claude)
    remove = [claude, "mcp", "remove", NAME, "-s", args.scope]
    if args.remove:
        if current is None:
            _say(f"{NAME} is not registered with Claude Code; nothing to remove.")
            return 0
        steps, question = [remove], f"Remove {NAME} from Claude Code ({args.scope} scope)?"
    else:
        if current == command:
            _say(f"{NAME} is already registered with Claude Code: {shlex.join(command)}")
            return 0
        steps, question = [], f"Register {NAME} with Claude Code ({args.scope} scope) as {shlex.join(command)}?"
        if current is not None:
            _say(f"{NAME} is registered with another command ({shlex.join(current)}); it will be replaced.")
            steps.append(remove)
        steps.append([claude, "mcp", "add", "--scope", args.scope, NAME, "--", *command])
    if args.dry_run:
        _say("Would run:")
        for step in steps:
            _say(f"  {shlex.join(step)}")
        return 0
    if not _confirm(question, args):
        _say("Nothing changed.")
        return 1
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=CLAUDE_TIMEOUT, check=False)
        if done.returncode != 0 and step is steps[-1]:
            sys.stderr.write(f"{shlex.join(step)} failed:\n{done.stderr or done.stdout}")
            return 1
    if args.remove:
        _say(f"Removed {NAME} from Claude Code ({args.scope} scope).")
    else:
        _say(f"Registered {NAME} with Claude Code ({args.scope} scope): {shlex.join(command)}")
    return 0


def _with_file(target: ConfigFile, command: list[str] | None, args: argparse.Namespace) -> int:
    """Set (or, with `command` None, remove) our entry in the client's file."""
    try:
        before = target.read()
        after = target.edit(before or "", command)
    except ConfigFileError as exc:
        sys.stderr.write(f"{exc}\nNothing was changed: fix the file (or move it aside), then run init again.\n")
        return 1
    if after == (before or ""):
        if command is None:
            _say(f"{NAME} is not in {target.path}; nothing to remove.")
        else:
            _say(f"{NAME} is already in {target.path} for {target.client}: {shlex.join(command)}")
        return 0
    if args.dry_run:
        _say(f"Would write {target.path}:")
        sys.stdout.write(after)
        sys.stdout.flush()
        return 0
    verb = "Remove" if command is None else "Add"
    if not _confirm(f"{verb} {NAME} {'from' if command is None else 'to'} {target.path}?", args):
        _say("Nothing changed.")
        return 1
    try:
        write_atomically(target.path, after, target.new_mode)
    except OSError as exc:
        sys.stderr.write(f"{target.path} could not be written: {exc}\nNothing was changed.\n")
        return 1
    if command is None:
        _say(f"Removed {NAME} from {target.path} ({target.client}).")
    else:
        _say(f"Wrote {NAME} into {target.path} for {target.client}: {shlex.join(command)}")
        _say(NOTES.get(target.client, f"{target.client} starts it the next time it loads its MCP servers."))
    return 0


def _check_it_starts(command: list[str]) -> int:
    """Start the registered command (MCP only) and ask it to initialize, as Claude Code will."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "agentation-mcp init", "version": "1"},
        },
    }
    try:
        done = subprocess.run(
            [*command, "--mcp-only"],
            input=json.dumps(initialize) + "\n",
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"The registered command did not start and answer: {exc}\n")
        return 1
    first = done.stdout.splitlines()[0] if done.stdout else ""
    try:
        answer = json.loads(first)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "result" not in answer:
        sys.stderr.write(f"The registered command did not answer initialize:\n{done.stderr[-2000:]}")
        return 1
    info = answer["result"].get("serverInfo", {})
    _say(f"Checked: it starts and answers initialize ({info.get('name')} {info.get('version')}).")
    return 0
