"""`agentation-mcp init --client codex|cursor|vscode` as a real process, on real files in a temporary HOME.

Every file written is parsed again (tomllib for Codex's TOML, the JSONC parser for mcp.json); what was in
it before (other servers, comments, layout) stays, byte for byte.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentation_mcp.cli import jsonc

from .conftest import agentation

OURS = str(Path(sys.executable).parent / "agentation-mcp")


@dataclass(frozen=True)
class Client:
    name: str
    relative: str  # the file, from HOME for codex, else from the project
    servers: str
    before: str  # a file as a person keeps it: other servers, comments

    def path(self, home: Path, project: Path) -> Path:
        return (home if self.name == "codex" else project) / self.relative

    def load(self, text: str) -> dict[str, Any]:
        loaded = tomllib.loads(text) if self.name == "codex" else jsonc.loads(text)
        assert isinstance(loaded, dict)
        return loaded

    def ours(self, text: str) -> Any:
        return self.load(text).get(self.servers, {}).get("agentation")

    def expected(self, *args: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"command": OURS, "args": ["server", *args]}
        if self.name == "codex":
            entry |= {"startup_timeout_sec": 30, "tool_timeout_sec": 420}
        if self.name == "vscode":
            entry = {"type": "stdio", **entry}
        return entry


CLIENTS = [
    Client(
        "codex",
        ".codex/config.toml",
        "mcp_servers",
        "# Codex, by hand\n"
        'model = "gpt-5"  # the usual one\n'
        "\n"
        "[mcp_servers.docs]\n"
        'command = "npx"\n'
        'args = ["-y", "docs-mcp"]\n'
        "\n"
        "# faster answers\n"
        "[profiles.fast]\n"
        'model = "gpt-5-mini"\n',
    ),
    Client(
        "cursor",
        ".cursor/mcp.json",
        "mcpServers",
        "{\n"
        '  // the docs server, shared with the team\n  "mcpServers": {\n'
        '    "docs": { "command": "npx", "args": ["-y", "docs-mcp"] }, /* pinned later */\n'
        "  }\n"
        "}\n",
    ),
    Client(
        "vscode",
        ".vscode/mcp.json",
        "servers",
        "// Workspace servers\n"
        "{\n"
        '\t"inputs": [],\n'
        '\t"servers": {\n'
        '\t\t"docs": {\n'
        '\t\t\t"type": "http", // remote\n'
        '\t\t\t"url": "https://example.invalid/mcp"\n'
        "\t\t}\n"
        "\t}\n"
        "}\n",
    ),
]


@pytest.fixture(params=CLIENTS, ids=[client.name for client in CLIENTS])
def client(request: pytest.FixtureRequest) -> Client:
    chosen: Client = request.param
    return chosen


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def init(home: Path, project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return agentation(home, "init", *args, cwd=project, timeout=90, **env)


def test_a_fresh_file_is_written_parsed_and_checked(client: Client, home: Path, project: Path) -> None:
    done = init(home, project, "--client", client.name, "--yes")
    assert done.returncode == 0, done.stderr
    path = client.path(home, project)
    assert f"Wrote agentation into {path} for " in done.stdout
    assert "Checked: it starts and answers initialize (agentation" in done.stdout
    text = path.read_text(encoding="utf-8")
    assert client.load(text) == {client.servers: {"agentation": client.expected()}}
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == (0o600 if client.name == "codex" else 0o644)  # Codex keeps secrets in its file; umask 022


def test_merging_keeps_the_rest_running_again_changes_nothing_and_remove_gives_back_the_file(
    client: Client, home: Path, project: Path
) -> None:
    path = client.path(home, project)
    path.parent.mkdir(parents=True)
    path.write_text(client.before, encoding="utf-8")
    path.chmod(0o640)
    before = client.load(client.before)

    done = init(home, project, "--client", client.name, "--yes", "--port", "4800")
    assert done.returncode == 0, done.stderr
    written = path.read_bytes()
    text = written.decode()
    after = client.load(text)
    assert after[client.servers].pop("agentation") == client.expected("--port", "4800")
    assert after == before
    for line in client.before.splitlines():
        assert line.rstrip(",") in text  # the comments and the other entries, as they were
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    again = init(home, project, "--client", client.name, "--yes", "--port", "4800")
    assert again.returncode == 0, again.stderr
    assert f"agentation is already in {path}" in again.stdout
    assert path.read_bytes() == written

    removed = init(home, project, "--client", client.name, "--remove", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert f"Removed agentation from {path}" in removed.stdout
    assert path.read_text(encoding="utf-8") == client.before
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    nothing = init(home, project, "--client", client.name, "--remove", "--yes")
    assert f"agentation is not in {path}; nothing to remove." in nothing.stdout
    assert path.read_text(encoding="utf-8") == client.before


def test_print_and_dry_run_show_the_file_and_write_nothing(client: Client, home: Path, project: Path) -> None:
    path = client.path(home, project)
    for option in ("--print", "--dry-run"):
        done = init(home, project, "--client", client.name, option)
        assert done.returncode == 0, done.stderr
        head, _, shown = done.stdout.partition("\n")
        assert head == f"Would write {path}:"
        assert client.ours(shown) == client.expected()
        assert not path.parent.exists()
    path.parent.mkdir(parents=True)
    path.write_text(client.before, encoding="utf-8")
    stamp = path.stat().st_mtime_ns
    done = init(home, project, "--client", client.name, "--print")
    assert client.ours(done.stdout.partition("\n")[2]) == client.expected()
    assert (path.read_text(encoding="utf-8"), path.stat().st_mtime_ns) == (client.before, stamp)
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left either


BROKEN = {
    "codex": ('model = "a"\n[mcp_servers.docs\ncommand = "x"\n', ":2:18: Expected ']'"),
    "cursor": ('{\n  "mcpServers": {\n    "docs": { "command": "x" }\n    "b": {}\n  }\n}\n', ":4:5: a comma or }"),
    "vscode": ('{\n  "servers": {\n    "docs": { "command": "x", },\n  },\n  /* open\n}\n', ":5:3: a /* comment"),
}


def test_a_broken_file_is_refused_with_its_line_and_left_unchanged(client: Client, home: Path, project: Path) -> None:
    path = client.path(home, project)
    path.parent.mkdir(parents=True)
    text, where = BROKEN[client.name]
    path.write_text(text, encoding="utf-8")
    stamp = path.stat().st_mtime_ns
    for extra in ((), ("--remove",), ("--print",)):
        done = init(home, project, "--client", client.name, "--yes", *extra)
        assert done.returncode == 1
        assert f"{path}{where}" in done.stderr
        assert "Nothing was changed" in done.stderr
        assert (path.read_text(encoding="utf-8"), path.stat().st_mtime_ns) == (text, stamp)
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_a_different_command_is_replaced_and_the_persons_own_keys_in_our_entry_stay(home: Path, project: Path) -> None:
    path = project / ".vscode" / "mcp.json"
    path.parent.mkdir()
    path.write_text(
        '{"servers": {"agentation": {"type": "stdio", "command": "agentation-mcp", "args": ["server"],'
        ' "env": {"AGENTATION_ACCESS_KEY": "k"}}}}\n',
        encoding="utf-8",
    )
    done = init(home, project, "--client", "vscode", "--yes")
    assert done.returncode == 0, done.stderr
    entry = jsonc.loads(path.read_text(encoding="utf-8"))["servers"]["agentation"]
    assert entry == {"type": "stdio", "command": OURS, "args": ["server"], "env": {"AGENTATION_ACCESS_KEY": "k"}}


def test_an_http_entry_under_our_name_is_replaced_whole(home: Path, project: Path) -> None:
    path = project / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{"mcpServers": {"agentation": {"url": "http://localhost:4747/mcp"}}}', encoding="utf-8")
    assert init(home, project, "--client", "cursor", "--yes").returncode == 0
    assert jsonc.loads(path.read_text(encoding="utf-8"))["mcpServers"] == {
        "agentation": {"command": OURS, "args": ["server"]}
    }


def test_codex_keeps_a_longer_timeout_and_raises_a_short_one(home: Path, project: Path) -> None:
    path = home / ".codex" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'[mcp_servers.agentation]\ncommand = "{OURS}"\ntool_timeout_sec = 900\n', encoding="utf-8")
    assert init(home, project, "--client", "codex", "--yes").returncode == 0
    assert tomllib.loads(path.read_text(encoding="utf-8"))["mcp_servers"]["agentation"]["tool_timeout_sec"] == 900
    path.write_text(f'[mcp_servers.agentation]\ncommand = "{OURS}"\ntool_timeout_sec = 60\n', encoding="utf-8")
    assert init(home, project, "--client", "codex", "--yes").returncode == 0
    assert tomllib.loads(path.read_text(encoding="utf-8"))["mcp_servers"]["agentation"]["tool_timeout_sec"] == 420


def test_codex_home_is_honoured_and_a_symlinked_file_stays_a_link(home: Path, project: Path, tmp_path: Path) -> None:
    codex_home = tmp_path / "codex-home"
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "config.toml").write_text('model = "gpt-5"\n', encoding="utf-8")
    codex_home.mkdir()
    (codex_home / "config.toml").symlink_to(dotfiles / "config.toml")
    done = init(home, project, "--client", "codex", "--yes", CODEX_HOME=str(codex_home))
    assert done.returncode == 0, done.stderr
    assert (codex_home / "config.toml").is_symlink()
    config = tomllib.loads((dotfiles / "config.toml").read_text(encoding="utf-8"))
    assert config["model"] == "gpt-5"
    assert config["mcp_servers"]["agentation"]["command"] == OURS
    assert not (home / ".codex").exists()


def test_cursor_user_scope_and_scopes_a_client_has_not(home: Path, project: Path) -> None:
    assert init(home, project, "--client", "cursor", "--scope", "user", "--yes").returncode == 0
    assert jsonc.loads((home / ".cursor" / "mcp.json").read_text(encoding="utf-8"))["mcpServers"]["agentation"]
    refused = init(home, project, "--client", "vscode", "--scope", "user")
    assert refused.returncode == 2
    assert "--scope user does not apply to --client vscode (it has: project)" in refused.stderr
    assert not (project / ".vscode").exists()
