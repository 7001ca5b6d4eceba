"""The access gate every HTTP request passes first: Host, Origin, preflight, access key.

It applies `AccessPolicy` to one request. A refused request is answered here
(403 for a foreign Host or Origin, 401 without the access key) and so is a
CORS preflight (204); an admitted one gets the CORS headers its response
carries. The headers for each Origin are built once and reused.
"""

from __future__ import annotations

from .access import AccessPolicy
from .http_wire import Headers, Request
from .models import to_json

_JSON = (b"content-type", b"application/json")
_MAX_CACHED_ORIGINS = 256


class Gate:
    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self._cors: dict[str | None, Headers] = {}

    def cors(self, origin: str | None) -> Headers:
        headers = self._cors.get(origin)
        if headers is None:
            headers = self.policy.cors_headers(origin)
            if len(self._cors) < _MAX_CACHED_ORIGINS:
                self._cors[origin] = headers
        return headers

    async def admit(self, request: Request) -> Headers | None:
        """The CORS headers for an admitted request; None once a refusal or preflight answer was sent."""
        headers = request.headers
        policy = self.policy
        if not policy.host_allowed(headers.get("host")):
            await refuse(request, 403, "Host not allowed", [])
            return None
        origin = headers.get("origin")
        if not policy.origin_allowed(origin):
            await refuse(request, 403, "Origin not allowed", [(b"vary", b"Origin")])
            return None
        cors = self.cors(origin)
        if request.method == "OPTIONS":
            await request.respond(204, [*cors, (b"access-control-max-age", b"86400")])
            return None
        if request.path != "/health" and not policy.key_accepted(headers.get("x-api-key")):
            await refuse(request, 401, "A valid x-api-key header is required", cors)
            return None
        return cors


async def refuse(request: Request, status: int, message: str, cors: Headers) -> None:
    await request.respond(status, [*cors, _JSON], to_json({"error": message}).encode())
