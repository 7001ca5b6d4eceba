"""`doctor`'s presence checks: an agent connected or not, a toolbar page seen or not, a page origin refused or not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx2
import pytest
import trio

from agentation_mcp.cli.doctor import FAIL, OK, WARN, Check
from agentation_mcp.cli.presence_checks import presence_checks
from agentation_mcp.commands import AgentPresence, PagePresence, ProcessPresence, RecordPresence, RefusedOrigin
from agentation_mcp.models import now_iso
from agentation_mcp.store.presence import HOST

from .conftest import ServerProcess, commit_to_file, stream
from .test_cli_doctor import by_name, doctor

STORE = Path(".agentation") / "store.db"


def beat(
    home: Path, *, agents: int = 0, pages: int = 0, refused: tuple[RefusedOrigin, ...] = (), at: float = 0
) -> None:
    """Record a live process (this test's own pid) on the store under `home`, as a server's heartbeat does."""
    process = ProcessPresence("test-1", os.getpid(), HOST, "0.1.0", now_iso(), True, 4800, {})
    commit_to_file(
        home,
        RecordPresence(
            process,
            at or time.time(),
            tuple(
                AgentPresence(f"a{i}", "claude-code", "2.1.0", "stdio", now_iso(), None, True, None)
                for i in range(agents)
            ),
            tuple(PagePresence(f"p{i}", "s1", "http://localhost:3000/", now_iso()) for i in range(pages)),
            refused,
        ),
    )


def checks(home: Path, now: float | None = None) -> dict[str, Check]:
    return {check.name: check for check in presence_checks(home / STORE, 4747, now)}


def test_no_store_warns_of_no_agent_and_no_page_with_the_endpoint_hint(tmp_path: Path) -> None:
    found = checks(tmp_path)
    assert found["agents"].status == WARN
    assert "no MCP client is connected" in found["agents"].detail
    assert found["toolbar page"].status == WARN
    assert "no toolbar page has ever connected" in found["toolbar page"].detail
    assert found["toolbar page"].fix.endswith('<Agentation endpoint="http://localhost:4747" />')
    assert "page origin" not in found


def test_the_endpoint_hint_names_the_port_of_the_running_server(tmp_path: Path) -> None:
    beat(tmp_path, agents=1)
    assert checks(tmp_path)["toolbar page"].fix.endswith('<Agentation endpoint="http://localhost:4800" />')


def test_a_connected_agent_and_page_pass(tmp_path: Path) -> None:
    beat(tmp_path, agents=1, pages=1)
    found = checks(tmp_path)
    assert found["agents"].status == OK
    assert found["agents"].detail == f"1 connected: claude-code 2.1.0 (stdio, pid {os.getpid()}, watching)"
    assert (found["toolbar page"].status, found["toolbar page"].detail) == (OK, "connected now: http://localhost:3000/")


def test_a_page_seen_within_the_hour_passes_and_one_seen_earlier_warns(tmp_path: Path) -> None:
    beat(tmp_path, pages=1)
    commit_to_file(tmp_path, RecordPresence(_process(), time.time(), (), (), ()))  # the page left
    found = checks(tmp_path, time.time() + 600)
    assert found["toolbar page"].status == OK
    assert "the last was seen 10 min ago" in found["toolbar page"].detail
    later = checks(tmp_path, time.time() + 7200)
    assert later["toolbar page"].status == WARN
    assert "no toolbar page was seen in the last hour" in later["toolbar page"].detail
    assert later["toolbar page"].fix.endswith('<Agentation endpoint="http://localhost:4747" />')


def _process() -> ProcessPresence:
    return ProcessPresence("test-1", os.getpid(), HOST, "0.1.0", now_iso(), False, None, {})


def test_an_agent_of_a_process_that_died_does_not_count(tmp_path: Path) -> None:
    beat(tmp_path, agents=1, at=time.time() - 60)  # its last heartbeat a minute ago
    assert checks(tmp_path)["agents"].status == WARN


def test_a_recently_refused_origin_fails_naming_it_and_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTATION_CORS_ORIGINS", raising=False)
    refusal = RefusedOrigin("http://app.example:8080", "/sessions", now_iso(), 4)
    beat(tmp_path, refused=(refusal,))
    found = checks(tmp_path)["page origin"]
    assert found.status == FAIL
    assert "a page at http://app.example:8080 was refused by the server's CORS rules (4 requests" in found.detail
    assert found.fix.startswith("add it to the server's environment, AGENTATION_CORS_ORIGINS=http://app.example:8080")
    # An hour later it is old news.
    assert "page origin" not in checks(tmp_path, time.time() + 7200)


def test_a_refusal_by_a_stopped_server_counts_only_while_this_environment_would_refuse_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusal = RefusedOrigin("http://app.example:8080", "/sessions", now_iso(), 1)
    beat(tmp_path, refused=(refusal,), at=time.time() - 60)  # the server that refused it is gone
    monkeypatch.delenv("AGENTATION_CORS_ORIGINS", raising=False)
    assert checks(tmp_path)["page origin"].status == FAIL
    monkeypatch.setenv("AGENTATION_CORS_ORIGINS", "http://app.example:8080")
    assert "page origin" not in checks(tmp_path)


@pytest.mark.anyio
async def test_doctor_against_a_live_server_sees_its_page_and_refused_origin(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    server = ServerProcess(home)
    try:
        await trio.to_thread.run_sync(server.wait_listening)
        async with httpx2.AsyncClient(base_url=server.url) as http:
            session = (await http.post("/sessions", json={"url": "http://localhost:3000/"})).json()
            refused = await http.get("/sessions", headers={"Origin": "http://app.example:8080"})
            assert refused.status_code == 403
            async with stream(f"{server.url}/sessions/{session['id']}/events", {"Origin": "http://localhost:3000"}):
                with trio.fail_after(15):
                    while not (await http.get("/status")).json()["pages"]:  # noqa: ASYNC110 - another process
                        await trio.sleep(0.05)
                    while not (await http.get("/status")).json()["refusedOrigins"]:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                code, report = await trio.to_thread.run_sync(
                    lambda: doctor(home, project, "--port", str(server.port), with_claude=False)
                )
        found = by_name(report)
        assert code == 1  # the refused origin
        assert found["toolbar page"]["status"] == OK
        assert found["toolbar page"]["detail"] == "connected now: http://localhost:3000/"
        assert found["page origin"]["status"] == FAIL
        assert "http://app.example:8080" in found["page origin"]["detail"]
        assert found["agents"]["status"] == WARN  # the server's stdin is a pipe no MCP client speaks on
    finally:
        server.stop()
