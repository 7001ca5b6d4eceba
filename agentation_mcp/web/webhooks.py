"""Webhooks: an action request POSTed to every configured URL, with retries.

`POST /sessions/:id/action` calls `Webhooks.fire`, which starts one delivery
per valid URL in the background and returns at once; the HTTP response never
waits for a receiver.

Rules, as the reference has them:

* URLs come from `AGENTATION_WEBHOOK_URL`, then the comma-separated
  `AGENTATION_WEBHOOKS`: trimmed, empty ones dropped, duplicates removed.
  Only http(s) URLs without credentials are used; the others are skipped with
  a warning and not counted (the reference counted them).
* One delivery is up to `1 + max_retries` POSTs of the same body with the same
  `X-Agentation-Delivery-Id`. A network error, a per-attempt timeout, 429 or
  5xx is retried; any other non-2xx ends it at once.
* The wait before retry k (from 0) is `min(max_delay, floor(base·2^k·(1 +
  random·0.25)))` ms, but never shorter than the response's Retry-After; a
  Retry-After longer than `max_delay` ends the delivery instead.
* Closing `Webhooks` cancels the deliveries still running.

Waits use `trio.sleep` and trio deadlines, so they follow trio's clock.
"""

from __future__ import annotations

import logging
import math
import random as _random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2
import trio

from ..config import WebhookSettings
from ..models import to_json

log = logging.getLogger(__name__)

USER_AGENT = "Agentation-Webhook/1.0"
_DIGITS = re.compile(r"[0-9]+")


def _redacted(url: str) -> str:
    """`url` with any user:password part masked, fit for a log line."""
    return re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url)


def _unusable(url: str) -> str | None:
    """Why `url` cannot be a webhook target, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        httpx2.URL(url)
    except (ValueError, httpx2.InvalidURL):
        return "it is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are supported"
    if "@" in parts.netloc:
        return "URLs with credentials are not allowed"
    if not parts.hostname or any(c.isspace() for c in parts.hostname):
        return "it has no valid host"
    return None


def valid_urls(settings: WebhookSettings) -> list[str]:
    """The URLs of `settings` that can receive webhooks; each other one is logged once and skipped."""
    usable = []
    for url in settings.urls:
        reason = _unusable(url)
        if reason is None:
            usable.append(url)
        else:
            log.warning("[Webhook] Skipping %s: %s.", _redacted(url), reason)
    return usable


def backoff_ms(attempt: int, settings: WebhookSettings, random: float) -> int:
    """The wait before retry number `attempt` (from 0), for a `random` draw in [0, 1)."""
    delay: float = settings.base_delay_ms * 2**attempt * (1 + random * 0.25)
    return min(settings.max_delay_ms, math.floor(delay))


def retry_after_ms(value: str | None, now: float) -> int:
    """A Retry-After header (seconds or an HTTP date) as ms from `now` (epoch seconds); 0 if absent or unusable."""
    if value is None:
        return 0
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return int(text) * 1000
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return 0
    if when.tzinfo is None:  # "-0000" means UTC, from a sender that does not say where it is
        when = when.replace(tzinfo=UTC)
    return max(0, math.ceil((when.timestamp() - now) * 1000))


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    url: str
    delivery_id: str
    attempts: int
    delivered: bool
    status: int | None  # of the last response, if the last attempt got one
    error: str | None  # why the last attempt got no response (network error, timeout)


@dataclass(slots=True)
class _Progress:
    """What a delivery has done so far; read when it is cancelled mid-way."""

    attempts: int = 0
    status: int | None = None
    error: str | None = None


def _describe(exc: httpx2.HTTPError) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def _deliver(
    client: httpx2.AsyncClient,
    url: str,
    body: bytes,
    settings: WebhookSettings,
    delivery_id: str,
    random: Callable[[], float],
    progress: _Progress,
) -> DeliveryResult:
    def result(delivered: bool) -> DeliveryResult:
        return DeliveryResult(url, delivery_id, progress.attempts, delivered, progress.status, progress.error)

    reason = _unusable(url)
    if reason is not None:
        progress.error = reason
        return result(False)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Agentation-Delivery-Id": delivery_id,
    }
    for attempt in range(settings.max_retries + 1):
        progress.attempts += 1
        progress.status = progress.error = None
        wait_at_least = 0
        # trio's deadline is the one per-attempt timeout; httpx2's own timeouts are off.
        with trio.move_on_after(settings.timeout_ms / 1000) as deadline:
            try:
                # The response body is never read: the status and headers say all there is to know.
                async with client.stream("POST", url, content=body, headers=headers, timeout=None) as response:
                    progress.status = response.status_code
                    wait_at_least = retry_after_ms(response.headers.get("retry-after"), time.time())
            except httpx2.HTTPError as exc:
                progress.error = _describe(exc)
        if deadline.cancelled_caught and progress.status is None:
            progress.error = f"no response within {settings.timeout_ms} ms"
        status = progress.status
        if status is not None:
            if 200 <= status < 300:
                return result(True)
            if status != 429 and not 500 <= status < 600:
                return result(False)
        if attempt == settings.max_retries or wait_at_least > settings.max_delay_ms:
            break
        await trio.sleep(max(backoff_ms(attempt, settings, random()), wait_at_least) / 1000)
    return result(False)


async def deliver(
    client: httpx2.AsyncClient,
    url: str,
    body: bytes,
    settings: WebhookSettings,
    *,
    delivery_id: str | None = None,
    random: Callable[[], float] = _random.random,
) -> DeliveryResult:
    """POST `body` to `url` under the retry rules of `settings`; an unusable URL gets 0 attempts.

    `delivery_id` defaults to a fresh UUID; `random` draws the back-off jitter.
    """
    return await _deliver(client, url, body, settings, delivery_id or str(uuid.uuid4()), random, _Progress())


def _outcome_line(verb: str, attempts: int, status: int | None, error: str | None) -> str:
    line = f"[Webhook] {verb} after {attempts} attempt(s)"
    if status is not None:
        return f"{line}: HTTP {status}"
    if error is not None and verb == "Failed":
        return f"{line}: {error}"
    return line


class Webhooks:
    """The server's webhook sender: one HTTP client, deliveries running in its own nursery.

    Create it with `async with Webhooks.open(settings) as webhooks:`; leaving
    the block cancels the deliveries still running and closes the client.
    """

    def __init__(
        self,
        client: httpx2.AsyncClient,
        nursery: trio.Nursery,
        settings: WebhookSettings,
        *,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.settings = settings
        self.urls: tuple[str, ...] = tuple(valid_urls(settings))
        self._client = client
        self._nursery = nursery
        self._random = random
        self._running: set[trio.CancelScope] = set()
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: WebhookSettings, *, random: Callable[[], float] = _random.random
    ) -> AsyncIterator[Webhooks]:
        async with httpx2.AsyncClient(timeout=None) as client, trio.open_nursery() as nursery:
            webhooks = cls(client, nursery, settings, random=random)
            try:
                yield webhooks
            finally:
                webhooks.close()

    @property
    def in_flight(self) -> int:
        """Deliveries started and not yet finished."""
        return len(self._running)

    def fire(self, session_id: str, payload: Mapping[str, Any]) -> int:
        """Start delivering `payload` to every valid URL; returns how many, without waiting for any."""
        if not self.urls:
            return 0
        body = to_json(payload).encode()
        log.info("[Webhook] Fired %d webhook(s) for session %s", len(self.urls), session_id)
        for url in self.urls:
            if self._closed:
                log.info("%s", _outcome_line("Cancelled", 0, None, None))
                continue
            scope = trio.CancelScope()
            self._running.add(scope)
            self._nursery.start_soon(self._run, url, body, str(uuid.uuid4()), scope)
        return len(self.urls)

    def close(self) -> None:
        """Cancel the deliveries still running; later `fire`s start none."""
        self._closed = True
        for scope in self._running:
            scope.cancel()

    async def _run(self, url: str, body: bytes, delivery_id: str, scope: trio.CancelScope) -> None:
        progress = _Progress()
        result: DeliveryResult | None = None
        try:
            with scope:
                result = await _deliver(self._client, url, body, self.settings, delivery_id, self._random, progress)
        except trio.Cancelled:  # cancelled from outside: the whole service is stopping
            log.info("%s", _outcome_line("Cancelled", progress.attempts, progress.status, progress.error))
            raise
        except Exception:  # a bug here must not take the HTTP server down with it
            log.exception("[Webhook] Delivery to %s failed", _redacted(url))
            return
        finally:
            self._running.discard(scope)
        if result is None:
            log.info("%s", _outcome_line("Cancelled", progress.attempts, progress.status, progress.error))
        elif result.delivered:
            log.info("%s", _outcome_line("Delivered", result.attempts, result.status, None))
        else:
            log.info("%s", _outcome_line("Failed", result.attempts, result.status, result.error))
