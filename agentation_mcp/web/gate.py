"""The access gate every HTTP request passes first: Host, Origin, preflight, access key.

It applies `AccessPolicy` to one request. A refused request is answered here
(403 for a foreign Host or Origin, 401 without the access key) and so is a
CORS preflight (204); an admitted one gets the CORS headers its response
carries. Decisions and headers are kept per Host and Origin value, so a client's
repeated requests reuse them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..models import json_bytes
from .access import AccessPolicy
from .wire import Headers, Request

_JSON = (b"content-type", b"application/json")
_MAX_CACHED = 256


class Gate:
    def __init__(self, policy: AccessPolicy, origin_refused: Callable[[str, str], None] | None = None) -> None:
        self.policy = policy
        self.origin_refused = origin_refused  # told (origin, path) of each request refused for its Origin
        # Decisions by header value: a client sends the same Host and Origin every time.
        self._hosts: dict[str | None, bool] = {}
        self._cors: dict[str | None, Headers | None] = {}

    def host_allowed(self, host: str | None) -> bool:
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed = self.policy.host_allowed(host)
            if len(self._hosts) < _MAX_CACHED:
                self._hosts[host] = allowed
        return allowed

    def cors(self, origin: str | None) -> Headers | None:
        """The CORS headers for a request from `origin`, or None if that origin is refused."""
        if origin in self._cors:
            return self._cors[origin]
        headers = self.policy.cors_headers(origin) if self.policy.origin_allowed(origin) else None
        if len(self._cors) < _MAX_CACHED:
            self._cors[origin] = headers
        return headers

    def _cross_site(self, request: Request) -> bool:
        """A browser request from another site that carries no Origin (a plain GET from a page, an
        `<img>` or `<script>` tag): refused like a foreign Origin, except on `/health`."""
        return (
            request.headers.get("sec-fetch-site") == "cross-site"
            and not self.policy.any_origin
            and request.path != "/health"
        )

    async def admit(self, request: Request) -> Headers | None:
        """The CORS headers for an admitted request; None once a refusal or preflight answer was sent."""
        headers = request.headers
        if not self.host_allowed(headers.get("host")):
            await refuse(request, 403, "Host not allowed", [])
            return None
        origin = headers.get("origin")
        cors = self.cors(origin)
        if cors is None or (origin is None and self._cross_site(request)):
            if origin is not None and self.origin_refused is not None:
                self.origin_refused(origin, request.path)
            await refuse(request, 403, "Origin not allowed", [(b"vary", b"Origin")])
            return None
        policy = self.policy
        if request.method == "OPTIONS":
            await request.respond(204, [*cors, (b"access-control-max-age", b"86400")])
            return None
        if request.path != "/health" and not policy.key_accepted(headers.get("x-api-key")):
            await refuse(request, 401, "A valid x-api-key header is required", cors)
            return None
        return cors


async def refuse(request: Request, status: int, message: str, cors: Headers) -> None:
    await request.respond(status, [*cors, _JSON], json_bytes({"error": message}))
