"""Shared fixtures: trio as the async backend, stores in temporary folders, real server processes."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

import apsw
import h11
import pytest
import trio
from hypothesis import settings
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentation_mcp.agent.tools import ToolOutcome
from agentation_mcp.commands import Command, CreateAnnotation, CreateSession, NewThreadMessage
from agentation_mcp.models import Event, to_json
from agentation_mcp.store import connection, reads, schema, transactions
from agentation_mcp.store.connection import StoreLocation, WalSync
from agentation_mcp.store.hub import Hub
from agentation_mcp.store.reads import Reader
from agentation_mcp.store.writer import Writer, run_writer
from agentation_mcp.web.access import AccessPolicy
from agentation_mcp.web.api import HttpApi, HttpOptions
from agentation_mcp.web.server import serve_http
from agentation_mcp.web.wire import HttpLimits

from .faulty_disk import FaultyDisk

# In CI the generated examples are the same on every run, so a red build always means a change broke
# something; locally each run explores new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
ANNOTATION: dict[str, Any] = {
    "comment": "Make the button blue",
    "element": "button",
    "elementPath": "body > main > button",
    "x": 10.5,
    "y": 20,
    "timestamp": 1_700_000_000_000,
}


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@dataclass
class Store:
    location: StoreLocation
    conn: apsw.Connection
    reader: Reader

    def hub(self) -> Hub:
        return Hub(partial(reads.events_after, self.reader), reads.last_sequence(self.reader))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".agentation" / "store.db"


@contextmanager
def open_store(path: Path) -> Iterator[Store]:
    """The store at `path`, migrated, with the writer's connection and a reader, for the block."""
    location = StoreLocation(path)
    conn = connection.open_write_connection(location)
    try:
        schema.migrate(conn)
        read = connection.open_read_connection(location)
        try:
            yield Store(location, conn, Reader(read))
        finally:
            read.close()
    finally:
        conn.close()


@pytest.fixture
def opened(db_path: Path) -> Iterator[Store]:
    with open_store(db_path) as st:
        yield st


@pytest.fixture
def wal_sync(opened: Store) -> Iterator[WalSync]:
    """`WalSync` attached to the opened file store; its checkpoint connection closed afterwards."""
    sync = WalSync.attach(opened.conn, opened.location)
    assert sync is not None
    yield sync
    sync.close()


class HeldFlush:
    """A WAL flush a test holds open: `durable` (given to the writer as its flush) says it began, then waits
    for `release`; `data_version` (given to the hub's tail) sets `tail_looked` once the tail has polled the
    store three times during the flush."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._token = trio.lowlevel.current_trio_token()
        self._polls = 0
        self.flushing = trio.Event()
        self.release = threading.Event()
        self.tail_looked = trio.Event()

    def durable(self) -> None:
        trio.from_thread.run_sync(self.flushing.set, trio_token=self._token)
        self.release.wait(10)

    def data_version(self) -> int:
        if self.flushing.is_set():
            self._polls += 1
            if self._polls == 3:
                self.tail_looked.set()
        return reads.data_version(self._reader)


def commit(conn: apsw.Connection, *commands: Command) -> list[tuple[Any, list[Event]]]:
    """Commit `commands` straight to the store in one transaction, as the writer (or another process) does.

    Returns each command's (result, events); raises the first command's error.
    """
    return [committed.unwrap() for committed in transactions.commit_batch(conn, commands)]


def commit_to_file(home: Path, command: Command) -> Any:
    """Commit one command to the store under `home` from a connection of its own, as another process would."""
    conn = connection.open_write_connection(StoreLocation(home / ".agentation" / "store.db"))
    try:
        schema.migrate(conn)
        [(result, _)] = commit(conn, command)
        return result
    finally:
        conn.close()


@asynccontextmanager
async def running_writer(st: Store, hub: Hub, *, in_thread: bool = False, **kw: Any) -> AsyncIterator[Writer]:
    async with trio.open_nursery() as nursery:
        writer: Writer = await nursery.start(
            lambda task_status: run_writer(st.conn, hub, in_thread=in_thread, task_status=task_status, **kw)
        )
        try:
            yield writer
        finally:
            writer.close()


@dataclass
class InProcessServer:
    port: int
    api: HttpApi
    writer: Writer
    hub: Hub

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serving_http(
    st: Store, *, limits: HttpLimits | None = None, max_connections: int = 1024
) -> AsyncIterator[InProcessServer]:
    """The HTTP API on 127.0.0.1 (a port of its own) over `st`, with the writer on its database thread."""
    limits = limits or HttpLimits()
    hub = st.hub()
    async with running_writer(st, hub, in_thread=True) as writer:
        options = HttpOptions(policy=AccessPolicy("127.0.0.1"), max_body=limits.max_body)
        api = HttpApi(writer, hub, st.reader, options)
        async with trio.open_nursery() as nursery:
            port: int | None = await nursery.start(
                partial(serve_http, api, "127.0.0.1", 0, limits=limits, max_connections=max_connections)
            )
            assert port is not None
            try:
                yield InProcessServer(port, api, writer, hub)
            finally:
                nursery.cancel_scope.cancel()


def copy_reference_db(home: Path) -> Path:
    target = home / ".agentation" / "store.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "reference-1.3.2.db", target)
    return target


def reference_view() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "reference-1.3.2.json").read_text(encoding="utf-8"))
    return data


def reference_cli() -> Path:
    """`AGENTATION_REF_CLI`, else where scripts/install-reference installs the reference."""
    if named := os.environ.get("AGENTATION_REF_CLI"):
        return Path(named)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.get("AGENTATION_REF_DIR") or cache / "agentation-mcp" / "reference")
    return folder / "node_modules" / "agentation-mcp" / "dist" / "cli.js"


def _pinned_cli(name: str, env: str, folder: str, script: str) -> Path:
    """The node CLI `script` installs into the cache's `folder` (or `$env`); skips (fails in CI) without it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    installed = Path(os.environ.get(env) or cache / "agentation-mcp" / folder) / "node_modules" / ".bin" / name
    if not installed.exists():
        reason = f"the {name} CLI is not installed at {installed}: run {script}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return installed


def claude_cli() -> Path:
    """The pinned Claude Code CLI that scripts/install-claude-code installs."""
    return _pinned_cli("claude", "AGENTATION_CLAUDE_DIR", "claude-code", "scripts/install-claude-code")


def codex_cli() -> Path:
    """The pinned Codex CLI that scripts/install-codex installs."""
    return _pinned_cli("codex", "AGENTATION_CODEX_DIR", "codex", "scripts/install-codex")


def server_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
    for key in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def agentation(
    home: Path, *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one `agentation-mcp` command to completion (bounded), as a separate process with HOME `home`."""
    return subprocess.run(
        [sys.executable, "-m", "agentation_mcp", *args],
        cwd=cwd,
        env=server_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def server_params(home: Path, *args: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agentation_mcp", "server", *args], env=server_env(home, **env)
    )


@asynccontextmanager
async def mcp_client(home: Path, *args: str, errlog: TextIO = sys.stderr, **env: str) -> AsyncIterator[ClientSession]:
    """A real MCP client session with a real `agentation-mcp server` process (its stderr to `errlog`)."""
    async with (
        stdio_client(server_params(home, *args, **env), errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def tool_text(result: Any) -> str:
    """The text of a tool result: a client's `CallToolResult`, or the `ToolOutcome` of `call_tool`."""
    if isinstance(result, ToolOutcome):
        return result.text
    assert len(result.content) == 1
    text: str = result.content[0].text
    return text


def tool_json(result: Any) -> Any:
    assert not result.is_error, tool_text(result)
    return json.loads(tool_text(result))


def free_port() -> int:
    """A port nobody listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


T = TypeVar("T")


async def wait_for_file(path: Path, ready: Callable[[str], T | None]) -> T:
    """Read `path`, which another process writes, until `ready(its text)` is not None; returns that.

    Polls: another process's file gives no signal to wait on. The caller bounds the wait (`fail_after`).
    """
    file = trio.Path(path)
    while True:
        if await file.exists() and (found := ready(await file.read_text(encoding="utf-8"))) is not None:
            return found
        await trio.sleep(0.02)


async def wait_for_log(path: Path, last: int) -> list[dict[str, Any]]:
    """The event log (AGENTATION_EVENT_LOG) once it reaches sequence `last`; the caller bounds the wait."""

    def complete(text: str) -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in text.splitlines()]
        return lines if lines and lines[-1].get("sequence") == last else None

    return await wait_for_file(path, complete)


class ServerProcess:
    """A real `agentation-mcp server` process with its stdin held open; stderr is collected."""

    def __init__(self, home: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None) -> None:
        import subprocess
        import threading

        self.home = home
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.port_taken = threading.Event()
        self.exited = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentation_mcp", "server", "--port", str(self.port), *args],
            env=server_env(home, **(env or {})),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if "[HTTP] Agentation server listening" in line:
                    self.listening.set()
                if "already in use" in line:
                    self.port_taken.set()
        self.exited.set()

    def wait_listening(self, timeout: float = 20) -> ServerProcess:
        if not self.listening.wait(timeout):
            raise AssertionError("server did not listen:\n" + "".join(self.lines))
        return self

    def stop(self, timeout: float = 10) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(timeout)
        self.exited.wait(timeout)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.exited.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "home").wait_listening()
    yield proc
    proc.stop()


async def read_h11_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[h11.Request, bytes] | None:
    """One whole HTTP request from `stream`, for the tests' little servers; None if the peer left."""
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, body
        else:
            return None


@asynccontextmanager
async def loopback_server(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """Serve `handler` on 127.0.0.1 for the block; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


Frame = dict[str, Any]
"""One SSE event as a test reads it: its `event`, `id` and decoded `data`."""


class Stream:
    """An open SSE response on a raw connection (parsed with h11), read frame by frame."""

    def __init__(self, connection: trio.SocketStream, parser: h11.Connection) -> None:
        self.connection = connection
        self.parser = parser
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.comments: list[str] = []

    async def _event(self) -> object:
        while (event := self.parser.next_event()) is h11.NEED_DATA:
            self.parser.receive_data(await self.connection.receive_some(65536))
        return event

    async def _line(self) -> str:
        while "\n" not in self.text:
            event = await self._event()
            if not isinstance(event, h11.Data):
                raise AssertionError(f"stream ended: {event!r}")
            self.text += self.decoder.decode(bytes(event.data))
        line, self.text = self.text.split("\n", 1)
        return line

    async def frame(self) -> Frame:
        fields: dict[str, str] = {}
        while True:
            line = await self._line()
            if line == "":
                if fields:
                    return {"event": fields.get("event"), "id": fields.get("id"), "data": json.loads(fields["data"])}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    async def frames(self, n: int) -> list[Frame]:
        return [await self.frame() for _ in range(n)]


@asynccontextmanager
async def stream(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    """An SSE stream from `url`, open for the block."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with connection:
        parser = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=target, headers=[("Host", parts.netloc), *(headers or {}).items()])
        await connection.send_all(parser.send(request) + parser.send(h11.EndOfMessage()))
        opened = Stream(connection, parser)
        response = await opened._event()
        assert isinstance(response, h11.Response)
        assert response.status_code == 200
        assert dict(response.headers)[b"content-type"] == b"text/event-stream"
        yield opened


# --- one command at a time, and what a command returned checked against the store ---------------------------


def commit_one(st_: Store, command: Command) -> tuple[Any, list[Event]]:
    """One command through the writer's own transaction function; raises the command's error."""
    [done] = commit(st_.conn, command)
    return done


def new_annotation(st_: Store, **fields: Any) -> tuple[str, dict[str, Any]]:
    session, _ = commit_one(st_, CreateSession(url="http://localhost:3000/"))
    created, _ = commit_one(st_, CreateAnnotation.from_body(session["id"], {**ANNOTATION, **fields}))
    return str(session["id"]), created


def fresh(st_: Store, annotation_id: str) -> dict[str, Any]:
    """The annotation read from the write connection, with no cache involved."""
    return reads.get_annotation(Reader(st_.conn, None), annotation_id)


def assert_same_everywhere(st_: Store, returned: dict[str, Any]) -> None:
    """What a command returned is what is stored: uncached, cached, and as the same JSON text."""
    uncached = fresh(st_, returned["id"])
    cached = reads.get_annotation(st_.reader, returned["id"])
    assert returned == uncached
    assert cached == uncached
    # Key order and number types too (`5` vs `5.0`): clients see the JSON text.
    assert to_json(returned) == to_json(uncached) == to_json(cached)


def thread_message(content: str, role: str = "agent") -> NewThreadMessage:
    return NewThreadMessage.from_body({"role": role, "content": content})


@pytest.fixture
def disk() -> Iterator[FaultyDisk]:
    """A VFS whose writes and syncs can be made to fail."""
    faulty = FaultyDisk()
    try:
        yield faulty
    finally:
        faulty.unregister()
