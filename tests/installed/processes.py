"""The installed command as a user's shell runs it: a clean environment, a cwd of its own, bounded waits."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds any one step of a process may take before the test fails

_venv = os.environ.get("AGENTATION_INSTALLED_VENV")
_wheel = os.environ.get("AGENTATION_WHEEL")
if not _venv or not _wheel:
    pytest.skip(
        "the smoke suite runs against an installed wheel: scripts/smoke-installed sets AGENTATION_INSTALLED_VENV "
        "and AGENTATION_WHEEL",
        allow_module_level=True,
    )
VENV = Path(_venv)
WHEEL = Path(_wheel)
COMMAND = VENV / "bin" / "agentation-mcp"


def wheel_version() -> str:
    """The version in the wheel's metadata."""
    with zipfile.ZipFile(WHEEL) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(name).decode("utf-8").splitlines():
            if line.startswith("Version: "):
                return line.removeprefix("Version: ")
    raise AssertionError(f"{WHEEL} has no Version in its metadata")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a fresh login shell has: a HOME, a system PATH, no Python or agentation settings."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def run(argv: list[str | Path], home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return json.loads(answer.read())


class Server:
    """An installed `agentation-mcp server` with a pipe on stdin: MCP as raw JSON lines, stderr collected."""

    def __init__(self, command: Path, home: Path, cwd: Path, port: int, *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stderr: list[str] = []
        self._said = threading.Condition()
        self._lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [str(command), "server", "--port", str(port), *args],
            cwd=cwd,
            env=clean_env(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                with self._said:
                    self.stderr.append(line)
                    self._said.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines.put(line)

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        """Until a line on stderr holds `text`."""
        with self._said:
            if not self._said.wait_for(lambda: any(text in line for line in self.stderr), timeout):
                raise AssertionError(f"no {text!r} on stderr within {timeout} s:\n" + "".join(self.stderr))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and read its answer (the next line on stdout)."""
        self.send(message)
        try:
            line = self._lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no answer to {message['method']}:\n" + "".join(self.stderr)) from None
        answer: dict[str, Any] = json.loads(line)
        assert answer.get("id") == message["id"], answer
        return answer

    def stop(self) -> int:
        """Close stdin, as an MCP client that goes away does; the exit status."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(WAIT)
        self._join()
        return code

    def kill(self) -> None:
        """Make sure the process is gone and its pipes are closed (after a test that failed half-way)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self._join()

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(WAIT)
