"""Who may talk to the HTTP server: the Origin allow-list, the Host check, the access key.

Safe by default: the server binds loopback, accepts pages from loopback
origins only (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`, any port),
and refuses requests whose `Host` header names anything else, which defeats
DNS rebinding. `AGENTATION_CORS_ORIGINS` adds origins (`*` alone allows
every origin). A server bound to another interface needs
`AGENTATION_ACCESS_KEY` and then checks it (`x-api-key`) on every route but
`/health`. Requests without an Origin header (curl, agents) are not pages
and pass the Origin check.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import is_loopback_name, normalize_origin

ALLOW_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = b"Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID"
EXPOSE_HEADERS = b"Mcp-Session-Id"


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    bind_host: str
    any_origin: bool = False
    extra_origins: frozenset[str] = frozenset()
    access_key: str | None = None

    @property
    def remote(self) -> bool:
        """Bound to an interface other than loopback."""
        return not is_loopback_name(self.bind_host)

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None or self.any_origin:
            return True
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        if normalized in self.extra_origins:
            return True
        hostname = urlsplit(normalized).hostname or ""
        return is_loopback_name(hostname)

    def host_allowed(self, host_header: str | None) -> bool:
        if self.remote or not host_header:
            return True
        name = _host_name(host_header.strip()).lower()
        return is_loopback_name(name) or name == self.bind_host.lower()

    def key_accepted(self, given: str | None) -> bool:
        if self.access_key is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.access_key.encode())

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if self.any_origin:
            headers.append((b"access-control-allow-origin", b"*"))
        else:
            headers.append((b"vary", b"Origin"))
            if origin is not None:
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        headers += [
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        return headers
