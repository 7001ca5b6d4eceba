"""Webhooks and cloud mode through a real server process, against real local receivers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
import trio

from .conftest import ANNOTATION, ServerProcess
from .receivers import fake_cloud, receiver

pytestmark = pytest.mark.anyio


async def test_action_fires_webhooks_without_waiting_and_counts_valid_urls(tmp_path: Path) -> None:
    async with receiver() as hooks:
        env = {
            "AGENTATION_WEBHOOK_URL": hooks.url("/status/200"),
            "AGENTATION_WEBHOOKS": f"{hooks.url('/gate')}, ftp://not-http.example/, {hooks.url('/status/200')}",
        }
        proc = ServerProcess(tmp_path / "home", env=env)
        try:
            await trio.to_thread.run_sync(proc.wait_listening)
            with trio.fail_after(30):
                async with httpx2.AsyncClient(base_url=proc.url) as api:
                    assert (await api.get("/status")).json()["webhookCount"] == 2
                    session = (await api.post("/sessions", json={"url": "http://localhost:3000/"})).json()
                    annotation = (await api.post(f"/sessions/{session['id']}/annotations", json=ANNOTATION)).json()
                    response = await api.post(f"/sessions/{session['id']}/action", json={"output": "# fix these"})
                    # answered while the /gate receiver still holds its delivery
                    assert response.json()["delivered"] == {"sseListeners": 0, "webhooks": 2, "total": 2}
                    await hooks.wait_for(2)
                    hooks.gate.set()
        finally:
            proc.stop()
    for request in hooks.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Agentation-Webhook/1.0"
        payload = json.loads(request.body)
        assert payload["sessionId"] == session["id"]
        assert payload["annotations"] == [annotation]
        assert payload["output"] == "# fix these"
    ids = {r.headers["x-agentation-delivery-id"] for r in hooks.requests}
    assert len(ids) == 2
    assert any("[Webhook] Fired 2 webhook(s)" in line for line in proc.lines)


async def test_cloud_mode_proxies_everything_but_the_local_routes(tmp_path: Path) -> None:
    async with fake_cloud() as cloud:
        proc = ServerProcess(tmp_path / "home", "--api-key", "ag_test", env={"AGENTATION_CLOUD_URL": cloud.base_url})
        try:
            await trio.to_thread.run_sync(proc.wait_listening)
            with trio.fail_after(30):
                async with httpx2.AsyncClient(base_url=proc.url) as api:
                    assert (await api.get("/health")).json() == {"status": "ok", "mode": "cloud"}
                    assert (await api.get("/status")).json()["mode"] == "cloud"
                    assert (await api.options("/sessions")).status_code == 204
                    proxied = await api.post("/sessions?from=toolbar", json={"url": "http://localhost:3000/"})
                    failed = await api.get("/status/500")
        finally:
            proc.stop()
    assert any("(cloud mode)" in line for line in proc.lines)
    assert (proxied.status_code, proxied.json()) == (201, {"ok": True})
    assert proxied.headers["access-control-expose-headers"] == "Mcp-Session-Id"
    forwarded = cloud.requests[0]
    assert (forwarded.method, forwarded.target) == ("POST", "/api/sessions?from=toolbar")
    assert forwarded.headers["x-api-key"] == "ag_test"
    assert json.loads(forwarded.body) == {"url": "http://localhost:3000/"}
    assert (failed.status_code, failed.text) == (500, "upstream says no")
