"""The live page at `/` in real Chromium, against real server processes on one store.

One server process serves the page and the HTTP API; the page is opened once and never reloaded,
so everything it shows after that came over its event streams. Agents are real `agentation-mcp
server` processes on the same store, spoken to in raw JSON-RPC over their stdio. Every wait is on
a DOM condition, with a bound (tests/browser/driver.mjs `wait-dom`).

Needs /usr/bin/chromium and tests/browser/node_modules (scripts/install-browser-deps); the tests
skip without them, and fail in CI.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest

from .conftest import ANNOTATION, ServerProcess, server_env
from .test_browser import Driver, log_tail, require_browser_deps, stop_process

APPEARS_WITHIN_MS = 1000  # what the issue asks of a new annotation
CHANGE_WITHIN_MS = 5000  # a status change, an agent's presence
GONE_WITHIN_MS = 15000  # an agent's process exits within 2 s of its stdin closing; presence follows
RECONNECT_WITHIN_MS = 15000
REPLY_TIMEOUT = 30.0


@dataclass
class LivePage:
    server: ServerProcess
    driver: Driver
    http: httpx2.Client
    home: Path
    logs: Path

    def new_session(self, url: str) -> str:
        response = self.http.post("/sessions", json={"url": url})
        assert response.status_code == 201, response.text
        session_id: str = response.json()["id"]
        return session_id

    def new_annotation(self, session_id: str, comment: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post(
            f"/sessions/{session_id}/annotations", json={**ANNOTATION, "comment": comment, **fields}
        )
        assert response.status_code == 201, response.text
        annotation: dict[str, Any] = response.json()
        return annotation

    def card(self, annotation_id: str) -> str:
        return f'li.card[data-annotation-id="{annotation_id}"]'

    def wait(self, selector: str, timeout_ms: int = CHANGE_WITHIN_MS, **condition: Any) -> int:
        elapsed: int = self.driver("wait-dom", selector=selector, timeoutMs=timeout_ms, **condition)["elapsedMs"]
        return elapsed

    def query(self, selector: str) -> list[dict[str, Any]]:
        matches: list[dict[str, Any]] = self.driver("query", selector=selector)["matches"]
        return matches


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePage]:
    require_browser_deps()
    logs = tmp_path_factory.mktemp("page")
    home = logs / "home"
    server = ServerProcess(home).wait_listening()
    driver = Driver(server.url, logs / "driver.log")
    page = LivePage(server, driver, httpx2.Client(base_url=server.url, timeout=10), home, logs)
    try:
        driver.wait_ready()
        driver("visit", url=f"http://localhost:{server.port}/")
        page.wait("#connection", attr="data-state", value="live")
        yield page
        driver.screenshot_quietly(logs / "last.png")
    finally:
        driver.close()
        page.http.close()
        for proc in {server, page.server}:  # the restart test replaces the server
            if proc.proc.poll() is None:
                proc.stop()


def test_a_store_no_toolbar_ever_reached_shows_the_endpoint_line_with_the_real_port(tmp_path: Path) -> None:
    require_browser_deps()
    server = ServerProcess(tmp_path / "home").wait_listening()
    driver = Driver(server.url, tmp_path / "driver.log")
    try:
        driver.wait_ready()
        driver("visit", url=f"http://localhost:{server.port}/")
        driver("wait-dom", selector="#connection", attr="data-state", value="live")
        driver("wait-dom", selector="#empty:not([hidden])")
        [line] = driver("query", selector="#endpoint-line")["matches"]
        assert line["text"] == f'<Agentation endpoint="http://localhost:{server.port}" />'
        checks = " ".join(m["text"] for m in driver("query", selector="#empty li")["matches"])
        for needed in ("endpoint", "AGENTATION_CORS_ORIGINS", str(server.port), "/health"):
            assert needed in checks, needed
        # The first toolbar session takes the empty state away, without a reload.
        with httpx2.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/status").json()["pages"] == []  # the live page is no toolbar
            assert http.post("/sessions", json={"url": "http://localhost:3000/"}).status_code == 201
        driver("wait-dom", selector="#empty[hidden]")
        driver("wait-dom", selector="#session-rows a", text="http://localhost:3000/")
    finally:
        driver.close()
        server.stop()


def test_an_annotation_posted_over_http_appears_within_a_second(live: LivePage) -> None:
    session_id = live.new_session("http://localhost:3000/checkout")
    annotation = live.new_annotation(session_id, "Make the buy button bigger", intent="fix", severity="important")
    live.wait(live.card(annotation["id"]), APPEARS_WITHIN_MS, attr="data-status", value="pending")
    [card] = live.query(f"#list-pending {live.card(annotation['id'])}")
    assert "Make the buy button bigger" in card["text"]
    assert "http://localhost:3000/checkout" in card["text"]
    live.wait(f'#session-rows tr[data-session-id="{session_id}"] td[data-count="pending"]', text="1")


def test_stored_text_is_shown_as_text_never_as_markup(live: LivePage) -> None:
    session_id = live.new_session("http://localhost:3000/<b>bold</b>")
    hostile = '<img src=x onerror="document.title=\'owned\'"><script>document.title="owned"</script>'
    annotation = live.new_annotation(session_id, hostile, element="<i>button</i>")
    reply = live.http.post(f"/annotations/{annotation['id']}/thread", json={"role": "agent", "content": "<b>done</b>"})
    assert reply.status_code == 201
    card = live.card(annotation["id"])
    live.wait(f"{card} .thread .content", text="<b>done</b>")
    [comment] = live.query(f"{card} .comment")
    assert comment["text"] == hostile
    assert live.query(f"{card} .element")[0]["text"] == "<i>button</i>"
    for tag in ("img", "script", "b", "i"):
        assert live.query(f"#annotations {tag}, #sessions {tag}") == [], tag
    assert live.driver("query", selector="title")["matches"][0]["text"] != "owned"


def test_an_agent_resolving_through_a_tool_moves_the_annotation_as_it_happens(live: LivePage) -> None:
    session_id = live.new_session("http://localhost:3000/product")
    annotation = live.new_annotation(session_id, "Shorten this description")
    card = live.card(annotation["id"])
    live.wait(card, APPEARS_WITHIN_MS, attr="data-status", value="pending")
    with RawAgent(live.home, live.server.port, "page-test-resolver", live.logs / "resolver.log") as agent:
        agent.initialize()
        agent.call("agentation_acknowledge", {"annotationId": annotation["id"]})
        live.wait(f"#list-acknowledged {card}", attr="data-status", value="acknowledged")
        agent.call("agentation_resolve", {"annotationId": annotation["id"], "summary": "Cut it to two sentences"})
        live.wait(f"#list-resolved {card}", attr="data-status", value="resolved")
    assert live.query(f"#list-acknowledged {card}") == []
    # The agent's summary is in the thread, which the toolbar never shows, and the change is told.
    live.wait(f'{card} .thread [data-role="agent"] .content', text="Cut it to two sentences")
    live.wait("#activity-list li", text="acknowledged → resolved")
    live.wait(f'#session-rows tr[data-session-id="{session_id}"] td[data-count="resolved"]', text="1")


def test_an_agent_shows_as_connected_then_watching_then_gone(live: LivePage) -> None:
    name = "page-test-agent"
    agent_item = f'li.agent[data-agent="{name}"]'
    with RawAgent(live.home, live.server.port, name, live.logs / "agent.log", version="9.8.7") as agent:
        agent.initialize()
        live.wait(agent_item, attr="data-watching", value="false")
        [item] = live.query(agent_item)
        assert "9.8.7" in item["text"]
        assert "stdio" in item["text"]

        session_id = live.new_session("http://localhost:3000/watched")
        # On a page of its own: pending annotations elsewhere would end the watch at once.
        watch = agent.start_call(
            "agentation_watch_annotations", {"sessionId": session_id, "timeoutSeconds": 60, "batchWindowSeconds": 1}
        )
        live.wait(agent_item, attr="data-watching", value="true")
        [item] = live.query(agent_item)
        assert "watching now" in item["text"]
        assert "watching http://localhost:3000/watched" in item["text"]

        # What ends the wait: an annotation; the agent goes back to connected.
        annotation = live.new_annotation(session_id, "Watched and found")
        result = agent.result(watch)
        assert [a["id"] for a in json.loads(result["content"][0]["text"])["annotations"]] == [annotation["id"]]
        live.wait(agent_item, attr="data-watching", value="false")

        agent.close_stdin()
        assert agent.wait_exit() == 0
    live.wait(agent_item, GONE_WITHIN_MS, gone=True)


def test_a_page_with_the_toolbar_open_is_marked_until_it_closes(live: LivePage) -> None:
    session_id = live.new_session("http://localhost:3000/toolbar-open")
    row = f'#session-rows tr[data-session-id="{session_id}"]'
    live.wait(row)
    assert live.query(f"{row} .toolbar-badge") == []
    # What the toolbar opens on its page: the session's event stream, from its own origin.
    headers = {"origin": "http://localhost:3000", "referer": "http://localhost:3000/toolbar-open"}
    with live.http.stream("GET", f"/sessions/{session_id}/events", headers=headers) as events:
        assert events.status_code == 200
        live.wait(f"{row} .toolbar-badge", text="toolbar open")
    live.wait(f"{row} .toolbar-badge", gone=True)


def test_a_refused_page_origin_is_named_with_the_setting_to_change(live: LivePage) -> None:
    origin = "http://192.168.1.7:3000"
    refused = live.http.get("/sessions", headers={"origin": origin})
    assert refused.status_code == 403
    live.wait(f'#refused li[data-origin="{origin}"]', text=origin)
    [panel] = live.query("#refused")
    assert "AGENTATION_CORS_ORIGINS" in panel["text"]


def test_the_page_reconnects_after_the_server_restarts(live: LivePage) -> None:
    waiting = live.new_annotation(
        live.new_session("http://localhost:3000/before-restart"), "Resolved while it was down"
    )
    live.wait(live.card(waiting["id"]), attr="data-status", value="pending")
    port = live.server.port
    assert live.server.stop() == 0
    live.wait("#connection", RECONNECT_WITHIN_MS, attr="data-state", value="reconnecting")
    # Meanwhile the command line resolves it in the store, with no server running.
    done = subprocess.run(
        [sys.executable, "-m", "agentation_mcp", "resolve", waiting["id"], "--summary", "Fixed offline"],
        env=server_env(live.home),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    live.server = ServerProcess(live.home, port=port).wait_listening()
    live.wait("#connection", RECONNECT_WITHIN_MS, attr="data-state", value="live")
    live.wait(f"#list-resolved {live.card(waiting['id'])}", attr="data-status", value="resolved")
    live.wait("#activity-list li", text="“Resolved while it was down”: pending → resolved")
    session_id = live.new_session("http://localhost:3000/after-restart")
    annotation = live.new_annotation(session_id, "Seen after the restart")
    live.wait(live.card(annotation["id"]), CHANGE_WITHIN_MS, attr="data-status", value="pending")
    assert not [line for line in live.driver("console")["lines"] if "pageerror" in line]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_reads_well_in_light_and_dark_mode(live: LivePage, scheme: str) -> None:
    live.driver("color-scheme", scheme=scheme)
    try:
        selectors = "h1, h2, .server, .comment, .card-head, .badge, .content, .who, .hint, td, thead th, summary"
        results = live.driver("contrast", selector=selectors)["results"]
        assert len(results) > 10
        poor = [r for r in results if r["ratio"] < 4.5]
        assert not poor, f"{scheme}: text under the WCAG AA contrast of 4.5: {poor}"
        background = live.driver("contrast", selector="body")["results"][0]
        assert background["ratio"] >= 7, background
    finally:
        live.driver("color-scheme", scheme="light")


def test_the_page_is_usable_from_the_keyboard(live: LivePage) -> None:
    elsewhere = live.new_annotation(live.new_session("http://localhost:3000/elsewhere"), "On another page")
    session_id = live.new_session("http://localhost:3000/keyboard")
    annotation = live.new_annotation(session_id, "Reachable by keyboard")
    live.wait(live.card(annotation["id"]))
    live.wait(live.card(elsewhere["id"]))
    focused = tab_to(live, f"show:{session_id}")
    assert focused["outlineWidth"] >= 2, focused
    assert focused["outlineStyle"] != "none", focused
    # Enter shows that page's annotations alone and moves to them.
    live.driver("press", key="Enter")
    live.wait(live.card(elsewhere["id"]), gone=True)
    shown = {m["data"]["annotationId"] for m in live.query("#annotations li.card")}
    assert shown == {annotation["id"]}
    assert live.driver("focused")["focused"]["tag"] == "section"
    # The next stop is the page filter; Home picks "All pages" again.
    live.driver("press", key="Tab")
    assert live.driver("focused")["focused"]["tag"] == "select"
    live.driver("press", key="Home")
    live.wait(live.card(elsewhere["id"]))


def test_an_update_keeps_open_details_open_and_the_focus_where_it_was(live: LivePage) -> None:
    annotation = live.new_annotation(live.new_session("http://localhost:3000/details"), "Open my details")
    card = live.card(annotation["id"])
    live.wait(card)
    tab_to(live, f"more:{annotation['id']}")
    live.driver("press", key="Enter")
    live.wait(f"{card} details.more[open]")
    # The agent replies: the card is built again, with its details still open and still focused.
    reply = live.http.post(f"/annotations/{annotation['id']}/thread", json={"role": "agent", "content": "On it"})
    assert reply.status_code == 201
    live.wait(f"{card} .thread .content", text="On it")
    assert live.query(f"{card} details.more[open]") != []
    assert live.driver("focused")["focused"]["focus"] == f"more:{annotation['id']}"


def tab_to(live: LivePage, focus: str) -> dict[str, Any]:
    """Press Tab until the control whose `data-focus` is `focus` has the focus; its description."""
    for _ in range(300):
        live.driver("press", key="Tab")
        focused: dict[str, Any] | None = live.driver("focused")["focused"]
        if focused is not None and focused["focus"] == focus:
            return focused
    pytest.fail(f"Tab never reached {focus}")


class RawAgent:
    """An MCP client speaking JSON-RPC lines to a real `agentation-mcp server` process's stdio.

    The process serves the same store as the page's server (the same HOME) and cannot bind the
    port, so it serves MCP only, as a second Claude Code window's server does.
    """

    def __init__(self, home: Path, port: int, name: str, log: Path, version: str = "1.0.0") -> None:
        self.name, self.version, self.log = name, version, log
        self._next_id = 0
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._replies: dict[int, dict[str, Any]] = {}
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentation_mcp", "server", "--port", str(port)],
                env=server_env(home),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def __enter__(self) -> RawAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        self._reader.join(timeout=5)

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with stream:
            for line in stream:
                self._messages.put(json.loads(line))
        self._messages.put(None)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def start(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    def reply(self, request_id: int) -> dict[str, Any]:
        while request_id not in self._replies:
            try:
                message = self._messages.get(timeout=REPLY_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"{self.name}: no reply to request {request_id} in {REPLY_TIMEOUT} s\n{log_tail(self.log)}")
            if message is None:
                pytest.fail(f"{self.name}: the server exited ({self.proc.poll()})\n{log_tail(self.log)}")
            if "id" in message and "method" not in message:
                self._replies[message["id"]] = message
        return self._replies.pop(request_id)

    def initialize(self) -> dict[str, Any]:
        answer = self.reply(
            self.start(
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": self.name, "version": self.version},
                },
            )
        )
        assert answer["result"]["serverInfo"]["name"] == "agentation", answer
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        result: dict[str, Any] = answer["result"]
        return result

    def start_call(self, tool: str, arguments: dict[str, Any]) -> int:
        return self.start("tools/call", {"name": tool, "arguments": arguments})

    def result(self, request_id: int) -> dict[str, Any]:
        answer = self.reply(request_id)
        assert "result" in answer, answer
        assert not answer["result"].get("isError"), answer
        result: dict[str, Any] = answer["result"]
        return result

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.result(self.start_call(tool, arguments))

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_exit(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)
