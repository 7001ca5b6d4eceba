"""The command line: help, unknown commands, option checking, exit on stdin EOF and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentation_mcp.cli import USAGE, main
from agentation_mcp.config import parse_server_args
from agentation_mcp.errors import ConfigError

from .conftest import server_env


@pytest.mark.parametrize("argv", [[], ["help"], ["--help"], ["-h"]])
def test_help_prints_usage_to_stdout(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert out == USAGE
    assert "server" in out
    assert "claude mcp add agentation -- agentation-mcp server" in out


def test_unknown_command_exits_1_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "Unknown command: serve\nRun 'agentation-mcp help' for usage information.\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "abc"], "--port must be a port number from 1 to 65535 (got 'abc')."),
        (["--port", "70000"], "--port must be a port number from 1 to 65535 (got '70000')."),
        (["--port"], "--port needs a value"),
        (["--host", "not a host!"], "--host must be an IP address or a host name"),
        (["--http-url", "ftp://x"], "--http-url must be an http:// or https:// URL"),
        (["--verbose"], "Unknown option for 'server': '--verbose'."),
    ],
)
def test_bad_server_options_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_server_args(argv, {"HOME": "/tmp/x"})
    assert str(caught.value).startswith(message)


def test_server_options_and_environment() -> None:
    env = {
        "HOME": "/h",
        "AGENTATION_HOST": " 0.0.0.0 ",
        "AGENTATION_STORE": "memory",
        "AGENTATION_EVENT_RETENTION_DAYS": "3",
    }
    settings = parse_server_args(["--port", "8080", "--mcp-only", "--api-key=k"], env)
    assert (settings.port, settings.host, settings.mcp_only, settings.api_key) == (8080, "0.0.0.0", True, "k")
    assert settings.store_in_memory
    assert settings.store_path == Path("/h/.agentation/store.db")
    assert settings.event_retention_days == 3
    defaults = parse_server_args([], {"HOME": "/h", "AGENTATION_EVENT_RETENTION_DAYS": "-1"})
    assert defaults.bind_host == "127.0.0.1"
    assert defaults.event_retention_days == 7
    assert defaults.warnings == (
        "AGENTATION_EVENT_RETENTION_DAYS='-1' is not a whole number from 0 to 3650; using the default 7.",
    )


def test_bad_option_exits_2_before_touching_the_store(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "server", "--port", "0"],
        env=server_env(tmp_path), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "--port must be a port number" in proc.stderr
    assert not (tmp_path / ".agentation").exists()


def _start(home: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentation_mcp", "server"],
        env=server_env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # the signal handler is in place before this line is logged
        if b"MCP server started on stdio" in line:
            return proc
    raise AssertionError(f"server did not start: {proc.wait(timeout=10)}")


def test_stdin_eof_exits_0_within_2_seconds(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    assert proc.stdin is not None
    proc.stdin.close()
    began = time.monotonic()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 2
    assert proc.stdout is not None
    assert proc.stdout.read() == b""


def test_sigterm_exits_0_within_2_seconds(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 2
    assert proc.stdin is not None
    proc.stdin.close()


def _store_is_a_directory(home: Path) -> Path:
    (home / ".agentation" / "store.db").mkdir(parents=True)
    return home


def _store_is_not_sqlite(home: Path) -> Path:
    (home / ".agentation").mkdir(parents=True)
    (home / ".agentation" / "store.db").write_bytes(b"these are notes, not a database\n" * 200)
    return home


def _home_is_a_file(home: Path) -> Path:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a folder", encoding="utf-8")
    return home


@pytest.mark.parametrize(
    ("make_home", "message"),
    [
        (_store_is_a_directory, "store.db is a directory, not a SQLite file. Move it aside and start again."),
        (_store_is_not_sqlite, "store.db is not a SQLite database. Move it aside and start again"),
        (_home_is_a_file, "Cannot create the store's folder"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_and_exit_1(
    tmp_path: Path, make_home: Callable[[Path], Path], message: str
) -> None:
    home = make_home(tmp_path / "home")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "server", "--mcp-only"],
        env=server_env(home),
        input=b"",
        capture_output=True,
        timeout=30,
    )
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1, proc.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith("agentation-mcp server: ")
    assert message in lines[0]
    assert proc.stdout == b""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing was moved, made or overwritten
