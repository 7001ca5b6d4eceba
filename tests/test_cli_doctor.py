"""`agentation-mcp doctor` as a real process: a healthy set-up, and each thing it must catch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ServerProcess, agentation, claude_cli, free_port, server_env

OURS = Path(sys.executable).parent / "agentation-mcp"
BOUND = 3.5  # doctor's own deadline is under 3 s; a slower answer fails the test


def doctor(home: Path, project: Path, *args: str, with_claude: bool = True) -> tuple[int, dict[str, Any]]:
    env = server_env(home)
    if with_claude:
        env["PATH"] = f"{claude_cli().parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "doctor", "--json", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A HOME holding a real store (a server ran once there) and a project folder."""
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    ServerProcess(home, "--mcp-only").stop()
    return home, project


def register(home: Path, project: Path) -> None:
    env = server_env(home)
    env["PATH"] = f"{claude_cli().parent}{os.pathsep}{env['PATH']}"
    subprocess.run(
        [str(claude_cli()), "mcp", "add", "agentation", "--", str(OURS), "server"],
        cwd=project,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_a_healthy_setup_passes_every_check(setup: tuple[Path, Path]) -> None:
    home, project = setup
    register(home, project)
    code, report = doctor(home, project, "--port", str(free_port()))
    checks = by_name(report)
    assert code == 0, report
    assert report["ok"] is True
    for name in ("environment", "store", "sequence", "port", "sharing", "Claude Code", "toolbar"):
        assert checks[name]["status"] == "✓", checks[name]
    assert str(home / ".agentation" / "store.db") in checks["store"]["detail"]
    assert "quick_check ok" in checks["store"]["detail"]
    assert f"registered: {OURS} server" in checks["Claude Code"]["detail"]


def test_a_damaged_store_is_a_failure_with_the_fix(setup: tuple[Path, Path]) -> None:
    home, project = setup
    store = home / ".agentation" / "store.db"
    data = bytearray(store.read_bytes())
    data[4096 * 2 : 4096 * 3] = b"\xa5" * 4096  # garbage over one page
    store.write_bytes(bytes(data))
    code, report = doctor(home, project, "--port", str(free_port()), with_claude=False)
    check = by_name(report)["store"]
    assert code == 1
    assert check["status"] == "✗"
    assert "damaged" in check["detail"]
    assert "restore a backup" in check["fix"]


def test_a_port_held_by_something_else_is_named_and_the_answer_comes_in_time(setup: tuple[Path, Path]) -> None:
    home, project = setup
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()  # accepts connections and never answers them
        port = squatter.getsockname()[1]
        code, report = doctor(home, project, "--port", str(port), with_claude=False)
    check = by_name(report)["port"]
    assert code == 1
    assert check["status"] == "✗"
    assert f"{port} is taken by something that is not an agentation server (process {os.getpid()})" in check["detail"]


def test_a_port_held_by_an_agentation_server_is_fine(setup: tuple[Path, Path]) -> None:
    home, project = setup
    server = ServerProcess(home).wait_listening()
    try:
        _, report = doctor(home, project, "--port", str(server.port), with_claude=False)
    finally:
        server.stop()
    checks = by_name(report)
    assert checks["port"]["status"] == "✓"
    assert f"is served by an agentation server (process {server.proc.pid})" in checks["port"]["detail"]
    assert checks["sharing"]["detail"].startswith("1 process(es) have the store open")


def test_a_missing_registration_is_a_failure_with_the_command_that_fixes_it(setup: tuple[Path, Path]) -> None:
    home, project = setup
    code, report = doctor(home, project, "--port", str(free_port()))
    check = by_name(report)["Claude Code"]
    assert code == 1
    assert check["status"] == "✗"
    assert check["detail"] == "agentation is not registered with Claude Code"
    assert check["fix"] == f"claude mcp add agentation -- {OURS} server"


def test_http_url_checks_that_servers_health_version_and_store_through_its_api(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from agentation_mcp import __version__

    server_home, home, project = tmp_path / "server", tmp_path / "home", tmp_path / "project"
    project.mkdir()
    key = "doctor-key"
    server = ServerProcess(server_home, env={"AGENTATION_ACCESS_KEY": key}).wait_listening()
    try:
        request = urllib.request.Request(
            f"{server.url}/sessions",
            data=json.dumps({"url": "http://localhost:3000/"}).encode(),
            headers={"Content-Type": "application/json", "x-api-key": key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as created:
            assert created.status == 201
        # The server builds its /mcp app at the first request; have it built, so doctor's answer comes in time.
        warm = urllib.request.Request(
            f"{server.url}/mcp",
            data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "x-api-key": key,
            },
            method="POST",
        )
        try:
            urllib.request.urlopen(warm, timeout=60).close()
        except urllib.error.HTTPError:
            pass  # a ping without a session is refused, once the app is built
        code, report = doctor(home, project, "--http-url", server.url, "--api-key", key, with_claude=False)
        checks = by_name(report)
        assert code == 0, report
        assert checks["server"]["status"] == "✓"
        assert checks["version"] == {
            "name": "version",
            "status": "✓",
            "detail": f"the server runs agentation {__version__}, as this command does",
            "fix": "",
        }
        assert checks["store"]["detail"] == "read through the API: 1 session(s), 0 pending annotation(s)"
        assert "port" not in checks, "the local port is not what was asked about"

        code, report = doctor(home, project, "--http-url", server.url, with_claude=False)
        checks = by_name(report)
        assert code == 1
        assert checks["server"]["status"] == "✓", "/health needs no key"
        for name in ("version", "store"):
            assert (checks[name]["status"], checks[name]["fix"]) == ("✗", "pass it: --api-key KEY")
            assert "needs an access key" in checks[name]["detail"]

        code, report = doctor(home, project, "--http-url", server.url, "--api-key", "wrong", with_claude=False)
        assert code == 1
        assert "refused the access key" in by_name(report)["store"]["detail"]
    finally:
        assert server.stop() == 0
    code, report = doctor(home, project, "--http-url", server.url, with_claude=False)
    assert code == 1
    assert by_name(report)["server"]["status"] == "✗"
    assert "cannot reach" in by_name(report)["server"]["detail"]


def test_a_codex_tool_timeout_shorter_than_a_watch_call_is_a_warning_naming_the_file_and_the_fix(
    setup: tuple[Path, Path],
) -> None:
    home, project = setup
    config = home / ".codex" / "config.toml"
    _, report = doctor(home, project, "--port", str(free_port()), with_claude=False)
    assert by_name(report)["Codex"] == {
        "name": "Codex",
        "status": "✓",
        "detail": f"agentation is not in {config}",
        "fix": "",
    }
    config.parent.mkdir()
    fix = "agentation-mcp init --client codex (sets tool_timeout_sec above 360)"
    for setting, given in (
        ("", "sets no tool_timeout_sec (Codex's default is 60 s)"),
        ("tool_timeout_sec = 300\n", "sets tool_timeout_sec = 300"),
    ):
        config.write_text(
            f'[mcp_servers.agentation]\ncommand = "{OURS}"\nargs = ["server"]\n{setting}', encoding="utf-8"
        )
        code, report = doctor(home, project, "--port", str(free_port()), with_claude=False)
        assert code == 0  # a warning, not a failure
        check = by_name(report)["Codex"]
        assert check["status"] == "!"
        assert check["detail"].startswith(f"{config} {given} for agentation: Codex would cut")
        assert check["fix"] == fix
    init = agentation(home, "init", "--client", "codex", "--yes", cwd=project)
    assert init.returncode == 0, init.stderr
    _, report = doctor(home, project, "--port", str(free_port()), with_claude=False)
    assert by_name(report)["Codex"]["status"] == "✓"
    assert by_name(report)["Codex"]["detail"] == f"{config}: tool_timeout_sec 420 s outlasts a watch call"
    config.write_text("[mcp_servers.agentation\n", encoding="utf-8")
    _, report = doctor(home, project, "--port", str(free_port()), with_claude=False)
    assert by_name(report)["Codex"]["status"] == "!"
    assert by_name(report)["Codex"]["detail"].startswith(f"{config}:1:24: Expected ']'")
