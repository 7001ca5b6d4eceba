"""The command line: help, unknown commands, option checking, exit on stdin EOF and SIGTERM."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import pytest
import trio

from agentation_mcp import service
from agentation_mcp.cli import main, usage
from agentation_mcp.cli.registration import register_command
from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.config import parse_server_args
from agentation_mcp.errors import ConfigError, StoreUnusable
from agentation_mcp.store import reads

from .conftest import ANNOTATION, commit_to_file, free_port, open_store, server_env


@pytest.mark.parametrize("argv", [[], ["help"], ["--help"], ["-h"]])
def test_help_prints_usage_to_stdout(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert out == usage()
    assert "server" in out
    assert register_command() in out
    program = register_command().split(" -- ", 1)[1].split()[0]
    assert Path(program).is_absolute()
    assert os.access(program, os.X_OK), "the advice names a program that runs from any shell"


def test_unknown_command_exits_2_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
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
        (["--channel", "--mcp-only", "--http-url", "http://h:4747"], "--channel cannot be used with --http-url"),
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
    assert not settings.channel
    assert parse_server_args(["--channel"], {"HOME": "/h"}).channel
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


@contextmanager
def _started(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, once it is serving; its pipes are closed after the block."""
    with subprocess.Popen(
        [sys.executable, "-m", "agentation_mcp", "server"],
        env=server_env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # the signal handler is in place before this line is logged
                if b"MCP server started on stdio" in line:
                    break
            else:
                raise AssertionError(f"server did not start: {proc.wait(timeout=10)}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def test_stdin_eof_exits_0_within_2_seconds(tmp_path: Path) -> None:
    with _started(tmp_path) as proc:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=2) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == b""


def test_sigterm_exits_0_within_2_seconds(tmp_path: Path) -> None:
    with _started(tmp_path) as proc:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=2) == 0


def test_stdin_eof_exits_within_2_seconds_while_another_process_holds_the_store_locked(tmp_path: Path) -> None:
    """A write queued behind another process's lock fails at shutdown instead of holding the exit up for as
    long as the writer would otherwise wait for the lock (half a minute)."""
    home = tmp_path / "home"
    session = commit_to_file(home, CreateSession(url="http://localhost:3000/"))
    annotation = commit_to_file(home, CreateAnnotation.from_body(session["id"], ANNOTATION))
    with _started(home) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        watchdog = threading.Timer(30, proc.kill)  # bounds the blocking reads below
        watchdog.start()
        locker = apsw.Connection(str(home / STORE))
        try:
            proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["id"] == 1
            locker.execute("BEGIN IMMEDIATE")
            call = {"name": "agentation_acknowledge", "arguments": {"annotationId": annotation["id"]}}
            for message in (
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            ):
                proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
            for line in proc.stderr:
                if b"Writes are waiting: another process holds the store's write lock" in line:
                    break
            else:
                raise AssertionError("the write never waited for the lock")
            proc.stdin.close()
            assert proc.wait(timeout=2) == 0
            answer = json.loads(proc.stdout.readline())
            assert answer == {"jsonrpc": "2.0", "id": 2, "error": {"code": -32000, "message": "Connection closed"}}
        finally:
            watchdog.cancel()
            locker.execute("ROLLBACK")
            locker.close()
    with open_store(home / STORE) as st:
        assert reads.get_annotation(st.reader, annotation["id"])["status"] == "pending"


STORE = Path(".agentation") / "store.db"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}


def _start_once(home: Path) -> None:
    """Run the server once in `home`, so that it holds a real store."""
    done = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "server", "--mcp-only"],
        env=server_env(home),
        input=b"",
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()


class ReadOnly:
    """Makes a folder read-only for this process: a read-only remount of a small tmpfs as root
    (root ignores permission bits), the permission bits otherwise."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mounted = False
        folder.mkdir(parents=True)
        if os.geteuid() == 0:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], check=False)
            if done.returncode != 0:
                pytest.skip("cannot mount a tmpfs to make a read-only folder as root")
            self.mounted = True

    def freeze(self) -> None:
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(self.folder)], check=True)
        else:
            for path in sorted(self.folder.rglob("*"), reverse=True):
                path.chmod(0o555 if path.is_dir() else 0o444)
            self.folder.chmod(0o555)

    def release(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)
        else:
            for path in [self.folder, *self.folder.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[ReadOnly]:
    folder = ReadOnly(tmp_path / "home")
    try:
        yield folder
    finally:
        folder.release()


def _store_is_a_directory(home: Path) -> str:
    (home / STORE).mkdir(parents=True)
    return f"The store {home / STORE} is a directory, not a SQLite file. Move it aside and start again."


def _store_is_not_sqlite(home: Path) -> str:
    (home / STORE).parent.mkdir(parents=True)
    (home / STORE).write_bytes(b"these are notes, not a database\n" * 200)
    return f"The store {home / STORE} is not a SQLite database. Move it aside and start again; a new store is created."


def _store_is_damaged(home: Path) -> str:
    _start_once(home)
    data = bytearray((home / STORE).read_bytes())
    data[4096:] = b"\x5a" * (len(data) - 4096)  # every page but the first (the header and the schema)
    (home / STORE).write_bytes(bytes(data))
    return (
        f"The store {home / STORE} is damaged (SQLite reports corruption). Check it with sqlite3 '{home / STORE}' "
        "'PRAGMA integrity_check', then restore a backup (see \"When things go wrong\" in the README) or move it aside."
    )


def _home_is_a_file(home: Path) -> str:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a folder", encoding="utf-8")
    return (
        f"Cannot create the store's folder {home / '.agentation'}: Not a directory. "
        "Set HOME to a folder this user can write, or fix that folder's permissions."
    )


def _run_server_expecting_one_line(home: Path, expected: str, untouched: Path) -> None:
    before = sorted((p.name, p.stat().st_size) for p in untouched.rglob("*") if p.is_file())
    proc = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "server", "--mcp-only"],
        env=server_env(home),
        input=b"",
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [f"agentation-mcp server: {expected}"]
    assert proc.stdout == b""
    after = sorted((p.name, p.stat().st_size) for p in untouched.rglob("*") if p.is_file())
    assert after == before  # nothing was moved, made or overwritten


@pytest.mark.parametrize("make_home", [_store_is_a_directory, _store_is_not_sqlite, _store_is_damaged, _home_is_a_file])
def test_a_store_that_cannot_be_opened_is_one_line_and_exit_1(tmp_path: Path, make_home: Callable[[Path], str]) -> None:
    home = tmp_path / "home"
    expected = make_home(home)
    _run_server_expecting_one_line(home, expected, tmp_path)


def test_a_read_only_store_is_one_line_and_exit_1(read_only: ReadOnly) -> None:
    home = read_only.folder
    _start_once(home)
    read_only.freeze()
    expected = (
        f"Cannot open the store {home / STORE} for writing: it or its folder is read-only. "
        "Make them writable by this user."
    )
    _run_server_expecting_one_line(home, expected, home)


def test_a_home_that_cannot_be_written_is_one_line_and_exit_1(read_only: ReadOnly) -> None:
    home = read_only.folder
    read_only.freeze()
    reason = "Read-only file system" if read_only.mounted else "Permission denied"
    expected = (
        f"Cannot create the store's folder {home / '.agentation'}: {reason}. "
        "Set HOME to a folder this user can write, or fix that folder's permissions."
    )
    _run_server_expecting_one_line(home, expected, home)


def test_an_error_from_inside_the_servers_nurseries_is_one_line_per_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fails_in_two_tasks(settings: object) -> None:
        async def fail(message: str) -> None:
            raise StoreUnusable(message)

        async with trio.open_nursery() as outer:
            outer.start_soon(fail, "The first problem.")
            async with trio.open_nursery() as inner:
                inner.start_soon(fail, "The second problem.")

    monkeypatch.setattr(service, "serve", fails_in_two_tasks)
    assert main(["server", "--mcp-only"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines) == ["agentation-mcp server: The first problem.", "agentation-mcp server: The second problem."]


def test_a_store_that_fails_to_close_neither_hides_the_error_nor_skips_the_other_closers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    def broken() -> None:
        raise OSError("disk I/O error")

    with caplog.at_level(logging.WARNING):
        service.close_all([broken, lambda: closed.append("reader"), lambda: closed.append("writer")])
    assert closed == ["reader", "writer"]
    assert [r.getMessage() for r in caplog.records] == ["[Store] Closing the store failed: disk I/O error"]


@contextmanager
def _in_a_terminal(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`agentation-mcp <args>` with a pseudo-terminal as its controlling terminal, stdin and stdout, as in a shell.

    Yields the process, once stderr says it is serving or watching, and the terminal's master side.
    """
    master, slave = os.openpty()

    def take_the_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "agentation_mcp", *args],
        env=server_env(home),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(slave)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"MCP server started on stdio" in line or b"Watching" in line:
                break
        else:
            raise AssertionError(f"it exited before it was running: {proc.wait(10)}")
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(master)


@pytest.mark.parametrize("command", [["server", "--mcp-only"], ["server"], ["watch"]])
def test_ctrl_c_in_a_terminal_stops_within_a_second(tmp_path: Path, command: list[str]) -> None:
    if command[0] == "server" and len(command) == 1:
        command = [*command, "--port", str(free_port())]
    with _in_a_terminal(tmp_path, *command) as (proc, terminal):
        os.write(terminal, b"\x03")  # the terminal turns it into SIGINT for the foreground process group
        assert proc.wait(timeout=1) == 0


def test_sigterm_stops_a_server_in_a_terminal_within_a_second(tmp_path: Path) -> None:
    with _in_a_terminal(tmp_path, "server", "--mcp-only") as (proc, _):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=1) == 0


@pytest.mark.parametrize(
    "command",
    ["server", "init", "doctor", "sessions", "pending", "show", "ack", "resolve", "dismiss", "reply", "watch"],
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([command, "--help"])
    except SystemExit as exit_:  # argparse's own --help
        code = int(exit_.code or 0)
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"usage: agentation-mcp {command}")
    assert command in usage()


def test_a_server_with_stdin_at_its_end_says_why_it_stops_in_one_line_and_exits_0(tmp_path: Path) -> None:
    """As started in the background, by a service manager or in a container: `server </dev/null`."""
    with open(os.devnull, "rb") as nothing:
        done = subprocess.run(
            [sys.executable, "-m", "agentation_mcp", "server", "--port", str(free_port())],
            env=server_env(tmp_path), stdin=nothing, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == b""
    said = [line for line in done.stderr.decode().splitlines() if line.startswith("agentation-mcp server:")]
    assert said == [f"agentation-mcp server: {service_stopped_text()}"]


def service_stopped_text() -> str:
    from agentation_mcp.cli.server import HTTP_ONLY_HINT, STDIN_CLOSED

    return f"{STDIN_CLOSED.removeprefix('agentation-mcp server: ')}; {HTTP_ONLY_HINT}"


def test_http_only_serves_past_stdin_eof_until_sigterm(tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "agentation_mcp", "server", "--http-only", "--port", str(port)],
        env=server_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if b"Agentation server listening" in line:
                    break
            else:
                raise AssertionError(f"server did not listen: {proc.wait(timeout=10)}")
            assert proc.poll() is None, "stdin at its end did not stop it"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
                assert json.loads(answer.read())["status"] == "ok"
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
            assert b"stdin closed" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_the_server_logs_message_lines_through_its_own_logger_and_leaves_the_process_logging_alone(
    tmp_path: Path,
) -> None:
    probe = """
import logging, sys
factory, root_handlers = logging.getLogRecordFactory(), list(logging.getLogger().handlers)
from agentation_mcp.cli import server
server._configure_logging()
server._configure_logging()  # twice: still one line a record
logging.getLogger("agentation_mcp.web.api").info("[HTTP] %s %s", "POST", "/sessions")
logging.getLogger("agentation_mcp").warning("ours at warning")
logging.getLogger("mcp.server").info("a library's info")
logging.getLogger("mcp.server").warning("a library's warning")
record = logging.makeLogRecord({})
print(logging.getLogRecordFactory() is factory, logging.getLogger().handlers == root_handlers,
      logging._srcfile is not None, record.thread is not None and record.process is not None)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], env=server_env(tmp_path), capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.split() == ["True", "True", "True", "True"]
    assert done.stderr.splitlines() == ["[HTTP] POST /sessions", "ours at warning", "a library's warning"]
