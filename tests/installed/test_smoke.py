"""The installed command in a fresh virtual environment: help, version, doctor, a stdio session, HTTP, takeover."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from .processes import CHECKOUT, COMMAND, VENV, WAIT, Server, free_port, get_json, run, wheel_version

TOOLS = {
    "agentation_list_sessions",
    "agentation_get_session",
    "agentation_get_pending",
    "agentation_get_all_pending",
    "agentation_acknowledge",
    "agentation_resolve",
    "agentation_dismiss",
    "agentation_reply",
    "agentation_watch_annotations",
}


def test_the_package_is_imported_from_the_venv_not_the_checkout(tmp_path: Path) -> None:
    code = "import json, sys, agentation_mcp; print(json.dumps([agentation_mcp.__file__, sys.path]))"
    done = run([VENV / "bin" / "python", "-c", code], tmp_path / "home", tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    where, path = json.loads(done.stdout)
    assert Path(where).resolve().is_relative_to(VENV.resolve())
    assert not any(entry and Path(entry).resolve().is_relative_to(CHECKOUT) for entry in path), path
    assert COMMAND.read_text(encoding="utf-8").splitlines()[0] == f"#!{VENV / 'bin' / 'python'}"


def test_help(tmp_path: Path) -> None:
    done = run([COMMAND, "help"], tmp_path / "home", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"agentation-mcp {wheel_version()}: ")
    assert f"claude mcp add agentation -- {COMMAND} server" in done.stdout


def test_version_is_the_wheels(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        done = run([COMMAND, flag], tmp_path / "home", tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"agentation-mcp {wheel_version()}\n", "")


def test_doctor_json_under_a_fresh_home(tmp_path: Path) -> None:
    done = run([COMMAND, "doctor", "--json", "--port", str(free_port())], tmp_path / "home", tmp_path)
    report = json.loads(done.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["environment"]["status"] == "✓", checks["environment"]
    assert f"agentation-mcp {wheel_version()}" in checks["environment"]["detail"]
    assert checks["store"]["status"] == "!"  # no store yet: it is created when a server first starts
    assert checks["port"]["status"] == "✓"
    assert report["ok"] is True
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_live_page_is_served_from_the_installed_package(tmp_path: Path) -> None:
    port = free_port()
    server = Server(COMMAND, tmp_path / "home", tmp_path / "cwd", port)
    try:
        server.wait_for("[HTTP] Agentation server listening")
        with urllib.request.urlopen(f"{server.url}/", timeout=WAIT) as response:
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            html = response.read().decode("utf-8")
        assert f'&lt;Agentation endpoint="http://localhost:{port}" /&gt;' in html
        for path in ("/page.js", "/page.css"):
            with urllib.request.urlopen(f"{server.url}{path}", timeout=WAIT) as response:
                assert response.status == 200
                assert len(response.read()) > 1000
    finally:
        server.stop()


def test_a_stdio_session_beside_http(tmp_path: Path) -> None:
    server = Server(COMMAND, tmp_path / "home", tmp_path / "cwd", free_port())
    try:
        server.wait_for("[HTTP] Agentation server listening")
        assert get_json(f"{server.url}/health") == {"status": "ok", "mode": "local"}
        session = get_json(f"{server.url}/sessions", "POST", {"url": "http://localhost:3000/"})
        initialize = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "smoke", "version": "1"},
        }
        answer = server.answer({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
        assert answer["result"]["serverInfo"]["name"] == "agentation"
        server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = server.answer({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})["result"]["tools"]
        assert {tool["name"] for tool in tools} == TOOLS
        assert len(tools) == 9
        call = {"name": "agentation_list_sessions", "arguments": {}}
        result = server.answer({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})["result"]
        assert not result.get("isError"), result
        listed = json.loads(result["content"][0]["text"])
        assert [s["id"] for s in listed["sessions"]] == [session["id"]]
        assert server.stop() == 0
    finally:
        server.kill()
    assert (tmp_path / "home" / ".agentation" / "store.db").is_file()


def test_a_second_installed_server_takes_the_port_over(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    owner = Server(COMMAND, home, tmp_path / "a", port)
    waiting: Server | None = None
    try:
        owner.wait_for("[HTTP] Agentation server listening")
        waiting = Server(COMMAND, home, tmp_path / "b", port)
        waiting.wait_for("already in use")
        session = get_json(f"{owner.url}/sessions", "POST", {"url": "http://localhost:3000/"})
        assert owner.stop() == 0
        # The waiting server retries each second: it serves the port within a few seconds of the owner leaving.
        waiting.wait_for("[HTTP] Agentation server listening", timeout=5)
        assert get_json(f"{waiting.url}/health") == {"status": "ok", "mode": "local"}
        assert [s["id"] for s in get_json(f"{waiting.url}/sessions")] == [session["id"]]
        assert waiting.stop() == 0
    finally:
        owner.kill()
        if waiting is not None:
            waiting.kill()
