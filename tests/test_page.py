"""The live page at `/` over HTTP, from a real server process: its files, their headers, the gate.

What the page shows and how it updates is tested in real Chromium (tests/test_page_browser.py);
here: the bytes, the content types and the strict Content-Security-Policy, the server's own port in
the `<Agentation endpoint=...>` hint, and that the page passes the same Host, Origin and access-key
checks as every route while the toolbar's routes answer as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from agentation_mcp.web import page

from .conftest import ServerProcess

STATIC = Path(page.__file__).parent
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("home")).wait_listening()
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_the_page_is_html_with_a_strict_policy_and_the_servers_port(server: ServerProcess, http: httpx2.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    assert html.startswith("<!doctype html>")
    assert f'&lt;Agentation endpoint="http://localhost:{server.port}" /&gt;' in html
    assert "{{port}}" not in html
    # Everything it loads comes from this server: no CDN, no inline script or style.
    assert re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html) == ["/page.css", "/page.js"]
    assert "<script>" not in html
    assert "<style" not in html
    assert " style=" not in html
    assert "http://" not in html.replace(f"http://localhost:{server.port}", "")


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [("/page.js", "page.js", "text/javascript; charset=utf-8"), ("/page.css", "page.css", "text/css; charset=utf-8")],
)
def test_the_script_and_style_sheet_are_the_package_files(
    http: httpx2.Client, path: str, name: str, content_type: str
) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC / name).read_bytes()
    head = http.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(response.content))


def test_the_script_never_turns_stored_text_into_markup() -> None:
    script = (STATIC / "page.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    for url in re.findall(r"https?://[^\s\"'`)]+", script):
        pytest.fail(f"the script names an outside URL: {url}")


def test_a_foreign_host_or_cross_site_load_is_refused(http: httpx2.Client) -> None:
    for path in ("/", "/page.js", "/page.css"):
        for host in ("evil.com", "localhost.evil.com", "0.0.0.0:4747"):
            response = http.get(path, headers={"host": host})
            assert (response.status_code, response.json()) == (403, {"error": "Host not allowed"}), (path, host)
        response = http.get(path, headers={"origin": "https://evil.com"})
        assert (response.status_code, response.json()) == (403, {"error": "Origin not allowed"}), path
        response = http.get(path, headers={"sec-fetch-site": "cross-site"})
        assert (response.status_code, response.json()) == (403, {"error": "Origin not allowed"}), path
    for host in ("localhost:1", "127.0.0.1", "[::1]:80", "app.localhost"):
        assert http.get("/", headers={"host": host}).status_code == 200, host


def test_only_the_page_paths_are_added_and_other_methods_stay_refused(http: httpx2.Client) -> None:
    for method, path in [
        ("POST", "/"),
        ("DELETE", "/"),
        ("GET", "/index.html"),
        ("GET", "//"),
        ("GET", "//page.js"),
        ("GET", "/page.js/"),
        ("GET", "/static/page.js"),
        ("POST", "/page.js"),
    ]:
        response = http.request(method, http.base_url.copy_with(raw_path=path.encode()))
        assert (response.status_code, response.json()) == (404, {"error": "Not found"}), (method, path)
    assert http.get("/sessions").json() == []
    assert http.get("/health").json() == {"status": "ok", "mode": "local"}


def test_with_an_access_key_the_page_needs_it_too(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "home", env={"AGENTATION_ACCESS_KEY": "k3y"}).wait_listening()
    try:
        with httpx2.Client(base_url=proc.url, timeout=10) as http:
            refused = http.get("/")
            assert (refused.status_code, refused.json()) == (401, {"error": "A valid x-api-key header is required"})
            assert http.get("/", headers={"x-api-key": "k3y"}).status_code == 200
    finally:
        assert proc.stop() == 0
