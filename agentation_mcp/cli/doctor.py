"""`agentation-mcp doctor`: one line per check (✓ / ✗ / !), each with its fix; exit 1 on any ✗.

What presence tells (agents, toolbar pages, refused page origins) is in `presence_checks`.

The checks run side by side, each with its own short timeout, so the whole
report comes within about three seconds even when the port's owner hangs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..config import DEFAULT_PORT, parse_cors_origins
from ..errors import ConfigError, StoreUnusable
from .registration import register_command, server_command

OK, FAIL, WARN = "✓", "✗", "!"
DEADLINE = 2.8  # seconds for the whole report
NETWORK_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # OK, FAIL or WARN
    detail: str
    fix: str = ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentation-mcp doctor", description="Check the store, the port and the set-up, and say how to fix them."
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the HTTP port to check (default {DEFAULT_PORT})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run_doctor(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    home = Path(os.environ.get("HOME") or Path.home())
    store_path = home / ".agentation" / "store.db"
    checks = _run_all(
        [
            ("environment", _environment),
            ("store", lambda: _store(store_path)),
            ("port", lambda: _port(args.port)),
            ("sharing", lambda: _sharing(store_path)),
            ("Claude Code", _registration),
            ("toolbar", _toolbar),
            ("presence", lambda: _presence(store_path, args.port)),
        ]
    )
    if args.json:
        report = {"ok": all(c.status != FAIL for c in checks), "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        for check in checks:
            line = f"{check.status} {check.name}: {check.detail}"
            sys.stdout.write(line + (f"\n    fix: {check.fix}" if check.fix else "") + "\n")
    return 1 if any(c.status == FAIL for c in checks) else 0


def _run_all(checks: list[tuple[str, Callable[[], list[Check]]]]) -> list[Check]:
    """Each check on a thread of its own; one still running at the deadline is reported as such."""
    results: dict[str, list[Check]] = {}

    def run(name: str, check: Callable[[], list[Check]]) -> None:
        try:
            results[name] = check()
        except Exception as exc:  # a check that breaks is a finding, not a crash
            results[name] = [Check(name, WARN, f"the check itself failed: {exc}")]

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in checks]
    for thread in threads:
        thread.start()
    deadline = _now() + DEADLINE
    for thread in threads:
        thread.join(max(deadline - _now(), 0))
    out: list[Check] = []
    for name, _ in checks:
        out += results.get(name) or [Check(name, WARN, f"no answer within {DEADLINE:.0f} s; skipped")]
    return out


def _now() -> float:
    return time.monotonic()


def _environment() -> list[Check]:
    from ..store import connection

    sqlite = connection.sqlite_version()
    packages = []
    for name in ("mcp", "apsw", "trio", "httptools", "orjson", "httpx2"):
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            return [
                Check("environment", FAIL, f"the package {name} is missing", "reinstall: pip install agentation-mcp")
            ]
    detail = f"agentation-mcp {__version__}, Python {platform.python_version()}, SQLite {sqlite}, {', '.join(packages)}"
    return [Check("environment", OK, detail)]


def _store(path: Path) -> list[Check]:
    from ..store import connection, schema

    if not path.exists():
        return [Check("store", WARN, f"{path} does not exist yet", "it is created when the server first starts")]
    try:
        report = connection.examine(path)
    except StoreUnusable as exc:
        return [Check("store", FAIL, str(exc), 'see "When things go wrong" in the README')]
    size = f"{report.size / 1024:.0f} KiB, WAL {report.wal_size / 1024:.0f} KiB"
    checks = []
    if report.quick_check != "ok":
        checks.append(
            Check(
                "store",
                FAIL,
                f"{path} is damaged: {report.quick_check}",
                "stop the servers, move the store aside and restore a backup (README: When things go wrong)",
            )
        )
    elif report.schema_version > schema.SCHEMA_VERSION:
        checks.append(
            Check("store", FAIL, f"{path} has schema {report.schema_version}", "upgrade agentation-mcp to read it")
        )
    else:
        checks.append(Check("store", OK, f"{path} ({size}), schema {report.schema_version}, quick_check ok"))
    if report.next_sequence and report.highest_event >= report.next_sequence:
        checks.append(
            Check(
                "sequence",
                FAIL,
                f"the next sequence {report.next_sequence} is behind the events table ({report.highest_event})",
                "start agentation-mcp server once: it takes the next sequence past every stored event",
            )
        )
    else:
        checks.append(Check("sequence", OK, f"next event sequence {report.next_sequence or 1}"))
    return checks


def _port(port: int) -> list[Check]:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            return [Check("port", OK, f"{port} is free; a server started now will listen there")]
    owner = _listener_pid(port)
    who = f" (process {owner})" if owner else ""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=NETWORK_TIMEOUT) as answer:
            health = json.loads(answer.read())
    except Exception:
        health = None
    if isinstance(health, dict) and health.get("status") == "ok":
        return [Check("port", OK, f"{port} is served by an agentation server{who}, mode {health.get('mode', '?')}")]
    return [
        Check(
            "port",
            FAIL,
            f"{port} is taken by something that is not an agentation server{who}",
            "stop it, or run the server with --port and point the toolbar at that port",
        )
    ]


def _listener_pid(port: int) -> int | None:
    """The process listening on `port`, where /proc tells (Linux); None elsewhere."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    for pid, link in _open_files():
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return pid
    return None


def _open_files() -> list[tuple[int, str]]:
    """(pid, what the descriptor points at) of every open file this user may see, from /proc."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                links = [_link(fd) for fd in (entry / "fd").iterdir()]
            except OSError:
                continue  # the process ended, or is another user's
            found += [(int(entry.name), link) for link in links if link]
    return found


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def _sharing(path: Path) -> list[Check]:
    if not Path("/proc/self/fd").exists():
        return [Check("sharing", WARN, "this platform does not say which processes have the store open")]
    target = str(path)
    holders = sorted({pid for pid, link in _open_files() if link == target and pid != os.getpid()})
    if not holders:
        return [Check("sharing", OK, "no process has the store open")]
    return [Check("sharing", OK, f"{len(holders)} process(es) have the store open: {', '.join(map(str, holders))}")]


def _registration() -> list[Check]:
    advice = register_command()
    claude = shutil.which("claude")
    if claude is None:
        missing = "the claude command is not on PATH, so the registration is not checked"
        return [Check("Claude Code", WARN, missing, advice)]
    try:
        done = subprocess.run(
            [claude, "mcp", "get", "agentation"], capture_output=True, text=True, timeout=DEADLINE - 0.3, check=False
        )
    except subprocess.TimeoutExpired:
        return [Check("Claude Code", WARN, "claude mcp get agentation did not answer in time")]
    if done.returncode != 0:
        return [Check("Claude Code", FAIL, "agentation is not registered with Claude Code", advice)]
    fields = dict(line.strip().partition(":")[::2] for line in done.stdout.splitlines() if ":" in line)
    program = fields.get("Command", "").strip()
    command = f"{program} {fields.get('Args', '').strip()}".strip()
    runnable = bool(program) and (Path(program).is_file() or shutil.which(program) is not None)
    if not runnable:
        return [Check("Claude Code", FAIL, f"registered, but its command {program or '(none)'} cannot run", advice)]
    status = fields.get("Status", "").strip()
    if "✗" in status or "Failed" in status:
        return [Check("Claude Code", FAIL, f"registered as {command}, but Claude Code reports: {status}", advice)]
    ours = server_command()[0]
    note = "" if program == ours else f" (this installation is {ours})"
    return [Check("Claude Code", OK, f"registered: {command}{note}" + (f"; {status}" if status else ""))]


def _presence(store_path: Path, port: int) -> list[Check]:
    from .presence_checks import presence_checks

    return presence_checks(store_path, port)


def _toolbar() -> list[Check]:
    try:
        any_origin, extra = parse_cors_origins(os.environ.get("AGENTATION_CORS_ORIGINS"))
    except ConfigError as exc:
        return [Check("toolbar", FAIL, str(exc), "fix AGENTATION_CORS_ORIGINS")]
    if any_origin:
        return [Check("toolbar", WARN, "every page origin may call the server (AGENTATION_CORS_ORIGINS=*)")]
    allowed = ", ".join(["http(s)://localhost, *.localhost, 127.x, [::1] on any port", *sorted(extra)])
    return [Check("toolbar", OK, f"pages allowed: {allowed}")]
