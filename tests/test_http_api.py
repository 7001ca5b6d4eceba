"""The HTTP API over a real socket, against a real server process: routes, statuses, error texts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from .conftest import ANNOTATION, ServerProcess, mcp_client, tool_json

CORS = {
    "access-control-allow-methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "access-control-allow-headers": "Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID",
    "access-control-expose-headers": "Mcp-Session-Id",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx2.Client]:
    proc = ServerProcess(tmp_path_factory.mktemp("home"), env={"AGENTATION_MAX_BODY_BYTES": "65536"}).wait_listening()
    with httpx2.Client(base_url=proc.url, timeout=10) as client:
        yield client
    assert proc.stop() == 0


def new_session(api: httpx2.Client, url: str = "http://localhost:3000/") -> dict[str, Any]:
    response = api.post("/sessions", json={"url": url})
    assert response.status_code == 201
    session: dict[str, Any] = response.json()
    return session


def new_annotation(api: httpx2.Client, session_id: str, **fields: Any) -> dict[str, Any]:
    response = api.post(f"/sessions/{session_id}/annotations", json={**ANNOTATION, **fields})
    assert response.status_code == 201, response.text
    annotation: dict[str, Any] = response.json()
    return annotation


def test_health_and_status(api: httpx2.Client) -> None:
    response = api.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "mode": "local"})
    assert response.headers["content-type"] == "application/json"
    assert {k: response.headers[k] for k in CORS} == CORS
    head = api.head("/health")
    assert head.status_code == 200
    assert head.content == b""
    status = api.get("/status").json()
    assert {key: status[key] for key in list(status)[:5]} == {
        "mode": "local",
        "webhooksConfigured": False,
        "webhookCount": 0,
        "activeListeners": 0,
        "agentListeners": 0,
    }
    assert status["counts"] == {"sessions": 0, "pending": 0, "acknowledged": 0, "resolved": 0, "dismissed": 0}


def test_sessions(api: httpx2.Client) -> None:
    created = api.post("/sessions", json={"url": "http://localhost:5173/app", "projectId": "p1"})
    assert created.status_code == 201
    session = created.json()
    assert list(session) == ["id", "url", "status", "createdAt", "projectId"]
    assert api.get("/sessions").json()[0] == {**session, "updatedAt": None, "userId": None}
    detail = api.get(f"/sessions/{session['id']}").json()
    assert detail["annotations"] == []
    missing = api.get("/sessions/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Session not found"})
    assert api.post("/sessions", json={}).json() == {"error": "url is required"}
    assert api.post("/sessions", content=b"").json() == {"error": "url is required"}
    bad = api.post("/sessions", json={"url": 123})
    assert (bad.status_code, bad.json()) == (400, {"error": "url must be a string (got 123)."})
    text_plain = api.post("/sessions", content=b'{"url":"http://x/"}', headers={"content-type": "text/plain"})
    assert text_plain.status_code == 201


def test_annotations_lifecycle(api: httpx2.Client) -> None:
    sid = new_session(api)["id"]
    body = {**ANNOTATION, "id": "1795716989628", "status": "pending", "sessionId": sid, "elementBoundingBoxes": [1]}
    response = api.post(f"/sessions/{sid}/annotations", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["id"] != "1795716989628"
    assert created["elementBoundingBoxes"] == [1]
    assert api.get(f"/annotations/{created['id']}").json() == created
    assert api.get(f"/sessions/{sid}").json()["annotations"] == [created]
    pending = api.get(f"/sessions/{sid}/pending").json()
    assert pending == {"count": 1, "annotations": [created]}
    assert created in api.get("/pending").json()["annotations"]
    assert api.get("/sessions/nope/pending").json() == {"count": 0, "annotations": []}

    patched = api.patch(f"/annotations/{created['id']}", json={"comment": "bigger", "status": "resolved"})
    assert patched.status_code == 200
    assert patched.json()["comment"] == "bigger"
    assert patched.json()["resolvedAt"] is not None

    thread = api.post(f"/annotations/{created['id']}/thread", json={"role": "human", "content": "thanks"})
    assert thread.status_code == 201
    assert thread.json()["thread"][0]["content"] == "thanks"
    assert api.post(f"/annotations/{created['id']}/thread", json={"role": "human"}).json() == {
        "error": "role and content are required"
    }
    gone = api.delete(f"/annotations/{created['id']}")
    assert (gone.status_code, gone.json()) == (200, {"deleted": True, "annotationId": created["id"]})
    again = api.delete(f"/annotations/{created['id']}")
    assert (again.status_code, again.json()) == (404, {"error": "Annotation not found"})
    for method, path in [("GET", "/annotations/x"), ("PATCH", "/annotations/x"), ("POST", "/annotations/x/thread")]:
        body = {"role": "human", "content": "c"} if "thread" in path else {}
        response = api.request(method, path, json=body)
        assert (response.status_code, response.json()) == (404, {"error": "Annotation not found"}), path


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"x": "left"}, "x must be a number (got 'left')."),
        ({"kind": "weird"}, "kind must be one of: feedback, placement, rearrange (got 'weird')."),
        ({"selectedText": {"a": 1}}, "selectedText must be a string (got an object)."),
        ({"comment": None}, "comment is required"),
    ],
)
def test_invalid_annotations_get_400_naming_the_field(api: httpx2.Client, fields: dict[str, Any], error: str) -> None:
    sid = new_session(api)["id"]
    response = api.post(f"/sessions/{sid}/annotations", json={**ANNOTATION, **fields})
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert api.get(f"/sessions/{sid}").json()["annotations"] == []


def test_bad_bodies(api: httpx2.Client) -> None:
    sid = new_session(api)["id"]
    annotation = new_annotation(api, sid)
    bad_json = api.post("/sessions", content=b"{bad")
    assert (bad_json.status_code, bad_json.json()) == (400, {"error": "Invalid JSON"})
    assert api.patch(f"/annotations/{annotation['id']}", content=b"[1]").json() == {
        "error": "The request body must be a JSON object."
    }
    assert api.patch(f"/annotations/{annotation['id']}", json={"status": "bogus"}).status_code == 400
    # In a key, the field's name itself cannot be sent back as it is: it is named by its escape.
    keyed = api.post("/sessions", content=json.dumps({"url": "http://localhost:3000/", "x\ud800y": 1}).encode())
    assert (keyed.status_code, keyed.json()) == (
        400,
        {"error": "x\\ud800y must be valid Unicode text; it holds a lone surrogate such as \\ud800."},
    )
    assert api.get(f"/annotations/{annotation['id']}").json() == annotation
    too_big = api.post(f"/sessions/{sid}/annotations", json={**ANNOTATION, "comment": "x" * 70_000})
    assert too_big.status_code == 413
    assert too_big.json() == {"error": "Request body too large: the limit is 65536 bytes."}
    missing = api.post("/sessions/nope/annotations", json=ANNOTATION)
    assert (missing.status_code, missing.json()) == (404, {"error": "Session not found"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health/"),
        ("GET", "/sessions/"),
        ("GET", "//sessions"),
        ("POST", "/health"),
        ("PUT", "/sessions"),
        ("DELETE", "/sessions/x"),
        ("GET", "/sessions/a/b"),
        ("GET", "/mcp/"),
        ("HEAD", "/sessions"),
    ],
)
def test_unknown_routes_are_404(api: httpx2.Client, method: str, path: str) -> None:
    # The path exactly as written: httpx2 would send `//sessions` as `/`.
    response = api.request(method, api.base_url.copy_with(raw_path=path.encode()))
    assert response.status_code == 404
    if method != "HEAD":
        assert response.json() == {"error": "Not found"}


def test_query_strings_are_ignored_by_the_router(api: httpx2.Client) -> None:
    assert api.get("/sessions?x=1").status_code == 200


def test_action_checks_session_then_output(api: httpx2.Client) -> None:
    missing = api.post("/sessions/nope/action", json={})
    assert (missing.status_code, missing.json()) == (404, {"error": "Session not found"})
    sid = new_session(api)["id"]
    new_annotation(api, sid)
    assert api.post(f"/sessions/{sid}/action", json={}).json() == {"error": "output is required"}
    response = api.post(f"/sessions/{sid}/action", json={"output": {"markdown": "# notes"}})
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "annotationCount": 1,
        "delivered": {"sseListeners": 0, "webhooks": 0, "total": 0},
    }


def test_cors_and_host_policy(api: httpx2.Client) -> None:
    for origin in ("http://localhost:3000", "http://app.localhost", "http://127.0.0.5:1", "http://[::1]:5"):
        response = api.get("/sessions", headers={"origin": origin})
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["vary"] == "Origin"
    for origin in ("http://10.1.2.3", "http://192.168.0.9", "https://evil.com", "null", "file://", "http://my.local"):
        response = api.get("/sessions", headers={"origin": origin})
        assert (response.status_code, response.json()) == (403, {"error": "Origin not allowed"}), origin
        assert "access-control-allow-origin" not in response.headers
    preflight = api.options("/annotations/x", headers={"origin": "http://localhost:3000"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-max-age"] == "86400"
    assert api.options("/sessions", headers={"origin": "https://evil.com"}).status_code == 403
    for host in ("evil.com", "localhost.evil.com", "0.0.0.0:4747"):
        for path in ("/sessions", "/mcp", "/events"):
            response = api.get(path, headers={"host": host})
            assert (response.status_code, response.json()) == (403, {"error": "Host not allowed"}), (host, path)
    for host in ("LOCALHOST:1", "app.localhost:5", "127.9.9.9", "[::1]:80"):
        assert api.get("/health", headers={"host": host}).status_code == 200, host


def test_cross_site_browser_requests_without_origin_are_refused(api: httpx2.Client) -> None:
    """A page on another site can load a URL (an `<img>`, a `<script>`, a plain GET) with no Origin header."""
    sid = new_session(api)["id"]
    cross = {"sec-fetch-site": "cross-site"}
    for path in ("/sessions", f"/sessions/{sid}", "/pending", f"/sessions/{sid}/pending", "/status"):
        response = api.get(path, headers=cross)
        assert (response.status_code, response.json()) == (403, {"error": "Origin not allowed"}), path
    with api.stream("GET", "/events", headers=cross) as events:
        assert events.status_code == 403
    assert api.post("/sessions", json={"url": "http://x/"}, headers=cross).status_code == 403
    assert api.get("/health", headers=cross).status_code == 200
    for site in ("same-origin", "same-site", "none"):
        assert api.get("/sessions", headers={"sec-fetch-site": site}).status_code == 200, site
    # A page on an allowed origin says so, and is let in whatever the browser calls the site.
    allowed = api.get("/sessions", headers={**cross, "origin": "http://localhost:3000"})
    assert allowed.status_code == 200


def test_json_nested_thousands_deep_is_invalid_json_not_a_crash(api: httpx2.Client) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    sid = new_session(api)["id"]
    for path in ("/sessions", f"/sessions/{sid}/annotations"):
        response = api.post(path, content=deep[:60_000])
        assert (response.status_code, response.json()) == (400, {"error": "Invalid JSON"}), path
    mcp = api.post(
        "/mcp",
        content=b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
    )
    assert (mcp.status_code, mcp.json()["error"]["code"]) == (400, -32700)
    assert api.get("/health").status_code == 200


def _server(tmp_path: Path, *args: str, **env: str) -> ServerProcess:
    return ServerProcess(tmp_path / "home", *args, env=env)


def test_cors_origins_setting_adds_origins(tmp_path: Path) -> None:
    proc = _server(tmp_path, AGENTATION_CORS_ORIGINS="https://app.example.com, http://10.0.0.2:8080/").wait_listening()
    try:
        with httpx2.Client(base_url=proc.url) as client:
            for origin in ("https://app.example.com", "http://10.0.0.2:8080", "http://localhost:3000"):
                assert client.get("/health", headers={"origin": origin}).status_code == 200, origin
            assert client.get("/health", headers={"origin": "https://other.example.com"}).status_code == 403
    finally:
        proc.stop()


def test_cors_star_opens_every_origin(tmp_path: Path) -> None:
    proc = _server(tmp_path, AGENTATION_CORS_ORIGINS="*").wait_listening()
    try:
        with httpx2.Client(base_url=proc.url) as client:
            response = client.get("/health", headers={"origin": "https://anything.example"})
            assert response.headers["access-control-allow-origin"] == "*"
            assert "vary" not in response.headers
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"AGENTATION_CORS_ORIGINS": "http://a.example, /regex/"}, "AGENTATION_CORS_ORIGINS must be"),
        ((), {"AGENTATION_CORS_ORIGINS": "*, http://a.example"}, "AGENTATION_CORS_ORIGINS must be"),
        (("--host", "0.0.0.0"), {}, "AGENTATION_ACCESS_KEY"),
    ],
)
def test_unsafe_or_invalid_settings_stop_start_up(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    proc = _server(tmp_path, *args, **env)
    assert proc.stop(20) == 2
    assert message in "".join(proc.lines)
    assert not (tmp_path / "home" / ".agentation").exists()


def test_a_remote_bind_requires_the_access_key(tmp_path: Path) -> None:
    proc = _server(tmp_path, "--host", "0.0.0.0", AGENTATION_ACCESS_KEY="s3cret").wait_listening()
    try:
        assert any("(remote access enabled)" in line for line in proc.lines)
        with httpx2.Client(base_url=proc.url) as client:
            assert client.get("/health").status_code == 200
            refused = client.get("/sessions")
            assert (refused.status_code, refused.json()) == (401, {"error": "A valid x-api-key header is required"})
            assert client.get("/sessions", headers={"x-api-key": "wrong"}).status_code == 401
            assert client.get("/sessions", headers={"x-api-key": "s3cret"}).status_code == 200
            assert client.post("/mcp", json={}, headers={"x-api-key": "nope"}).status_code == 401
    finally:
        proc.stop()


def test_mcp_invalid_json_is_a_parse_error(api: httpx2.Client) -> None:
    response = api.post(
        "/mcp",
        content=b"{bad",
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700
    assert response.json()["id"] is None


def test_numbers_are_read_and_written_as_javascript_does(api: httpx2.Client) -> None:
    sid = new_session(api)["id"]
    raw = (
        b'{"comment":"c","element":"div","elementPath":"p","x":5.0,"y":2.5,"timestamp":1.7e12,'
        b'"boundingBox":{"x":1.0,"y":0.25,"width":3e0,"height":4},"extraNumber":2.0}'
    )
    response = api.post(f"/sessions/{sid}/annotations", content=raw)
    assert response.status_code == 201
    for text in (response.text, api.get(f"/sessions/{sid}").text):
        assert '"x":5,"y":2.5' in text
        assert '"timestamp":1700000000000,' in text
        assert '"boundingBox":{"x":1,"y":0.25,"width":3,"height":4}' in text
        assert '"extraNumber":2' in text


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
async def test_an_address_that_cannot_be_bound_is_one_log_line_and_mcp_keeps_serving(tmp_path: Path, host: str) -> None:
    """192.0.2.1 (a documentation address) is on no machine; `.invalid` never resolves."""
    with trio.fail_after(30):
        async with mcp_client(tmp_path / "home", "--host", host, AGENTATION_ACCESS_KEY="k" * 32) as session:
            tools = await session.list_tools()
            assert len(tools.tools) == 9
            sessions = tool_json(await session.call_tool("agentation_list_sessions", {}))
            assert sessions == {"sessions": []}


def test_a_failed_bind_is_logged_once_and_retried(tmp_path: Path) -> None:
    proc = _server(tmp_path, "--host", "192.0.2.1", AGENTATION_ACCESS_KEY="k" * 32)
    try:
        deadline = time.monotonic() + 20
        while not any("Cannot serve HTTP" in line for line in proc.lines) and time.monotonic() < deadline:
            assert proc.proc.poll() is None, "".join(proc.lines)
            proc.exited.wait(0.1)
        failures = [line for line in proc.lines if "Cannot serve HTTP" in line]
        assert len(failures) == 1, "".join(proc.lines)
        assert "192.0.2.1" in failures[0]
        assert "Traceback" not in "".join(proc.lines)
        assert proc.proc.poll() is None
    finally:
        assert proc.stop() == 0


def test_text_with_a_lone_surrogate_is_refused_naming_the_field(api: httpx2.Client) -> None:
    sid = new_session(api)["id"]
    annotation = new_annotation(api, sid)
    body = json.dumps({**ANNOTATION, "comment": "fix \ud800 this"}).encode()
    assert b"\\ud800" in body
    created = api.post(f"/sessions/{sid}/annotations", content=body)
    assert (created.status_code, created.json()) == (
        400,
        {"error": "comment must be valid Unicode text; it holds a lone surrogate such as \\ud800."},
    )
    nested = json.dumps({"attributes": {"labels": ["ok", "\udfff"]}}).encode()
    patched = api.patch(f"/annotations/{annotation['id']}", content=nested)
    assert patched.status_code == 400
    assert patched.json()["error"].startswith("attributes.labels[1] must be valid Unicode text")
    reply = api.post(
        f"/annotations/{annotation['id']}/thread", content=json.dumps({"role": "human", "content": "\ud83d"}).encode()
    )
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("content must be valid Unicode text")
    assert api.get(f"/annotations/{annotation['id']}").json() == annotation
    assert [a["id"] for a in api.get(f"/sessions/{sid}").json()["annotations"]] == [annotation["id"]]
    # A surrogate pair is a character like any other.
    emoji = api.post(f"/sessions/{sid}/annotations", content=json.dumps({**ANNOTATION, "comment": "ok 😀"}).encode())
    assert (emoji.status_code, emoji.json()["comment"]) == (201, "ok 😀")
