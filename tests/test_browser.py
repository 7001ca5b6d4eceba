"""The real `agentation` toolbar in a real browser against a real server process.

A React page (tests/browser/src/page.jsx) renders `<Agentation endpoint=...>`
from the npm `agentation` package; headless Chromium (Debian's, driven by
playwright-core through tests/browser/driver.mjs) clicks through the toolbar's
own UI. The page is served from one loopback port and the API server listens on
another, so every request is cross-origin, as in real use.

Which server: `AGENTATION_E2E_SERVER=ours` (default, `python -m agentation_mcp
server`) or `reference` (the npm agentation-mcp 1.3.2, from
`AGENTATION_REF_CLI`, default where scripts/install-reference installs it).

Needs /usr/bin/chromium and tests/browser/node_modules, both installed by
scripts/install-browser-deps; the tests skip without them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from .conftest import free_port, reference_cli, server_env, tool_json, tool_text

BROWSER_DIR = Path(__file__).parent / "browser"
PAGE_SOURCE = BROWSER_DIR / "src" / "page.jsx"
CHROMIUM = Path(os.environ.get("AGENTATION_E2E_CHROMIUM", "/usr/bin/chromium"))
REF_CLI = reference_cli()
SERVER_KIND = os.environ.get("AGENTATION_E2E_SERVER", "ours")
HOST = "127.0.0.1"

# Bounds for every wait in this file.
BUILD_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 20.0
DRIVER_START_TIMEOUT = 45.0
COMMAND_TIMEOUT = 25.0
HTTP_TIMEOUT = 5.0
MCP_TIMEOUT = 30.0
RESOLVE_VISIBLE_WITHIN_MS = 5000


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("`node` is not on PATH; scripts/install-browser-deps needs Node.js and npm")
    return path


def require_browser_deps() -> None:
    """Skip when the browser or the harness's npm packages are not installed; in CI, fail instead."""
    missing = [p for p in (CHROMIUM, BROWSER_DIR / "node_modules") if not p.exists()]
    if missing:
        reason = f"{missing[0]} is missing: run scripts/install-browser-deps"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _spawn(argv: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    """A server process with its own HOME, stdin a pipe kept open (it serves MCP on stdio too)."""
    home.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=server_env(home))


def start_reference_server(port: int, home: Path) -> subprocess.Popen[bytes]:
    """The npm agentation-mcp 1.3.2 server: HTTP API + SSE on 127.0.0.1:<port>, store in <home>."""
    if not REF_CLI.is_file():
        pytest.fail(f"AGENTATION_E2E_SERVER=reference but {REF_CLI} does not exist (set AGENTATION_REF_CLI)")
    return _spawn([node(), str(REF_CLI), "server", "--port", str(port)], home, home / "server.log")


def start_our_server(port: int, home: Path) -> subprocess.Popen[bytes]:
    """This project's server: HTTP API + SSE on 127.0.0.1:<port>, store in <home>."""
    return _spawn([sys.executable, "-m", "agentation_mcp", "server", "--port", str(port)], home, home / "server.log")


def mcp_server_params(kind: str, port: int, home: Path) -> StdioServerParameters:
    """A second, MCP-only process for an agent's tool calls, reaching the same data as the HTTP server."""
    if kind == "reference":
        args = [str(REF_CLI), "server", "--mcp-only", "--http-url", f"http://{HOST}:{port}"]
        return StdioServerParameters(command=node(), args=args, env=server_env(home))
    # Ours shares the store file under the same HOME with the HTTP server process.
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agentation_mcp", "server", "--mcp-only"], env=server_env(home)
    )


SERVERS: dict[str, Callable[[int, Path], subprocess.Popen[bytes]]] = {
    "reference": start_reference_server,
    "ours": start_our_server,
}


def log_tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Close stdin (servers exit on EOF), then SIGTERM, then SIGKILL; bounded."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    for step in (proc.terminate, proc.kill):
        if proc.poll() is not None:
            break
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            step()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
        return json.loads(response.read())


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the server answers /health.

    Polls: the server is another process, ours or the reference one, and its answers are the one signal both give.
    """
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{SERVER_KIND} server exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"{SERVER_KIND} server gave no /health on port {port} in {SERVER_START_TIMEOUT} s:\n{log_tail(log)}"
            )
        time.sleep(0.1)  # polling pace


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with a JavaScript MIME type for ES modules named .jsx (browsers insist)."""

    # Replaces the base class's own class attribute of the same name.
    extensions_map = {  # noqa: RUF012
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".jsx": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Driver:
    """tests/browser/driver.mjs: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, api_origin: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [node(), str(BROWSER_DIR / "driver.mjs"), "--api-origin", api_origin],
                cwd=BROWSER_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def wait_ready(self) -> None:
        ready = self._next(DRIVER_START_TIMEOUT, "start")
        if not ready.get("ok"):
            pytest.fail(f"the browser driver did not start: {ready.get('error')}\n{log_tail(self.log)}")

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def _next(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"browser driver: no answer to {what} within {timeout} s\n{log_tail(self.log)}")
        if line is None:
            pytest.fail(f"browser driver exited ({self.proc.poll()}) during {what}\n{log_tail(self.log)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def try_call(self, cmd: str, timeout: float = COMMAND_TIMEOUT, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._next(timeout, cmd)

    def __call__(self, cmd: str, timeout: float = COMMAND_TIMEOUT, **fields: Any) -> dict[str, Any]:
        answer = self.try_call(cmd, timeout, **fields)
        if not answer.get("ok"):
            console = self.try_call("console", 5).get("lines")
            shot = self.log.with_name("failure.png")
            self.screenshot_quietly(shot)
            pytest.fail(
                f"browser driver {cmd} {fields}: {answer.get('error')}\npage console: {console}\nscreenshot: {shot}"
            )
        return answer

    def screenshot_quietly(self, path: Path) -> None:
        """For whoever debugs a failure; never fails itself."""
        if self.proc.poll() is None:
            try:
                self.try_call("screenshot", 10, path=str(path))
            except (OSError, pytest.fail.Exception):
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.try_call("close", 15)
            except (OSError, pytest.fail.Exception):
                pass
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.reader.join(timeout=5)


@dataclass
class E2E:
    kind: str
    api: str
    home: Path
    page_url: str
    driver: Driver

    def get(self, path: str) -> Any:
        return http_json("GET", self.api + path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page, built once per run with esbuild (tests/browser/build.mjs)."""
    require_browser_deps()
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [node(), str(BROWSER_DIR / "build.mjs"), str(out)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"building the e2e page failed:\n{build.stdout}\n{build.stderr}")
    return out


@pytest.fixture
def e2e(site: Path, tmp_path: Path) -> Iterator[E2E]:
    if SERVER_KIND not in SERVERS:
        pytest.fail(f"AGENTATION_E2E_SERVER must be one of {sorted(SERVERS)}, not {SERVER_KIND!r}")
    with ExitStack() as stack:
        home = tmp_path / "home"
        port = free_port()
        server = SERVERS[SERVER_KIND](port, home)
        stack.callback(stop_process, server)
        wait_healthy(server, port, home / "server.log")

        httpd = http.server.ThreadingHTTPServer((HOST, 0), functools.partial(QuietHandler, directory=str(site)))
        httpd.daemon_threads = True
        serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        serving.start()
        stack.callback(serving.join, 5)
        stack.callback(httpd.server_close)
        stack.callback(httpd.shutdown)

        api = f"http://{HOST}:{port}"
        page_url = f"http://{HOST}:{httpd.server_address[1]}/?" + urllib.parse.urlencode({"endpoint": api})
        driver = Driver(api, tmp_path / "driver.log")
        stack.callback(driver.close)
        driver.wait_ready()
        # Leave a picture of the last page next to the logs for whoever debugs a failure.
        stack.callback(driver.screenshot_quietly, tmp_path / "last.png")
        yield E2E(SERVER_KIND, api, home, page_url, driver)


def expected_source_file() -> str:
    """Where the toolbar should say the clicked elements come from: ProductCard's first hook call."""
    for number, line in enumerate(PAGE_SOURCE.read_text(encoding="utf-8").splitlines(), 1):
        column = line.find("useState(1)")
        if column >= 0:
            return f"src/page.jsx:{number}:{column + 1}"
    raise AssertionError("no useState(1) in page.jsx")


def assert_echoed(sent: dict[str, Any], stored: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """Every field the toolbar sent comes back unchanged (but `id`: the server assigns its own)."""
    differing = {
        key: (value, stored.get(key, "<missing>"))
        for key, value in sent.items()
        if key not in ("id", *skip) and stored.get(key, "<missing>") != value
    }
    assert not differing, f"fields the toolbar sent that came back different (sent, stored): {differing}"


def assert_all_api_calls_succeeded(driver: Driver) -> list[dict[str, Any]]:
    """No toolbar request got a non-2xx answer, failed on the network or was blocked by CORS.

    A request cut by a page reload (net::ERR_ABORTED, e.g. the SSE stream) is no failure.
    """
    requests: list[dict[str, Any]] = driver("requests")["requests"]
    failed = [
        r
        for r in requests
        if (r["status"] is not None and not 200 <= r["status"] < 300)
        or r.get("error", "net::ERR_ABORTED") != "net::ERR_ABORTED"
    ]
    assert not failed, f"toolbar requests that failed (status, network or CORS): {failed}"
    blocked = [line for line in driver("console")["lines"] if "CORS" in line]
    assert not blocked, f"the browser blocked requests: {blocked}"
    return requests


def test_toolbar_creates_edits_and_deletes_annotations_on_the_server(e2e: E2E) -> None:
    driver = e2e.driver
    opened = driver("open", url=e2e.page_url)
    session_id = opened["sessionId"]
    assert opened["sessionCall"] == {"method": "POST", "path": "/sessions", "status": 201}

    buy = driver("create", selector="#buy", comment="Make the buy button bigger")
    name = driver("create", selector="h2.product-name", comment="Use the full product name")
    assert buy["status"] == name["status"] == 201
    markers = driver("markers")["markers"]
    assert [m["id"] for m in markers] == [buy["serverId"], name["serverId"]]

    # What the toolbar sent: the element it was pointed at, with the details an agent needs.
    sent = buy["sent"]
    assert sent["comment"] == "Make the buy button bigger"
    assert sent["element"] == 'button "Buy now"'
    assert sent["elementPath"].endswith('#buy[data-testid="buy-button"]')
    assert set(sent["boundingBox"]) == {"x", "y", "width", "height"}
    assert sent["attributes"] == {"data-testid": "buy-button"}
    assert sent["sessionId"] == session_id
    assert sent["status"] == "pending"
    assert sent["sourceFile"] == expected_source_file()
    assert_echoed(sent, buy["stored"])
    assert_echoed(name["sent"], name["stored"])

    edited = driver("edit", serverId=buy["serverId"], comment="Make the buy button bigger and green")
    assert edited["sent"] == {"comment": "Make the buy button bigger and green"}
    assert edited["status"] == 200
    deleted = driver("delete", serverId=name["serverId"])
    assert 200 <= deleted["status"] < 300
    markers = driver("markers")["markers"]
    assert [(m["id"], m["comment"]) for m in markers] == [(buy["serverId"], "Make the buy button bigger and green")]

    # The server's view, through its HTTP API.
    sessions = e2e.get("/sessions")
    assert [s["id"] for s in sessions] == [session_id]
    session = e2e.get(f"/sessions/{session_id}")
    assert [a["id"] for a in session["annotations"]] == [buy["serverId"]]
    stored = session["annotations"][0]
    assert stored["comment"] == "Make the buy button bigger and green"
    assert stored["sessionId"] == session_id
    assert stored["status"] == "pending"
    assert stored["kind"] == "feedback"
    assert_echoed(sent, stored, skip=("comment",))

    requests = assert_all_api_calls_succeeded(driver)
    calls = {
        (r["method"], re.sub(r"/(sessions|annotations)/[^/]+", r"/\1/:id", urllib.parse.urlparse(r["url"]).path))
        for r in requests
    }
    assert {
        ("POST", "/sessions"),
        ("POST", "/sessions/:id/annotations"),
        ("PATCH", "/annotations/:id"),
        ("DELETE", "/annotations/:id"),
        ("GET", "/sessions/:id/events"),
    } <= calls

    # A reload rejoins the same session and shows what the server kept.
    reopened = driver("open", url=e2e.page_url)
    assert reopened["sessionId"] == session_id
    assert reopened["sessionCall"] == {"method": "GET", "path": f"/sessions/{session_id}", "status": 200}
    driver("activate")  # markers show only while the toolbar is open
    driver("wait-marker", serverId=buy["serverId"])
    markers = driver("markers")["markers"]
    assert [(m["id"], m["comment"]) for m in markers] == [(buy["serverId"], "Make the buy button bigger and green")]
    assert [s["id"] for s in e2e.get("/sessions")] == [session_id]
    assert_all_api_calls_succeeded(driver)


async def agent_resolves(e2e: E2E, session_id: str, annotation_id: str) -> dict[str, Any]:
    """An agent's MCP session: read the pending annotation, then resolve it."""
    with trio.fail_after(MCP_TIMEOUT):
        async with (
            stdio_client(mcp_server_params(e2e.kind, int(e2e.api.rsplit(":", 1)[1]), e2e.home)) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            pending = tool_json(await client.call_tool("agentation_get_pending", {"sessionId": session_id}))
            resolved = await client.call_tool(
                "agentation_resolve", {"annotationId": annotation_id, "summary": "Shortened the description"}
            )
            assert not resolved.is_error, tool_text(resolved)
            return {"pending": pending, "resolved": json.loads(tool_text(resolved))}


def test_an_annotation_resolved_by_an_agent_leaves_the_page(e2e: E2E) -> None:
    driver = e2e.driver
    session_id = driver("open", url=e2e.page_url)["sessionId"]
    note = driver("create", selector="p.product-description", comment="Shorten this description")
    annotation_id = note["serverId"]

    result = trio.run(agent_resolves, e2e, session_id, annotation_id)
    assert result["resolved"]["resolved"] is True
    assert result["resolved"]["annotationId"] == annotation_id
    pending = result["pending"]
    assert pending["count"] == 1
    [reported] = pending["annotations"]
    assert reported["id"] == annotation_id
    assert reported["comment"] == "Shorten this description"
    assert reported["element"] == note["sent"]["element"]
    assert reported["elementPath"] == note["sent"]["elementPath"]
    assert reported["sourceFile"] == note["sent"]["sourceFile"] == expected_source_file()

    # The server pushes `annotation.updated` over SSE; the toolbar drops the marker.
    gone = driver("wait-marker-gone", serverId=annotation_id, timeoutMs=RESOLVE_VISIBLE_WITHIN_MS)
    assert gone["elapsedMs"] < RESOLVE_VISIBLE_WITHIN_MS
    assert driver("markers")["count"] == 0
    [stored] = e2e.get(f"/sessions/{session_id}")["annotations"]
    assert stored["id"] == annotation_id
    assert stored["status"] == "resolved"
    assert_all_api_calls_succeeded(driver)
