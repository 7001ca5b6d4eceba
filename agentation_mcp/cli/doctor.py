"""`agentation-mcp doctor`: one line per check (✓ / ✗ / !), each with its fix; exit 1 on any ✗.

What presence tells (agents, toolbar pages, refused page origins) is in `presence_checks`.

The checks run side by side, each with its own short timeout, so the whole
report comes within about three seconds even when the port's owner hangs.
With `--http-url URL` (as the npm server's doctor takes it) the server, its
version and its store are checked through that server's HTTP API instead of
the local port and store.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import DEFAULT_PORT, parse_cors_origins, shared_store_path
from ..errors import ConfigError, StoreUnusable
from .options import add_server_options, refuse_bad_url
from .registration import register_command, server_command

OK, FAIL, WARN = "✓", "✗", "!"
DEADLINE = 2.8  # seconds for the whole report
NETWORK_TIMEOUT = 1.0
MCP_TIMEOUT = DEADLINE - 0.4  # a server builds its /mcp app (loading the MCP SDK) at the first request


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
    add_server_options(p, "check the server at URL through its HTTP API instead")
    return p


def run_doctor(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    store_path = shared_store_path()
    where: list[tuple[str, Callable[[], list[Check]]]]
    if args.http_url:
        if refuse_bad_url("doctor", args):
            return 2
        api = _Api(args.http_url, args.api_key or os.environ.get("AGENTATION_ACCESS_KEY"))
        where = [("server", api.health), ("version", api.version), ("store", api.store)]
    else:
        where = [
            ("store", lambda: _store(store_path)),
            ("port", lambda: _port(args.port)),
            ("sharing", lambda: _sharing(store_path)),
            ("presence", lambda: _presence(store_path, args.port)),
        ]
    home = Path(os.environ.get("HOME") or Path.home())
    checks = _run_all(
        [
            ("environment", _environment),
            *where,
            ("Claude Code", _registration),
            ("Codex", lambda: _codex_timeout(home)),
            ("toolbar", _toolbar),
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


class _Api:
    """The checks of a server through its HTTP API (`--http-url`), each with one short request or two."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float = NETWORK_TIMEOUT,
    ) -> Any:
        """(status, headers, body text) of one request; a 401 raises `_KeyError`, no answer `OSError`."""
        sent = {"Accept": "application/json, text/event-stream", **(headers or {})}
        if self.key:
            sent["x-api-key"] = self.key
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.headers, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise _KeyError(self.key is not None) from None
            return exc.code, exc.headers, exc.read().decode("utf-8", "replace")

    def _key_check(self, name: str, refusal: _KeyError) -> list[Check]:
        if refusal.sent:
            return [Check(name, FAIL, f"{self.url} refused the access key (401)", "pass the right one: --api-key KEY")]
        return [Check(name, FAIL, f"{self.url} needs an access key (401)", "pass it: --api-key KEY")]

    def health(self) -> list[Check]:
        try:
            status, _, text = self._call("GET", "/health")
            health = json.loads(text) if status == 200 else None
        except (OSError, ValueError) as exc:
            return [Check("server", FAIL, f"cannot reach {self.url}: {exc}", "start it, or check --http-url")]
        if not isinstance(health, dict) or health.get("status") != "ok":
            return [Check("server", FAIL, f"{self.url}/health answered {status}: not an agentation server")]
        return [Check("server", OK, f"{self.url} is an agentation server, mode {health.get('mode', '?')}")]

    def version(self) -> list[Check]:
        """The version the server's `/mcp` endpoint gives in its `initialize` answer."""
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "doctor", "version": "1"}}
        try:
            status, headers, text = self._call(
                "POST",
                "/mcp",
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
                timeout=MCP_TIMEOUT,
            )
        except _KeyError as refusal:
            return self._key_check("version", refusal)
        except TimeoutError:
            slow = f"{self.url}/mcp did not answer within {MCP_TIMEOUT:.1f} s (its first request loads the MCP SDK)"
            return [Check("version", WARN, slow, "run doctor again")]
        except OSError as exc:
            return [Check("version", FAIL, f"cannot reach {self.url}/mcp: {exc}")]
        session = headers.get("mcp-session-id") if headers else None
        if session:
            try:
                self._call("DELETE", "/mcp", headers={"mcp-session-id": session})
            except (OSError, _KeyError):
                pass  # the server closes an idle session itself
        server = _initialize_result(text).get("serverInfo") if status == 200 else None
        if not isinstance(server, dict):
            return [Check("version", FAIL, f"{self.url}/mcp answered {status} without serverInfo")]
        theirs = f"{server.get('name', '?')} {server.get('version', '?')}"
        if server.get("version") != __version__:
            return [Check("version", WARN, f"the server runs {theirs}; this command is agentation-mcp {__version__}")]
        return [Check("version", OK, f"the server runs {theirs}, as this command does")]

    def store(self) -> list[Check]:
        """The store as the API reads it: its sessions and pending annotations."""
        try:
            _, _, sessions_text = self._call("GET", "/sessions")
            status, _, pending_text = self._call("GET", "/pending")
            sessions, pending = json.loads(sessions_text), json.loads(pending_text)
        except _KeyError as refusal:
            return self._key_check("store", refusal)
        except (OSError, ValueError) as exc:
            return [Check("store", FAIL, f"cannot read {self.url}/sessions and /pending: {exc}")]
        if status != 200 or not isinstance(sessions, list) or not isinstance(pending, dict):
            return [Check("store", FAIL, f"{self.url}/pending answered {status}: {pending_text[:200]}")]
        count = pending.get("count", len(pending.get("annotations", [])))
        return [Check("store", OK, f"read through the API: {len(sessions)} session(s), {count} pending annotation(s)")]


class _KeyError(Exception):
    """The server answered 401; `sent` says whether a key was sent."""

    def __init__(self, sent: bool) -> None:
        super().__init__()
        self.sent = sent


def _initialize_result(text: str) -> dict[str, Any]:
    """The `result` of an `initialize` answer sent as JSON or as one server-sent event."""
    for candidate in [text, *(line[5:] for line in text.splitlines() if line.startswith("data:"))]:
        try:
            message = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("result"), dict):
            result: dict[str, Any] = message["result"]
            return result
    return {}


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


def _codex_timeout(home: Path) -> list[Check]:
    """Whether Codex, if it has our server, lets a watch call last as long as it may."""
    from .agent_configs import WATCH_LONGEST_CALL, ConfigFileError, codex_config_path, config_file

    config = config_file("codex", None, Path.cwd(), home)
    fix = "agentation-mcp init --client codex"
    try:
        text = config.read()
        entry = config.entry(text or "")
    except ConfigFileError as exc:
        return [Check("Codex", WARN, str(exc), f"fix the file, then run {fix}")]
    if not isinstance(entry, dict):
        return [Check("Codex", OK, f"agentation is not in {codex_config_path(home)}")]
    timeout = entry.get("tool_timeout_sec")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > WATCH_LONGEST_CALL:
        return [Check("Codex", OK, f"{config.path}: tool_timeout_sec {timeout:g} s outlasts a watch call")]
    given = f"sets tool_timeout_sec = {timeout!r}"
    if timeout is None:
        given = "sets no tool_timeout_sec (Codex's default is 60 s)"
    detail = (
        f"{config.path} {given} for agentation: Codex would cut agentation_watch_annotations, "
        f"which may last {WATCH_LONGEST_CALL} s"
    )
    return [Check("Codex", WARN, detail, f"{fix} (sets tool_timeout_sec above {WATCH_LONGEST_CALL})")]


def _toolbar() -> list[Check]:
    try:
        any_origin, extra = parse_cors_origins(os.environ.get("AGENTATION_CORS_ORIGINS"))
    except ConfigError as exc:
        return [Check("toolbar", FAIL, str(exc), "fix AGENTATION_CORS_ORIGINS")]
    if any_origin:
        return [Check("toolbar", WARN, "every page origin may call the server (AGENTATION_CORS_ORIGINS=*)")]
    allowed = ", ".join(["http(s)://localhost, *.localhost, 127.x, [::1] on any port", *sorted(extra)])
    return [Check("toolbar", OK, f"pages allowed: {allowed}")]
