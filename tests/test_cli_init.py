"""`agentation-mcp init` with the real Claude Code CLI (pinned, offline, a temporary HOME).

Claude Code itself is the judge: `claude mcp list` must show the server
connected, which it checks by starting the registered command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerProcess, claude_cli, server_env

OURS = Path(sys.executable).parent / "agentation-mcp"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def environment(home: Path, *, with_claude: bool = True) -> dict[str, str]:
    env = server_env(home)
    if with_claude:
        env["PATH"] = f"{claude_cli().parent}{os.pathsep}{env['PATH']}"
    return env


def run(project: Path, *args: str, with_claude: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=project,
        env=environment(project.parent / "home", with_claude=with_claude),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def init(project: Path, *args: str, with_claude: bool = True) -> subprocess.CompletedProcess[str]:
    return run(project, sys.executable, "-m", "agentation_mcp", "init", *args, with_claude=with_claude)


def claude(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(project, str(claude_cli()), *args)


def test_init_registers_the_absolute_command_and_claude_code_connects(project: Path) -> None:
    first = init(project, "--yes")
    assert first.returncode == 0, first.stderr
    assert f"Registered agentation with Claude Code (local scope): {OURS} server" in first.stdout
    assert "Checked: it starts and answers initialize (agentation" in first.stdout
    listed = claude(project, "mcp", "list")
    assert f"agentation: {OURS} server - ✔ Connected" in listed.stdout, listed.stdout + listed.stderr
    shown = claude(project, "mcp", "get", "agentation")
    assert f"Command: {OURS}" in shown.stdout
    assert "Args: server" in shown.stdout
    assert "Status: ✔ Connected" in shown.stdout, shown.stdout + shown.stderr

    again = init(project, "--yes")
    assert again.returncode == 0
    assert f"agentation is already registered with Claude Code: {OURS} server" in again.stdout


def test_a_registration_with_another_command_is_replaced(project: Path) -> None:
    assert claude(project, "mcp", "add", "agentation", "--", "agentation-mcp", "server").returncode == 0
    replaced = init(project, "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert "is registered with another command (agentation-mcp server); it will be replaced." in replaced.stdout
    assert f"Command: {OURS}" in claude(project, "mcp", "get", "agentation").stdout


def test_dry_run_shows_the_command_and_changes_nothing(project: Path) -> None:
    dry = init(project, "--dry-run", "--port", "4800")
    assert dry.returncode == 0
    assert "Would run:" in dry.stdout
    assert f"mcp add --scope local agentation -- {OURS} server --port 4800" in dry.stdout
    assert claude(project, "mcp", "get", "agentation").returncode != 0


def test_project_scope_writes_the_shared_mcp_json(project: Path) -> None:
    done = init(project, "--yes", "--scope", "project")
    assert done.returncode == 0, done.stderr
    config = json.loads((project / ".mcp.json").read_text(encoding="utf-8"))
    entry = config["mcpServers"]["agentation"]
    assert (entry["command"], entry["args"]) == (str(OURS), ["server"])
    assert f"Command: {OURS}" in claude(project, "mcp", "get", "agentation").stdout


def test_without_claude_on_path_project_scope_writes_mcp_json_and_others_print_the_command(project: Path) -> None:
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}), encoding="utf-8")
    done = init(project, "--yes", "--scope", "project", with_claude=False)
    assert done.returncode == 0, done.stderr
    servers = json.loads((project / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"]
    assert set(servers) == {"other", "agentation"}
    assert servers["agentation"]["command"] == str(OURS)
    printed = init(project, "--yes", with_claude=False)
    assert f"claude mcp add --scope local agentation -- {OURS} server" in printed.stdout


def test_claude_code_connects_to_the_streamable_http_endpoint(project: Path) -> None:
    server = ServerProcess(project.parent / "home").wait_listening()
    try:
        added = claude(project, "mcp", "add", "--transport", "http", "agentation", f"{server.url}/mcp")
        assert added.returncode == 0, added.stderr
        listed = claude(project, "mcp", "list")
        assert f"agentation: {server.url}/mcp (HTTP) - ✔ Connected" in listed.stdout, listed.stdout
    finally:
        assert server.stop() == 0


def test_remove_unregisters_and_print_is_the_dry_run(project: Path) -> None:
    assert init(project, "--yes").returncode == 0
    shown = init(project, "--remove", "--print")
    assert shown.returncode == 0
    assert "Would run:" in shown.stdout
    assert "mcp remove agentation -s local" in shown.stdout
    assert claude(project, "mcp", "get", "agentation").returncode == 0
    removed = init(project, "--remove", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "Removed agentation from Claude Code (local scope)." in removed.stdout
    assert claude(project, "mcp", "get", "agentation").returncode != 0
    again = init(project, "--remove", "--yes")
    assert "agentation is not registered with Claude Code; nothing to remove." in again.stdout
