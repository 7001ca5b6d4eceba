"""The wheel installed as users install command-line tools, `pipx install` and `uv tool install`, each into
folders of its own; and `init` after such an install registers a command that runs from any shell (for Claude Code
and for Codex)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .processes import WHEEL, clean_env, run, wheel_version

TOOLS = Path(sys.executable).parent  # pipx and uv come with the test extras


@pytest.fixture(scope="module", params=["pipx", "uv"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `agentation-mcp` a pipx or uv tool install puts on the user's PATH (its bin folder)."""
    installer: str = request.param
    root = tmp_path_factory.mktemp(installer)
    bin_dir = root / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if installer == "pipx":
        env.update(PIPX_HOME=str(root / "home"), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(root / "man"))
        argv = [str(TOOLS / "pipx"), "install", str(WHEEL)]
    else:
        env.update(UV_TOOL_DIR=str(root / "tools"), UV_TOOL_BIN_DIR=str(bin_dir))
        argv = [str(TOOLS / "uv"), "tool", "install", str(WHEEL)]
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    command = bin_dir / "agentation-mcp"
    assert command.is_file()
    return command


def test_the_tool_install_runs_help_and_version(installed: Path, tmp_path: Path) -> None:
    done = run([installed, "--version"], tmp_path / "home", tmp_path)
    assert (done.returncode, done.stdout) == (0, f"agentation-mcp {wheel_version()}\n"), done.stderr
    done = run([installed, "help"], tmp_path / "home", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"agentation-mcp {wheel_version()}: ")


def registered_program(project: Path) -> list[str]:
    entry = json.loads((project / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"]["agentation"]
    return [entry["command"], *entry["args"]]


def test_init_registers_a_command_that_runs_from_any_shell(installed: Path, tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    # No claude on this PATH: init prints the command to run, and checks that the command starts.
    done = run([installed, "init", "--yes"], home, project)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = next(line for line in done.stdout.splitlines() if "claude mcp add" in line)
    advised = shlex.split(printed.split(" -- ", 1)[1])
    assert "Checked: it starts and answers initialize (agentation " in done.stdout
    # --scope project writes the project's .mcp.json, as Claude Code reads it.
    done = run([installed, "init", "--scope", "project", "--yes"], home, project)
    assert done.returncode == 0, done.stdout + done.stderr
    command = registered_program(project)
    assert command == advised
    program, args = Path(command[0]), command[1:]
    assert args == ["server"]
    assert program.is_absolute()
    assert program.resolve() == installed.resolve()  # the tool's own entry point, not whatever is on PATH
    # From another folder, with a PATH that holds neither the tool's bin folder nor its environment's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(program), "--version"],
        cwd=elsewhere,
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"agentation-mcp {wheel_version()}\n"), done.stderr


def test_init_for_codex_writes_the_tools_own_command(installed: Path, tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    done = run([installed, "init", "--client", "codex", "--yes"], home, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checked: it starts and answers initialize (agentation " in done.stdout
    entry = tomllib.loads((home / ".codex" / "config.toml").read_text(encoding="utf-8"))["mcp_servers"]["agentation"]
    program = Path(entry["command"])
    assert program.is_absolute()
    assert program.resolve() == installed.resolve()
    assert entry["args"] == ["server"]
    assert entry["tool_timeout_sec"] > 300 + 60  # outlasts the longest watch call
