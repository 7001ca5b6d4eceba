"""Webhooks: settings from the environment, delivery and retry rules, the background sender.

Deliveries go to a real HTTP receiver on 127.0.0.1 (trio sockets and h11),
on real time with delays of a few milliseconds. The exact back-off schedule
is checked on trio's virtual clock, through httpx2's in-memory transport, so
no socket waits while the clock jumps.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from itertools import pairwise
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from agentation_mcp.config import WebhookSettings, webhook_settings_from_env
from agentation_mcp.web.webhooks import USER_AGENT, DeliveryResult, backoff_ms, deliver, retry_after_ms, valid_urls

from .conftest import free_port
from .receivers import receiver

pytestmark = pytest.mark.anyio

WAIT = 10  # seconds any one test may wait on the network

# --- a real webhook receiver ----------------------------------------------------------


class LogLines(logging.Handler):
    """The messages of the `agentation_mcp` logger, with a way to wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._changed: trio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if self._changed is not None:
            self._changed.set()

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]

    async def wait_for(self, prefix: str, n: int = 1) -> list[str]:
        while len(self.starting(prefix)) < n:
            self._changed = trio.Event()
            await self._changed.wait()
        return self.starting(prefix)


@pytest.fixture
def logs() -> Iterator[LogLines]:
    logger = logging.getLogger("agentation_mcp")
    handler = LogLines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def quick(**kw: Any) -> WebhookSettings:
    """Settings with real-time waits of a few milliseconds."""
    return WebhookSettings(**{"max_retries": 2, "base_delay_ms": 1, "max_delay_ms": 1000, "timeout_ms": 2000, **kw})


BODY = b'{"sessionId":"s1","annotations":[],"output":"# out","timestamp":"2026-01-01T00:00:00.000Z"}'

# --- settings ----------------------------------------------------------------------------


def test_defaults_without_environment() -> None:
    assert webhook_settings_from_env({}) == (WebhookSettings((), 3, 1000, 30_000, 10_000), [])


def test_urls_come_from_both_variables_trimmed_and_deduplicated() -> None:
    settings, warnings = webhook_settings_from_env(
        {
            "AGENTATION_WEBHOOK_URL": "  http://a.test/hook ",
            "AGENTATION_WEBHOOKS": "http://b.test/, http://a.test/hook,, ,http://b.test/,ftp://c.test",
        }
    )
    assert settings.urls == ("http://a.test/hook", "http://b.test/", "ftp://c.test")
    assert warnings == []
    assert WebhookSettings(urls=(" http://a.test/ ", "", "http://a.test/")).urls == ("http://a.test/",)


def test_usable_numbers_are_taken_trimmed() -> None:
    settings, warnings = webhook_settings_from_env(
        {
            "AGENTATION_WEBHOOK_MAX_RETRIES": "0",
            "AGENTATION_WEBHOOK_BASE_DELAY_MS": " 200 ",
            "AGENTATION_WEBHOOK_MAX_DELAY_MS": "2147483647",
            "AGENTATION_WEBHOOK_TIMEOUT_MS": "1",
            "AGENTATION_WEBHOOKS": "",
        }
    )
    assert settings == WebhookSettings((), 0, 200, 2_147_483_647, 1)
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "value", "default"),
    [
        ("AGENTATION_WEBHOOK_MAX_RETRIES", "11", 3),
        ("AGENTATION_WEBHOOK_MAX_RETRIES", "-1", 3),
        ("AGENTATION_WEBHOOK_MAX_RETRIES", "abc", 3),
        ("AGENTATION_WEBHOOK_MAX_RETRIES", "٣", 3),  # an Arabic-Indic digit is not ^\d+$ in JavaScript
        ("AGENTATION_WEBHOOK_BASE_DELAY_MS", "0", 1000),
        ("AGENTATION_WEBHOOK_BASE_DELAY_MS", "1e3", 1000),
        ("AGENTATION_WEBHOOK_MAX_DELAY_MS", "2.5", 30_000),
        ("AGENTATION_WEBHOOK_TIMEOUT_MS", "2147483648", 10_000),
    ],
)
def test_unusable_numbers_keep_the_default_and_say_so(name: str, value: str, default: int) -> None:
    settings, warnings = webhook_settings_from_env({name: value})
    assert settings == WebhookSettings()
    assert len(warnings) == 1
    assert name in warnings[0]
    assert repr(value) in warnings[0]
    assert f"default {default}" in warnings[0]


def test_settings_refuse_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        WebhookSettings(max_retries=11)
    with pytest.raises(ValueError, match="timeout_ms"):
        WebhookSettings(timeout_ms=0)


def test_only_http_urls_without_credentials_are_valid(logs: LogLines) -> None:
    good = ["http://127.0.0.1:9/hook", "https://hooks.example.com/a?b=c", "HTTP://Example.com/x", "http://[::1]:8080/"]
    bad = [
        "ftp://files.example.com/",
        "not a url",
        "http://user:s3cret@example.com/",
        "https://token@example.com/",
        "http://example.com:99999/",
        "http://",
        "http://exa mple.com/",
        "mailto:someone@example.com",
    ]
    assert valid_urls(WebhookSettings(urls=(*good[:2], *bad, *good[2:]))) == good
    warnings = logs.starting("[Webhook] Skipping")
    assert len(warnings) == len(bad)
    assert "ftp://files.example.com/" in warnings[0]
    assert not any("s3cret" in line or "token" in line for line in warnings)


# --- back-off arithmetic ---------------------------------------------------------------------


MAX = 2_147_483_647


def test_backoff_grows_with_jitter_and_stops_at_the_maximum() -> None:
    settings = WebhookSettings(base_delay_ms=1000, max_delay_ms=30_000)
    assert [backoff_ms(k, settings, 0.0) for k in range(6)] == [1000, 2000, 4000, 8000, 16_000, 30_000]
    assert backoff_ms(0, settings, 0.5) == 1125
    assert backoff_ms(1, settings, 0.999999) == 2499
    assert backoff_ms(10, WebhookSettings(base_delay_ms=MAX, max_delay_ms=MAX), 1.0) == MAX


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_ms(None, now) == 0
    assert retry_after_ms("3", now) == 3000
    assert retry_after_ms(" 120 ", now) == 120_000
    assert retry_after_ms("0", now) == 0
    for unusable in ("-1", "1.5", "soon", ""):
        assert retry_after_ms(unusable, now) == 0
    assert retry_after_ms(formatdate(now + 10, usegmt=True), now) == 10_000
    assert retry_after_ms(formatdate(now - 10, usegmt=True), now) == 0
    assert retry_after_ms(formatdate(now + 10, usegmt=True).replace("GMT", "-0000"), now) == 10_000


# --- one delivery, against a real receiver ------------------------------------------------------


async def test_a_delivery_posts_the_body_with_its_headers() -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url("/status/200"), BODY, quick(), delivery_id="fixed-id")
    assert result == DeliveryResult(r.url("/status/200"), "fixed-id", 1, True, 200, None)
    (request,) = r.requests
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT == "Agentation-Webhook/1.0"
    assert request.headers["x-agentation-delivery-id"] == "fixed-id"
    assert request.headers["content-length"] == str(len(BODY))


async def test_the_default_delivery_id_is_a_fresh_uuid_kept_across_retries() -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            first = await deliver(client, r.url("/flaky/2"), BODY, quick())
            second = await deliver(client, r.url("/status/200"), BODY, quick())
    assert (first.attempts, first.delivered, first.status) == (3, True, 200)
    ids = [request.headers["x-agentation-delivery-id"] for request in r.requests]
    assert ids == [first.delivery_id] * 3 + [second.delivery_id]
    assert first.delivery_id != second.delivery_id
    assert uuid.UUID(first.delivery_id).version == 4


@pytest.mark.parametrize(
    ("status", "attempts", "delivered"),
    [
        (200, 1, True),
        (204, 1, True),
        (299, 1, True),
        (301, 1, False),
        (400, 1, False),
        (404, 1, False),
        (429, 3, False),
        (500, 3, False),
        (503, 3, False),
    ],
)
async def test_which_statuses_are_retried(status: int, attempts: int, delivered: bool) -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url(f"/status/{status}"), BODY, quick(max_retries=2))
    assert (result.attempts, result.delivered, result.status, result.error) == (attempts, delivered, status, None)
    assert len(r.requests) == attempts


async def test_retries_wait_the_backoff_with_the_drawn_jitter() -> None:
    settings = quick(max_retries=3, base_delay_ms=20, max_delay_ms=60)
    draws = iter([1.0, 0.0, 1.0])  # waits: floor(20·1.25) = 25, 40, then min(60, 100) = 60 ms
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url("/status/500"), BODY, settings, random=lambda: next(draws))
    assert result.attempts == 4
    times = [request.at for request in r.requests]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    for gap, wait in zip(gaps, [0.025, 0.040, 0.060], strict=True):
        assert gap >= wait
        assert gap < wait + 2  # generous: a loaded machine, never a skipped wait


async def test_a_short_retry_after_is_honoured_over_a_shorter_backoff() -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url("/status/429?retry_after=1"), BODY, quick(max_retries=1))
    assert (result.attempts, result.status) == (2, 429)
    first, second = r.requests
    assert second.at - first.at >= 1.0


async def test_a_retry_after_longer_than_the_maximum_delay_stops_at_once() -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url("/status/429?retry_after=120"), BODY, quick(max_delay_ms=30_000))
    assert (result.attempts, result.delivered, result.status) == (1, False, 429)
    assert len(r.requests) == 1


async def test_a_receiver_slower_than_the_timeout_gets_every_attempt() -> None:
    async with receiver() as r, httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, r.url("/slow"), BODY, quick(max_retries=2, timeout_ms=100))
            await r.wait_for(3)
    assert (result.attempts, result.delivered, result.status) == (3, False, None)
    assert result.error == "no response within 100 ms"
    assert [request.body for request in r.requests] == [BODY] * 3


async def test_a_refused_connection_is_retried() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    async with httpx2.AsyncClient() as client:
        with trio.fail_after(WAIT):
            result = await deliver(client, url, BODY, quick(max_retries=1))
    assert (result.attempts, result.delivered, result.status) == (2, False, None)
    assert result.error
    assert "Traceback" not in result.error


async def test_an_unusable_url_gets_no_attempt() -> None:
    async with httpx2.AsyncClient() as client:
        result = await deliver(client, "ftp://127.0.0.1/x", BODY, quick())
    assert (result.attempts, result.delivered, result.status) == (0, False, None)
    assert result.error == "only http and https URLs are supported"
