"""`agentation-mcp init`: register this installation with Claude Code, then check that it starts.

With `claude` on PATH it registers through `claude mcp add` (never by
editing Claude Code's own files); without it, `--scope project` writes the
project's `.mcp.json`, and any other scope prints the one command to run.
Registering again is safe: an entry with the same command is left alone, a
different one is replaced. It asks before changing anything only when run
in a terminal without `--yes`; `--dry-run` shows what it would do.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import DEFAULT_PORT
from .registration import server_command

NAME = "agentation"
CLAUDE_TIMEOUT = 60.0
START_TIMEOUT = 20.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentation-mcp init",
        description="Register this agentation-mcp with Claude Code, and check that it starts.",
    )
    p.add_argument("--scope", choices=("local", "user", "project"), default="local", help="as in claude mcp add")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the HTTP port it serves (default {DEFAULT_PORT})")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.add_argument("--dry-run", action="store_true", help="show what would run or change, and change nothing")
    return p


def run_init(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    command = server_command() + ([] if args.port == DEFAULT_PORT else ["--port", str(args.port)])
    claude = shutil.which("claude")
    if claude is not None:
        done = _with_claude(claude, command, args)
    elif args.scope == "project":
        done = _with_mcp_json(Path.cwd() / ".mcp.json", command, args)
    else:
        _say("The claude command is not on PATH. To register, run:")
        _say(f"  claude mcp add --scope {args.scope} {NAME} -- {shlex.join(command)}")
        done = 0
    if done != 0 or args.dry_run:
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
    add = [claude, "mcp", "add", "--scope", args.scope, NAME, "--", *command]
    if current == command:
        _say(f"{NAME} is already registered with Claude Code: {shlex.join(command)}")
        return 0
    steps = []
    if current is not None:
        _say(f"{NAME} is registered with another command ({shlex.join(current)}); it will be replaced.")
        steps.append([claude, "mcp", "remove", NAME, "-s", args.scope])
    steps.append(add)
    if args.dry_run:
        _say("Would run:")
        for step in steps:
            _say(f"  {shlex.join(step)}")
        return 0
    if not _confirm(f"Register {NAME} with Claude Code ({args.scope} scope) as {shlex.join(command)}?", args):
        _say("Nothing changed.")
        return 1
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=CLAUDE_TIMEOUT, check=False)
        if done.returncode != 0 and step is add:
            sys.stderr.write(f"{shlex.join(step)} failed:\n{done.stderr or done.stdout}")
            return 1
    _say(f"Registered {NAME} with Claude Code ({args.scope} scope): {shlex.join(command)}")
    return 0


def _with_mcp_json(path: Path, command: list[str], args: argparse.Namespace) -> int:
    config: dict[str, object] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            sys.stderr.write(f"{path} is not valid JSON; fix or remove it, then run init again.\n")
            return 1
        if not isinstance(loaded, dict):
            sys.stderr.write(f"{path} does not hold a JSON object; fix or remove it, then run init again.\n")
            return 1
        config = loaded
    servers = config.get("mcpServers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    entry = {"type": "stdio", "command": command[0], "args": command[1:], "env": {}}
    existing = servers.get(NAME)
    if isinstance(existing, dict) and [existing.get("command"), *(existing.get("args") or [])] == command:
        _say(f"{NAME} is already in {path}: {shlex.join(command)}")
        return 0
    servers[NAME] = entry
    config["mcpServers"] = servers
    text = json.dumps(config, indent=2) + "\n"
    if args.dry_run:
        _say(f"Would write {path}:\n{text}")
        return 0
    if not _confirm(f"Add {NAME} to {path}?", args):
        _say("Nothing changed.")
        return 1
    path.write_text(text, encoding="utf-8")
    _say(f"Wrote {NAME} into {path}; Claude Code asks to approve it on its next start in this project.")
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
