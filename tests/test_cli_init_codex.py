"""`agentation-mcp init --client codex` judged by the real Codex CLI (pinned, offline, a temporary HOME).

`codex mcp get --json` and `codex mcp list` must show our server with this installation's command, and a tool
timeout that outlasts a watch call; the command written must start our server and answer an MCP client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentation_mcp.cli.agent_configs import WATCH_LONGEST_CALL

from .conftest import codex_cli, free_port, server_env

OURS = str(Path(sys.executable).parent / "agentation-mcp")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def run(home: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=home, env=server_env(home, **env), capture_output=True, text=True, timeout=90, check=False
    )


def codex(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(home, str(codex_cli()), "mcp", *args, **env)


def shown(home: Path, name: str, **env: str) -> dict[str, Any]:
    done = codex(home, "get", name, "--json", **env)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def init(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(home, sys.executable, "-m", "agentation_mcp", "init", "--client", "codex", *args, **env)


def test_codex_lists_our_server_beside_its_own_entries_and_forgets_it_on_remove(home: Path) -> None:
    assert codex(home, "add", "docs", "--", "npx", "-y", "docs-mcp").returncode == 0
    config = home / ".codex" / "config.toml"
    with config.open("a", encoding="utf-8") as file:
        file.write("# kept by hand\n")
    before = config.read_text(encoding="utf-8")

    done = init(home, "--yes")
    assert done.returncode == 0, done.stderr
    ours = shown(home, "agentation")
    assert ours["enabled"] is True
    assert ours["transport"] == {
        "type": "stdio",
        "command": OURS,
        "args": ["server"],
        "env": None,
        "env_vars": [],
        "cwd": None,
    }
    assert ours["tool_timeout_sec"] > WATCH_LONGEST_CALL
    assert ours["startup_timeout_sec"] == 30
    listed = codex(home, "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert rows["agentation"][1:3] == [OURS, "server"]
    assert rows["docs"][1:5] == ["npx", "-y", "docs-mcp", "-"]
    assert shown(home, "docs")["transport"]["args"] == ["-y", "docs-mcp"]
    assert config.read_text(encoding="utf-8").startswith(before)

    assert init(home, "--remove", "--yes").returncode == 0
    assert codex(home, "get", "agentation").returncode != 0
    assert shown(home, "docs")["transport"]["command"] == "npx"
    assert config.read_text(encoding="utf-8") == before


def test_codex_reads_our_entry_from_codex_home(home: Path, tmp_path: Path) -> None:
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    port = free_port()
    assert init(home, "--yes", "--port", str(port), CODEX_HOME=str(codex_home)).returncode == 0
    transport = shown(home, "agentation", CODEX_HOME=str(codex_home))["transport"]
    assert (transport["command"], transport["args"]) == (OURS, ["server", "--port", str(port)])
    assert codex(home, "get", "agentation").returncode != 0  # not in ~/.codex


@pytest.mark.anyio
async def test_the_command_written_for_codex_starts_our_server_and_answers_a_client(home: Path) -> None:
    port = free_port()  # the server the written command starts serves HTTP too: never on the default port here
    done = init(home, "--yes", "--port", str(port))
    assert done.returncode == 0, done.stderr
    entry = tomllib.loads((home / ".codex" / "config.toml").read_text(encoding="utf-8"))["mcp_servers"]["agentation"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=server_env(home), cwd=home)
    with trio.fail_after(30):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            initialized = await session.initialize()
            assert initialized.server_info.name == "agentation"
            tools = {tool.name for tool in (await session.list_tools()).tools}
            assert "agentation_watch_annotations" in tools
