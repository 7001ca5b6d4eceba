"""Webhook back-off, Retry-After and per-attempt timeouts, exactly, on trio's virtual clock.

The HTTP exchanges go through httpx2's in-memory transport, so no socket is
open while the virtual clock jumps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from itertools import pairwise
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from agentation_mcp.config import WebhookSettings
from agentation_mcp.web.webhooks import deliver

pytestmark = pytest.mark.anyio

BODY = b'{"sessionId":"s1","annotations":[],"output":"# out","timestamp":"2026-01-01T00:00:00.000Z"}'


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


def recording_transport(answer: Callable[[int], httpx2.Response], times: list[float]) -> httpx2.MockTransport:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        times.append(trio.current_time())
        return answer(len(times))

    return httpx2.MockTransport(handle)


async def test_backoff_schedule_is_exact() -> None:
    times: list[float] = []
    draws = iter([0.0, 0.5, 1.0])
    transport = recording_transport(lambda _: httpx2.Response(500), times)
    settings = WebhookSettings(max_retries=3, base_delay_ms=1000, max_delay_ms=30_000)
    async with httpx2.AsyncClient(transport=transport) as client:
        start = trio.current_time()
        result = await deliver(client, "http://hook.test/", BODY, settings, random=lambda: next(draws))
    assert result.attempts == 4
    # waits of 1000, floor(2000·1.125) = 2250 and floor(4000·1.25) = 5000 ms
    assert [round(t - start, 6) for t in times] == [0, 1.0, 3.25, 8.25]


async def test_backoff_is_capped_by_the_maximum_delay() -> None:
    times: list[float] = []
    transport = recording_transport(lambda _: httpx2.Response(503), times)
    settings = WebhookSettings(max_retries=3, base_delay_ms=1000, max_delay_ms=1500)
    async with httpx2.AsyncClient(transport=transport) as client:
        start = trio.current_time()
        await deliver(client, "http://hook.test/", BODY, settings, random=lambda: 0.0)
    assert [round(t - start, 6) for t in times] == [0, 1.0, 2.5, 4.0]


@pytest.mark.parametrize(("retry_after", "waits"), [("7", [7.0, 7.0]), ("1", [1.0, 2.0]), ("30", [30.0, 30.0])])
async def test_retry_after_lengthens_the_wait_but_never_shortens_it(retry_after: str, waits: list[float]) -> None:
    times: list[float] = []
    transport = recording_transport(lambda _: httpx2.Response(429, headers={"Retry-After": retry_after}), times)
    settings = WebhookSettings(max_retries=2, base_delay_ms=1000, max_delay_ms=30_000)
    async with httpx2.AsyncClient(transport=transport) as client:
        start = trio.current_time()
        result = await deliver(client, "http://hook.test/", BODY, settings, random=lambda: 0.0)
    assert result.attempts == 3
    offsets = [round(t - start, 6) for t in times]
    assert [b - a for a, b in pairwise(offsets)] == waits


async def test_retry_after_just_over_the_maximum_delay_stops() -> None:
    times: list[float] = []
    transport = recording_transport(lambda _: httpx2.Response(429, headers={"Retry-After": "31"}), times)
    async with httpx2.AsyncClient(transport=transport) as client:
        result = await deliver(client, "http://hook.test/", BODY, WebhookSettings(max_delay_ms=30_000))
    assert (result.attempts, result.status) == (1, 429)


async def test_retry_after_as_an_http_date() -> None:
    times: list[float] = []
    when = formatdate(time.time() + 20, usegmt=True)
    transport = recording_transport(
        lambda n: httpx2.Response(503, headers={"Retry-After": when}) if n == 1 else httpx2.Response(200), times
    )
    settings = WebhookSettings(max_retries=1, base_delay_ms=1, max_delay_ms=30_000)
    async with httpx2.AsyncClient(transport=transport) as client:
        result = await deliver(client, "http://hook.test/", BODY, settings)
    assert (result.attempts, result.delivered) == (2, True)
    assert 18.0 <= times[1] - times[0] <= 20.0


async def test_each_attempt_is_cut_off_at_the_timeout() -> None:
    times: list[float] = []

    async def hang(request: httpx2.Request) -> httpx2.Response:
        times.append(trio.current_time())
        await trio.sleep(3600)
        return httpx2.Response(200)

    settings = WebhookSettings(max_retries=1, base_delay_ms=1000, timeout_ms=10_000)
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(hang)) as client:
        start = trio.current_time()
        result = await deliver(client, "http://hook.test/", BODY, settings, random=lambda: 0.0)
        end = trio.current_time()
    assert (result.attempts, result.status, result.error) == (2, None, "no response within 10000 ms")
    assert [round(t - start, 6) for t in times] == [0, 11.0]
    assert round(end - start, 6) == 21.0
